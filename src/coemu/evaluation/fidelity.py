"""The data's own error: a synthetic model's cube file against its analytic cube.

For synthetic models the ideal cube is known (:mod:`coemu.geometry.reference`),
so the error of the data themselves can be measured, in the units that matter:
the cube variables cell by cell, and the images the solver renders from both
cubes, in the paper's metrics (MaxRel, ZNCC). An emulator error below the
data's error says nothing about the physics.
"""

from __future__ import annotations

import numpy as np
import torch
import xarray as xr

from coemu.evaluation.metrics import maxrel_percent, zncc
from coemu.evaluation.reference import analytic_cubes
from coemu.geometry.regrid import CubeGeometry
from coemu.hydro.synthetic import WindParameters
from coemu.rt.lamda import load_line
from coemu.rt.render import RenderSettings, render_cube

VARIABLES = ("temperature", "number_density_co", "velocity_z")


def reference_dataset(cube: xr.Dataset, params: WindParameters, sub: int = 3) -> xr.Dataset:
    """The analytic cube on the grid and rotations of ``cube`` (a cube-contract dataset)."""
    geometry = CubeGeometry(float(cube.attrs["sphere_radius"]), int(cube.attrs["box_cells"]), cube.sizes["x"])
    fields = analytic_cubes(params, geometry, cube["rotation_matrix"].values, sub=sub)
    ref = cube.copy(deep=True)
    for name in VARIABLES:
        ref[name].values[...] = fields[name].astype(np.float32)
    return ref


def data_fidelity(
    cube: xr.Dataset, params: WindParameters, settings: RenderSettings, sub: int = 3
) -> dict[str, np.ndarray]:
    """Per rotation: the cube's errors against the analytic cube, and the images' MaxRel and ZNCC.

    Returns:
        (n_rot,) arrays: ``maxrel_percent`` and ``zncc`` (pipeline image vs analytic image),
        ``density_rel_median`` and ``temperature_rel_median`` (median over cells of
        |pipeline - analytic| / analytic), ``velocity_abs_median`` and ``velocity_abs_p95`` (m s-1).
    """
    ref = reference_dataset(cube, params, sub)
    rel = {
        name: np.abs(cube[name].values.astype(np.float64) - ref[name].values) / ref[name].values
        for name in ("temperature", "number_density_co")
    }
    dv = np.abs(cube["velocity_z"].values.astype(np.float64) - ref["velocity_z"].values)
    axes = (1, 2, 3)
    line = load_line(settings.molecule, settings.transition, settings.datafile)
    dx = float(cube.attrs["cell_size"])
    images = [
        torch.as_tensor(render_cube(ds, dx, settings, line)["intensity"].values, dtype=torch.float64)
        for ds in (ref, cube)
    ]
    return {
        "maxrel_percent": maxrel_percent(images[0], images[1]).numpy(),
        "zncc": zncc(images[0], images[1]).numpy(),
        "density_rel_median": np.median(rel["number_density_co"], axis=axes),
        "temperature_rel_median": np.median(rel["temperature"], axis=axes),
        "velocity_abs_median": np.median(dv, axis=axes),
        "velocity_abs_p95": np.percentile(dv, 95, axis=axes),
    }
