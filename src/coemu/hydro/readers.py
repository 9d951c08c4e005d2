"""Readers for real hydro models: netCDF point clouds and Magritte HDF5 files.

netCDF (``*.nc``): the hydro-model contract of ``docs/contracts.md``:
``position(point, xyz)`` m, ``velocity(point, xyz)`` m s-1,
``temperature(point)`` K, ``number_density_co(point)`` m-3.

Magritte HDF5 (``*.h5``, ``*.hdf5``), the fields used:

=======================================  ==========================================
``geometry/points/position``             (N, 3) positions in m
``geometry/points/velocity``             (N, 3) velocities in units of c
``thermodynamics/temperature/gas``       (N,) gas temperature in K
``chemistry/species/abundance``          (N, n_species) number densities in m-3;
                                         CO is column 1
=======================================  ==========================================

``thermodynamics/turbulence/vturb2`` (m2 s-2) is not part of the contract and
is not read; the solver's turbulent width is a configuration value.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from coemu.constants import SPEED_OF_LIGHT
from coemu.hydro.catalog import MODEL_SUFFIXES
from coemu.hydro.model import HYDRO_VARIABLES, HydroModel, validate_arrays
from coemu.io.errors import CoemuInputError

NETCDF_SUFFIXES = (".nc",)
MAGRITTE_SUFFIXES = (".h5", ".hdf5")

MAGRITTE_FIELDS = {
    "position": "geometry/points/position",
    "velocity": "geometry/points/velocity",
    "temperature": "thermodynamics/temperature/gas",
    "number_density_co": "chemistry/species/abundance",
}


def read_hydro_model(path: str | Path, positions_only: bool = False) -> HydroModel | np.ndarray:
    """Read and validate a hydro model, choosing the reader from the suffix.

    Args:
        path: a ``.nc`` point cloud or a Magritte ``.h5``/``.hdf5`` file.
        positions_only: return only the (N, 3) positions in m (checked for
            shape and finiteness), for computing extents cheaply.

    Raises:
        CoemuInputError: unknown suffix, unreadable/corrupt file, or contract
            violations (naming the file and the variable).
    """
    path = Path(path)
    if path.suffix in NETCDF_SUFFIXES:
        reader = _read_netcdf
    elif path.suffix in MAGRITTE_SUFFIXES:
        reader = _read_magritte
    else:
        raise CoemuInputError(path, None, f"unknown model format '{path.suffix}' (want {MODEL_SUFFIXES})")
    if not path.exists():
        raise CoemuInputError(path, None, "file not found")
    arrays = reader(path, ["position"] if positions_only else list(HYDRO_VARIABLES))
    if positions_only:
        pos = arrays["position"]
        if pos.ndim != 2 or pos.shape[1] != 3:
            raise CoemuInputError(path, "position", f"wrong shape {pos.shape}, expected (point, 3)")
        if not np.isfinite(pos).all():
            raise CoemuInputError(path, "position", "non-finite values")
        return pos
    validate_arrays(arrays, path)
    return HydroModel(name=path.stem, source=str(path), **arrays)


def _read_netcdf(path: Path, names: list[str]) -> dict[str, np.ndarray]:
    import netCDF4

    try:
        ds = netCDF4.Dataset(path, "r")
    except OSError as err:
        raise CoemuInputError(path, None, f"corrupt or truncated netCDF file ({err})") from None
    try:
        out = {}
        for name in names:
            if name not in ds.variables:
                raise CoemuInputError(path, name, "missing variable")
            var = ds.variables[name]
            var.set_auto_mask(False)
            try:
                out[name] = np.asarray(var[...], dtype=np.float64)
            except (OSError, RuntimeError) as err:
                raise CoemuInputError(
                    path, name, f"unreadable data, file corrupt or truncated ({err})"
                ) from None
        return out
    finally:
        ds.close()


def _read_magritte(path: Path, names: list[str]) -> dict[str, np.ndarray]:
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise CoemuInputError(path, None, f"corrupt or truncated HDF5 file ({err})") from None
    with f:
        out = {}
        for name in names:
            key = MAGRITTE_FIELDS[name]
            if key not in f:
                raise CoemuInputError(path, key, "missing variable")
            try:
                data = np.asarray(f[key][...], dtype=np.float64)
            except OSError as err:
                raise CoemuInputError(path, key, f"unreadable data ({err})") from None
            if name == "velocity":
                data = data * SPEED_OF_LIGHT
            elif name == "number_density_co":
                if data.ndim != 2 or data.shape[1] < 2:
                    raise CoemuInputError(
                        path, key, f"wrong shape {data.shape}, expected (point, n_species>=2), CO in column 1"
                    )
                data = data[:, 1]
            out[name] = data
        return out
