"""The variables preprocessing normalises and their pre-normalisation transforms (numpy only, no torch).

Shared by the statistics (which run on Dask workers) and :mod:`coemu.data.transform`.
"""

from __future__ import annotations

import math

import numpy as np

#: The published implementation clips ln I at -40 (I in W m-2 Hz-1 sr-1).
DEFAULT_INTENSITY_FLOOR = math.exp(-40.0)
#: CO number density below which ln n is clipped, m-3 (only zero densities need it).
DEFAULT_DENSITY_FLOOR = 1.0
#: Cube variables in the order of the network's input channels.
INPUT_VARIABLES = ("velocity_z", "temperature", "number_density_co")


def transformed_values(variable: str, values: np.ndarray, floors: dict[str, float]) -> np.ndarray:
    """The values preprocessing normalises, before normalisation, in float64.

    ``velocity_z``: v itself; ``temperature``: ln T; ``number_density_co`` and
    ``intensity``: ln max(x, floor), with ``floors`` mapping those two names
    to their floors (m-3; W m-2 Hz-1 sr-1).
    """
    x = np.asarray(values, dtype=np.float64)
    if variable == "velocity_z":
        return x
    if variable == "temperature":
        return np.log(x)
    if variable in ("number_density_co", "intensity"):
        return np.log(np.maximum(x, floors[variable]))
    raise KeyError(f"no transform for variable '{variable}'")
