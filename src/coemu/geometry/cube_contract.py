"""The cube contract's geometry, checked where a cube file is read (docs/contracts.md, "Cube file").

One check (:func:`check_cube`) for every reader of a cube: the renderer (``coemu render``,
``render-many``), ``coemu predict``, the training and evaluation data set, the data
description of a model file and ``coemu observe``'s in-memory cube. It reads only the
header: variable names and dimensions, dimension sizes, global attributes and the 1-D
``x``/``y``/``z`` coordinates (G values each), never the (rotation, G, G, G) fields, so it
costs about as much as opening the file.

What holds in a cube the cube stage writes (:func:`coemu.geometry.cube.cube_dataset`):

- ``temperature``, ``number_density_co``, ``velocity_z`` with dims (rotation, x, y, z);
- as many cells along x, y and z (G), and at least one rotation;
- ``cell_size`` dx > 0 and ``sphere_radius`` R > 0, finite, in m; with ``box_cells`` B,
  dx = 2 R / B and G <= B (without it, the cube still fits the sphere's box: G dx <= 2 R);
- coordinates ``x``, ``y``, ``z`` (when present; the renderer and predict need them):
  cell centres in m, evenly spaced dx apart.

A violation raises :class:`~coemu.io.errors.CoemuInputError` naming the file, the variable
(or attribute) and the problem.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from coemu.io.errors import CoemuInputError

#: Dimensions of every field, in this order.
CUBE_DIMS = ("rotation", "x", "y", "z")
#: The fields of a cube file, in the file's order.
CUBE_FIELDS = ("temperature", "number_density_co", "velocity_z")
#: Tolerance on lengths, as a fraction of a cell: cell centres against an even grid
#: ``cell_size`` apart (even float32 coordinates of a 128^3 cube are within 4e-6 of
#: theirs), and ``cell_size`` against 2 ``sphere_radius`` / ``box_cells``.
CELL_RTOL = 1.0e-5


@dataclass(frozen=True)
class CubeHeader:
    """What the check reads of a cube file: no field values.

    Attributes:
        dims: every variable's dimension names (coordinates included).
        sizes: every dimension's length.
        attrs: the global attributes.
        values: a 1-D variable's values (called for the ``x``, ``y``, ``z`` coordinates only).
    """

    dims: Mapping[str, tuple[str, ...]]
    sizes: Mapping[str, int]
    attrs: Mapping[str, Any]
    values: Callable[[str], np.ndarray]


def cube_header(ds) -> CubeHeader:
    """The header of an open cube: an ``xarray.Dataset`` (lazy or loaded) or a ``netCDF4.Dataset``."""
    if hasattr(ds, "ncattrs"):  # netCDF4
        return CubeHeader(
            dims={k: tuple(v.dimensions) for k, v in ds.variables.items()},
            sizes={k: len(d) for k, d in ds.dimensions.items()},
            attrs={k: ds.getncattr(k) for k in ds.ncattrs()},
            values=lambda name: np.asarray(ds.variables[name][:]),
        )
    return CubeHeader(
        dims={str(k): tuple(map(str, v.dims)) for k, v in ds.variables.items()},
        sizes={str(k): int(n) for k, n in ds.sizes.items()},
        attrs=dict(ds.attrs),
        values=lambda name: np.asarray(ds[name].values),
    )


def check_cube(ds, path: str | Path | None, coordinates: bool = False) -> float:
    """Check an open cube against the cube contract; return its cell size in m.

    Args:
        ds: the cube, an ``xarray.Dataset`` or a ``netCDF4.Dataset`` (its fields are not read).
        path: the file, named in errors (a model's name for a cube made in memory).
        coordinates: require the ``x``, ``y``, ``z`` coordinates (readers that copy them).

    Returns:
        the spacing of the ``z`` coordinate when the file has one and G >= 2 (equal to
        ``cell_size`` within :data:`CELL_RTOL`: the segment length the images record),
        otherwise ``cell_size``.

    Raises:
        CoemuInputError: naming the file, the variable or attribute, and the problem.
    """
    header = cube_header(ds)
    check_fields(header, path)
    grid = check_sizes(header, path)
    dx = positive_attribute(header.attrs, "cell_size", path)
    check_sphere(header.attrs, path, grid, dx)
    spacing = {}
    for axis in ("x", "y", "z"):
        if axis in header.dims:
            spacing[axis] = check_coordinate(header, axis, path, dx)
        elif coordinates:
            raise CoemuInputError(path, axis, "missing coordinate (the cell centres, m)")
    return spacing.get("z", dx)


def check_fields(header: CubeHeader, path) -> None:
    """Every field is present with dims (rotation, x, y, z)."""
    for name in CUBE_FIELDS:
        if name not in header.dims:
            raise CoemuInputError(path, name, "missing variable")
        if header.dims[name] != CUBE_DIMS:
            raise CoemuInputError(path, name, f"wrong dimensions {header.dims[name]}, expected {CUBE_DIMS}")


def check_sizes(header: CubeHeader, path) -> int:
    """At least one rotation and G >= 1 cells along each of x, y, z; returns G.

    A cube with unequal sides names the axis that differs from the other two (z when all do).
    """
    if header.sizes["rotation"] < 1:
        raise CoemuInputError(path, "rotation", "no rotations")
    n = {axis: header.sizes[axis] for axis in ("x", "y", "z")}
    if len(set(n.values())) > 1:
        cells = " x ".join(str(v) for v in n.values())
        odd = "x" if n["y"] == n["z"] else "y" if n["x"] == n["z"] else "z"
        raise CoemuInputError(
            path,
            odd,
            f"{cells} cells along (x, y, z); a cube has as many cells along each axis",
        )
    if n["x"] < 1:
        raise CoemuInputError(path, "x", "no cells")
    return n["x"]


def positive_attribute(attrs: Mapping[str, Any], name: str, path) -> float:
    """The global attribute ``name`` as a positive, finite float (a length in m)."""
    if name not in attrs:
        raise CoemuInputError(path, name, "missing attribute (the cube contract has it, in m)")
    try:
        value = float(np.asarray(attrs[name]).item())
    except (TypeError, ValueError):
        raise CoemuInputError(path, name, f"not a number ({attrs[name]!r})") from None
    if not (math.isfinite(value) and value > 0):
        raise CoemuInputError(path, name, f"{value!r} m: not a positive finite length")
    return value


def check_sphere(attrs: Mapping[str, Any], path, grid: int, dx: float) -> None:
    """``sphere_radius`` R > 0, and the cube cut from the sphere's box: with ``box_cells`` B,
    dx = 2 R / B and G <= B; without it, G dx <= 2 R."""
    radius = positive_attribute(attrs, "sphere_radius", path)
    if "box_cells" not in attrs:
        if grid * dx > 2 * radius * (1 + CELL_RTOL):
            raise CoemuInputError(
                path,
                "cell_size",
                f"{grid} cells of {dx:.9g} m span {grid * dx:.9g} m, more than the sphere's box"
                f" (2 sphere_radius = {2 * radius:.9g} m)",
            )
        return
    try:
        box = float(np.asarray(attrs["box_cells"]).item())
    except (TypeError, ValueError):
        box = math.nan
    if not (box.is_integer() and box >= 1):
        raise CoemuInputError(path, "box_cells", f"not a positive integer ({attrs['box_cells']!r})")
    if grid > box:
        raise CoemuInputError(path, "box_cells", f"{int(box)}, fewer than the cube's {grid} cells per axis")
    if abs(dx - 2 * radius / box) > CELL_RTOL * dx:
        raise CoemuInputError(
            path,
            "cell_size",
            f"{dx:.9g} m, but 2 sphere_radius / box_cells = {2 * radius / box:.9g} m",
        )


def check_coordinate(header: CubeHeader, axis: str, path, dx: float) -> float:
    """The coordinate ``axis``: 1-D along its dimension, finite, cell centres evenly spaced
    ``dx`` m apart (increasing); returns its first spacing (``dx`` for a single cell)."""
    if header.dims[axis] != (axis,):
        raise CoemuInputError(
            path, axis, f"coordinate with dimensions {header.dims[axis]}, expected ({axis!r},)"
        )
    centres = np.asarray(header.values(axis), dtype=np.float64)
    if not np.isfinite(centres).all():
        raise CoemuInputError(path, axis, "non-finite cell centres")
    if centres.size < 2:
        return dx
    step = (centres[-1] - centres[0]) / (centres.size - 1)
    off = np.abs(centres - (centres[0] + step * np.arange(centres.size)))
    if off.max() > CELL_RTOL * dx:
        k = int(off.argmax())
        raise CoemuInputError(
            path,
            axis,
            f"cell centres not evenly spaced: centre {k} at {centres[k]:.9g} m is {off[k] / dx:.3g}"
            " cells off the even grid through the first and last",
        )
    if abs(step - dx) > CELL_RTOL * dx:
        raise CoemuInputError(path, axis, f"cell centres {step:.9g} m apart, but cell_size is {dx:.9g} m")
    return float(centres[1] - centres[0])
