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


def plain(value: Any) -> Any:
    """``value`` as plain data (what JSON and ``torch.load(weights_only=True)`` take): dicts with
    string keys, lists for tuples, Python numbers for numpy scalars and one-element tensors."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if hasattr(value, "numel") and hasattr(value, "item") and value.numel() == 1:  # a torch scalar
        return value.item()
    return value


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
