"""The hydro-model contract: a point cloud in SI units, and its validation."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from coemu.io.errors import CoemuInputError
from coemu.io.validation import check_values

#: Variables of the hydro-model contract: name -> (dims, units, long name).
HYDRO_VARIABLES: dict[str, tuple[tuple[str, ...], str, str]] = {
    "position": (("point", "xyz"), "m", "position of the point"),
    "velocity": (("point", "xyz"), "m s-1", "gas velocity"),
    "temperature": (("point",), "K", "gas kinetic temperature"),
    "number_density_co": (("point",), "m-3", "CO number density"),
}


@dataclass(frozen=True)
class HydroModel:
    """One hydrodynamics model as a point cloud.

    Attributes:
        position: (N, 3) m.
        velocity: (N, 3) m s-1.
        temperature: (N,) K, > 0.
        number_density_co: (N,) m-3, >= 0.
        name: model id (used in error messages and output attributes).
        source: file the model came from, if any.
    """

    position: np.ndarray
    velocity: np.ndarray
    temperature: np.ndarray
    number_density_co: np.ndarray
    name: str = "model"
    source: str | None = None

    @property
    def n_points(self) -> int:
        return int(self.position.shape[0])

    def validated(self) -> HydroModel:
        """Return ``self`` after checking shapes and values; raise CoemuInputError."""
        validate_arrays(
            {
                "position": self.position,
                "velocity": self.velocity,
                "temperature": self.temperature,
                "number_density_co": self.number_density_co,
            },
            self.source or self.name,
        )
        return self


def validate_arrays(arrays: dict[str, np.ndarray], path: str | Path) -> None:
    """Check the hydro-model arrays against the contract.

    Raises:
        CoemuInputError: naming ``path``, the variable and the problem, for a
            missing variable, a wrong shape, a non-finite value, a
            non-positive temperature or a negative density.
    """
    for name in HYDRO_VARIABLES:
        if name not in arrays:
            raise CoemuInputError(path, name, "missing variable")
    n = None
    for name, (dims, _, _) in HYDRO_VARIABLES.items():
        a = np.asarray(arrays[name])
        if a.ndim != len(dims) or (len(dims) == 2 and a.shape[1] != 3):
            want = "(point, 3)" if len(dims) == 2 else "(point,)"
            raise CoemuInputError(path, name, f"wrong shape {a.shape}, expected {want}")
        if n is None:
            n = a.shape[0]
        elif a.shape[0] != n:
            raise CoemuInputError(path, name, f"wrong shape {a.shape}: {a.shape[0]} points, position has {n}")
        check_values(path, name, a)
    if n == 0:
        raise CoemuInputError(path, "position", "the model has no points")
    check_values(path, "temperature", arrays["temperature"], positive=True, what="temperatures")
    check_values(path, "number_density_co", arrays["number_density_co"], nonnegative=True, what="densities")


def hydro_to_dataset(model: HydroModel, attrs: dict | None = None):
    """The model as an ``xarray.Dataset`` in the contract's layout (float32 on disk)."""
    import xarray as xr

    data = {}
    for name, (dims, units, long_name) in HYDRO_VARIABLES.items():
        values = np.asarray(getattr(model, name), dtype=np.float32)
        data[name] = xr.Variable(dims, values, {"units": units, "long_name": long_name})
    return xr.Dataset(data, attrs={"model": model.name, **(attrs or {})})
