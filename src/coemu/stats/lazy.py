"""Lazy (Dask) arrays over many netCDF files, with errors that name the file and the variable.

Each file's header is read first (in parallel on the cluster): a missing,
corrupt or truncated file, a missing variable or a shape that differs from the
others is reported before any reduction starts. The data are then read by
one task per (file, block of rotations) through xarray; a read that fails
later (e.g. a file truncated after its header) raises the same kind of error,
naming the file.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from coemu.geometry.cube_contract import check_cube
from coemu.io.errors import CoemuInputError
from coemu.io.validation import check_values


def read_header(path: str, variables: Sequence[str]) -> dict[str, tuple[int, ...]]:
    """{variable: shape} of ``path``; CoemuInputError if it is missing, unreadable or lacks one."""
    import xarray as xr

    if not Path(path).is_file():
        raise CoemuInputError(path, None, "file is missing")
    try:
        with xr.open_dataset(path) as ds:
            missing = [v for v in variables if v not in ds.variables]
            if missing:
                raise CoemuInputError(path, missing[0], "missing")
            if "temperature" in variables:  # a cube file: the contract every reader of a cube checks
                check_cube(ds, path)
            return {v: tuple(ds[v].shape) for v in variables}
    except CoemuInputError:
        raise
    except Exception as err:  # netCDF4/HDF5 raise OSError, ValueError, RuntimeError...
        raise CoemuInputError(
            path, None, f"not a readable netCDF file ({type(err).__name__}: {err})"
        ) from None


def read_block(path: str, variable: str, start: int, stop: int) -> np.ndarray:
    """Rotations ``start:stop`` of ``variable`` (float32), checked to be finite."""
    import xarray as xr

    try:
        with xr.open_dataset(path) as ds:
            values = np.asarray(ds[variable][start:stop].values, dtype=np.float32)
    except Exception as err:
        raise CoemuInputError(path, variable, f"cannot be read ({type(err).__name__}: {err})") from None
    check_values(path, variable, values)
    return values


def lazy_files(client, paths: Sequence[str], variable: str, block_rotations: int | None = None) -> list:
    """One Dask array per file, chunked by ``block_rotations`` (default: the whole file).

    All files must share the shape of the first one past their rotation axis.
    """
    import dask
    import dask.array as da

    headers = client.gather(client.map(read_header, list(paths), variables=[variable], pure=False))
    first = headers[0][variable]
    arrays = []
    for path, header in zip(paths, headers, strict=True):
        shape = header[variable]
        if shape[1:] != first[1:]:
            raise CoemuInputError(path, variable, f"shape {shape} does not match {first} of {paths[0]}")
        step = block_rotations or shape[0]
        blocks = [
            da.from_delayed(
                dask.delayed(read_block, pure=True)(path, variable, r, min(r + step, shape[0])),
                shape=(min(r + step, shape[0]) - r, *shape[1:]),
                dtype=np.float32,
            )
            for r in range(0, shape[0], step)
        ]
        arrays.append(da.concatenate(blocks, axis=0))
    return arrays
