"""Checks shared by every reader: finite, positive, non-negative values; JSON inputs that name their file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from coemu.io.errors import CoemuInputError


def read_json(path: str | Path) -> Any:
    """The JSON document at ``path``; CoemuInputError naming it when it is missing or not JSON."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise CoemuInputError(path, None, f"cannot be read ({err})") from None


def check_values(
    path: str | Path | None,
    name: str,
    values: np.ndarray,
    positive: bool = False,
    nonnegative: bool = False,
    what: str = "values",
) -> None:
    """Raise CoemuInputError naming ``path`` and ``name`` for NaN/inf, non-positive or negative values.

    Args:
        what: plural noun for the message (``temperatures``, ``densities``).
    """
    a = np.asarray(values)
    bad = ~np.isfinite(a)
    if bad.any():
        raise CoemuInputError(
            path, name, f"{int(bad.sum())} non-finite values ({int(np.isnan(a).sum())} NaN)"
        )
    if positive and (a <= 0).any():
        raise CoemuInputError(path, name, f"{int((a <= 0).sum())} non-positive {what} (min {a.min():g})")
    if nonnegative and (a < 0).any():
        raise CoemuInputError(path, name, f"{int((a < 0).sum())} negative {what} (min {a.min():g})")
