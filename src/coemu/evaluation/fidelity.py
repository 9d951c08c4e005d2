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
from coemu.rt.render import RenderSettings, faceon_settings, render_cube

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
    cube: xr.Dataset, params: WindParameters, settings: RenderSettings, sub: int = 3, faceon: bool = False
) -> dict[str, np.ndarray]:
    """Per rotation: the cube's errors against the analytic cube, and the images' MaxRel and ZNCC.

    ``faceon``: compare the line-centre images only (the pretraining target) instead of
    every channel of ``settings``.

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
    solver = faceon_settings(settings) if faceon else settings
    images = [
        torch.as_tensor(render_cube(ds, dx, solver, line)["intensity"].values, dtype=torch.float64)
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


def data_error(
    models: list[str],
    files: dict,
    seed: int,
    settings: RenderSettings,
    max_samples: int,
    faceon: bool = False,
) -> dict | None:
    """The data's own error on the first ``max_samples`` (model, rotation) pairs of ``models``.

    For the evaluation: the pipeline's images of the test models against the images
    of their analytic cubes (synthetic models only), so that an emulator error can be
    read against the error of the data it was trained and measured on. ``faceon``:
    rotation 0 at the line centre only (one sample per model, the pretraining target).

    Returns:
        ``data_maxrel_percent_median``, ``data_maxrel_percent_p95``, ``data_zncc_median``,
        ``data_n_samples``; None when a model is not synthetic or ``max_samples`` is 0.
    """
    from coemu.hydro.catalog import synthetic_index
    from coemu.hydro.synthetic import draw_parameters

    maxrel, correlation = [], []
    for model in models:
        if len(maxrel) >= max_samples:
            break
        try:
            index = synthetic_index(model)
        except ValueError:
            return None
        with xr.open_dataset(files[model]["cube"]) as ds:
            cube = ds.load()
        k = 1 if faceon else min(cube.sizes["rotation"], max_samples - len(maxrel))
        fid = data_fidelity(
            cube.isel(rotation=slice(0, k)), draw_parameters(seed, index), settings, faceon=faceon
        )
        maxrel += list(fid["maxrel_percent"])
        correlation += list(fid["zncc"])
    if not maxrel:
        return None
    return {
        "data_maxrel_percent_median": float(np.median(maxrel)),
        "data_maxrel_percent_p95": float(np.percentile(maxrel, 95)),
        "data_zncc_median": float(np.median(correlation)),
        "data_n_samples": len(maxrel),
    }
