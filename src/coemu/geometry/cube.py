"""From a hydro model to its cube file: trim, rotate, regrid (paper appendix A1)."""

from __future__ import annotations

import numpy as np
import xarray as xr
from scipy.spatial import cKDTree

from coemu.geometry.regrid import CubeGeometry, cell_averages, fill_empty
from coemu.geometry.rotations import line_of_sight_velocity, rotate, rotation_matrices
from coemu.geometry.sphere import Extent, trim_to_sphere
from coemu.hydro.model import HydroModel
from coemu.io.errors import CoemuInputError

#: Regridding methods: ``reconstruct`` (the default): the fields rebuilt once per model on nested
#: grids aligned with the points, averaged over sub-points of every rotated cell
#: (:mod:`coemu.geometry.reconstruct`); ``nearest``: cell means of the points, empty cells from the
#: nearest point (:mod:`coemu.geometry.regrid`).
METHODS = ("nearest", "reconstruct")

#: Cube-contract variables: name -> (units, long name).
CUBE_VARIABLES = {
    "temperature": ("K", "gas kinetic temperature (CO-density-weighted cell mean)"),
    "number_density_co": ("m-3", "CO number density (cell mean)"),
    "velocity_z": (
        "m s-1",
        "line-of-sight velocity, positive away from the observer (CO-density-weighted cell mean)",
    ),
}


def make_cubes(
    model: HydroModel,
    radius: float,
    seed: int,
    n_rotations: int,
    box_cells: int = 128,
    grid: int = 64,
    progress: bool = False,
    method: str = "reconstruct",
    matrices: np.ndarray | None = None,
) -> xr.Dataset:
    """Trim ``model`` to the global sphere, rotate it ``n_rotations`` times and regrid.

    Args:
        model: a validated hydro model.
        radius: global sphere radius, m.
        seed: data-set seed for the rotations.
        n_rotations: number of viewing directions (rotation 0 = identity).
        box_cells, grid: cube geometry (see :class:`CubeGeometry`).
        progress: show a tqdm bar over rotations.
        method: regridding method (:data:`METHODS`).
        matrices: (n_rotations, 3, 3) rotations to use instead of the seeded ones (a chosen
            viewing direction: :func:`coemu.observe.viewing.viewing_matrix`).

    Returns:
        The cube dataset of the contract: float32 ``temperature``,
        ``number_density_co``, ``velocity_z`` (rotation, x, y, z) and
        ``rotation_matrix`` (rotation, i, j).

    Raises:
        CoemuInputError: the model's domain is smaller than the sphere, or no
            point lies inside the sphere.
    """
    if method not in METHODS:
        raise ValueError(f"unknown regridding method '{method}' (known: {', '.join(METHODS)})")
    position, velocity, values = trimmed_points(model, radius)
    geometry = CubeGeometry(radius, box_cells, grid)
    if matrices is None:
        matrices = rotation_matrices(seed, model.name, n_rotations)
    elif np.shape(matrices) != (n_rotations, 3, 3):
        raise ValueError(f"matrices of shape {np.shape(matrices)} for {n_rotations} rotations")
    rotations = range(n_rotations)
    if progress:
        from tqdm import tqdm

        rotations = tqdm(rotations, desc=f"cubes {model.name}", unit="rot")
    regrid = _regrid_reconstruct if method == "reconstruct" else _regrid_nearest
    shape = (n_rotations, grid, grid, grid)
    out = {name: np.empty(shape, dtype=np.float32) for name in CUBE_VARIABLES}
    for r, fields in zip(rotations, regrid(position, velocity, values, geometry, matrices), strict=True):
        for name in CUBE_VARIABLES:
            out[name][r] = fields[name]
    return cube_dataset(out, matrices, geometry, model.name)


def trimmed_points(model: HydroModel, radius: float) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """The points of ``model`` inside the global sphere of ``radius`` (m) about its domain's centre.

    Returns:
        (position, velocity, values): positions relative to the centre, m (N, 3); velocities,
        m s-1 (N, 3); ``number_density_co`` (m-3) and ``temperature`` (K), (N,).

    Raises:
        CoemuInputError: the model's domain is smaller than the sphere, or no point lies inside it.
    """
    extent = Extent.of_points(model.position)
    if extent.radius < radius * (1 - 1e-9):
        raise CoemuInputError(
            model.source or model.name,
            "position",
            f"domain radius {extent.radius:.6g} m is smaller than the sphere radius {radius:.6g} m",
        )
    position, keep = trim_to_sphere(model.position, extent.centre, radius)
    if position.shape[0] == 0:
        raise CoemuInputError(model.source or model.name, "position", "no point inside the sphere")
    values = {"number_density_co": model.number_density_co[keep], "temperature": model.temperature[keep]}
    return position, model.velocity[keep], values


def _regrid_reconstruct(position, velocity, values, geometry: CubeGeometry, matrices: np.ndarray):
    """Each rotation's fields (``CUBE_VARIABLES``, (grid, grid, grid)), from the fields rebuilt once
    (:mod:`coemu.geometry.reconstruct`)."""
    from coemu.geometry.reconstruct import Reconstruction

    rec = Reconstruction(position, values["number_density_co"], values["temperature"], velocity, geometry)
    for matrix in matrices:
        yield rec.cell_averages(matrix)


def _regrid_nearest(position, velocity, values, geometry: CubeGeometry, matrices: np.ndarray):
    """Each rotation's fields (``CUBE_VARIABLES``, (grid, grid, grid)): cell means of the rotated
    points, empty cells from the nearest point (:mod:`coemu.geometry.regrid`)."""
    tree = cKDTree(position)
    for matrix in matrices:
        v_z = line_of_sight_velocity(velocity, matrix)
        fields, count = cell_averages(
            geometry,
            rotate(position, matrix),
            values["number_density_co"],
            {"temperature": values["temperature"], "velocity_z": v_z},
        )
        fields["number_density_co"] = fields.pop("density")
        fill_empty(fields, count, geometry, tree, {**values, "velocity_z": v_z}, to_tree_frame=matrix.T)
        yield fields


def cube_dataset(
    fields: dict[str, np.ndarray], matrices: np.ndarray, geometry: CubeGeometry, model: str
) -> xr.Dataset:
    """Assemble the cube-contract dataset from (rotation, x, y, z) arrays."""
    coords = {
        "rotation": ("rotation", np.arange(matrices.shape[0], dtype=np.int32)),
        **{
            axis: (axis, geometry.centres, {"units": "m", "long_name": f"{axis} of the cell centre"})
            for axis in "xyz"
        },
    }
    data = {
        name: (("rotation", "x", "y", "z"), fields[name].astype(np.float32), {"units": u, "long_name": ln})
        for name, (u, ln) in CUBE_VARIABLES.items()
    }
    data["rotation_matrix"] = (
        ("rotation", "i", "j"),
        matrices.astype(np.float64),
        {"long_name": "rotation applied to positions and velocities: x' = R x"},
    )
    attrs = {
        "model": model,
        "sphere_radius": float(geometry.radius),
        "sphere_radius_units": "m",
        "cell_size": float(geometry.cell_size),
        "box_cells": int(geometry.box_cells),
        "observer": "on the -z side, at z index 0; rays run along -z towards the observer",
    }
    return xr.Dataset(data, coords=coords, attrs=attrs)
