"""Value checks shared by every reader: finite, positive, non-negative."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from coemu.io.errors import CoemuInputError


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
