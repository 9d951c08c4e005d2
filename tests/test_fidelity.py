"""The data's own error: analytic reference cubes of synthetic models; pipeline cubes against them."""

from __future__ import annotations

import numpy as np
import pytest

from coemu import settings
from coemu.evaluation.fidelity import data_fidelity, reference_dataset
from coemu.evaluation.reference import analytic_cubes
from coemu.geometry.cube import make_cubes
from coemu.geometry.regrid import CubeGeometry, sub_offsets
from coemu.geometry.rotations import rotation_matrices
from coemu.geometry.sphere import global_radius
from coemu.hydro.sources import synthetic_extents
from coemu.hydro.synthetic import draw_parameters, synthetic_model, wind_fields
from coemu.rt.render import RenderSettings

SEED = 1234


def test_reference_is_the_cell_average_of_the_analytic_wind():
    params = draw_parameters(SEED, 3)
    geometry = CubeGeometry(1.2e13, box_cells=16, grid=8)
    matrices = rotation_matrices(SEED, "m00003", 2)
    one = analytic_cubes(params, geometry, matrices, sub=1, star_sub=1)
    c = geometry.centres
    centres = np.stack(np.meshgrid(c, c, c, indexing="ij"), axis=-1).reshape(-1, 3)
    for r, matrix in enumerate(matrices):  # sub 1: the fields at the rotated cell centres
        fields = wind_fields(centres @ matrix, params)
        np.testing.assert_allclose(one["temperature"][r].ravel(), fields["temperature"], rtol=1e-12)
        np.testing.assert_allclose(one["velocity_z"][r].ravel(), fields["velocity"] @ matrix[2], rtol=1e-9)
    assert np.allclose(sub_offsets(2, 1.0), sub_offsets(2, 1.0).round(2)) and len(sub_offsets(3, 1.0)) == 27
    # the midpoint sums converge: 2 and 4 points per axis agree far better than 1 and 2 do
    two, four = (analytic_cubes(params, geometry, matrices, sub=s, star_sub=s) for s in (2, 4))
    # the star's cells take more points, the others are left as they are
    refined = analytic_cubes(params, geometry, matrices, sub=2)
    from coemu.geometry.regrid import cell_centres_in_model_frame
    from coemu.hydro.synthetic import orbit

    for r, matrix in enumerate(matrices):
        near = np.linalg.norm(cell_centres_in_model_frame(geometry, matrix) - orbit(params)["agb"], axis=-1)
        near = near < 4 * geometry.cell_size
        assert near.any() and not near.all()
        far_equal = refined["temperature"][r][~near] == two["temperature"][r][~near]
        assert far_equal.all() and not (refined["temperature"][r][near] == two["temperature"][r][near]).all()
    for name in ("number_density_co", "temperature"):
        coarse = np.median(np.abs(one[name] / two[name] - 1))
        fine = np.median(np.abs(two[name] / four[name] - 1))
        assert fine < coarse / 2
    # density-weighted: a cell's temperature lies between its sub-points' extremes
    assert (four["temperature"] > 0).all() and np.isfinite(four["velocity_z"]).all()


@pytest.mark.slow
def test_data_fidelity_of_a_small_cube():
    """The measurement bench/fidelity.py makes, at a small geometry: zero for the analytic cube
    itself, and a finite error for the pipeline's cube."""
    radius, _ = global_radius(synthetic_extents(SEED, 4))
    model = synthetic_model(SEED, 1, n_base=16, levels=3)
    cubes = make_cubes(model, radius, SEED, n_rotations=2, box_cells=32, grid=16)
    solver = RenderSettings.from_config(settings.complete({"images": {"channels": 3}}))
    params = draw_parameters(SEED, 1)
    exact = data_fidelity(reference_dataset(cubes, params), params, solver)
    np.testing.assert_allclose(exact["maxrel_percent"], 0.0, atol=1e-4)
    np.testing.assert_allclose(exact["zncc"], 1.0, atol=1e-6)
    fid = data_fidelity(cubes, params, solver)
    assert fid["maxrel_percent"].shape == (2,) and (fid["maxrel_percent"] > 0).all()
    assert (fid["zncc"] < 1).all() and (fid["velocity_abs_median"] > 0).all()


def test_reconstructed_cubes_keep_the_contract():
    """`cubes.method: reconstruct` on a small model and geometry: float32, finite, positive
    (its error against the analytic cubes: tests/test_reconstruct.py)."""
    radius, _ = global_radius(synthetic_extents(SEED, 4))
    model = synthetic_model(SEED, 1, n_base=24, levels=3)
    cubes = make_cubes(model, radius, SEED, n_rotations=2, box_cells=32, grid=16, method="reconstruct")
    for name in ("temperature", "number_density_co", "velocity_z"):
        assert cubes[name].dtype == np.float32 and np.isfinite(cubes[name]).all()
    assert (cubes["temperature"] > 0).all() and (cubes["number_density_co"] > 0).all()
    with pytest.raises(ValueError, match="unknown regridding method"):
        make_cubes(model, radius, SEED, n_rotations=1, box_cells=32, grid=16, method="spline")


def test_the_method_is_a_setting_of_the_cube_stage(tmp_path):
    """`--method` (cubes.method) reaches the regridder and the cube's fingerprint."""
    import xarray as xr
    from conftest import run_cli

    sphere = tmp_path / "sphere.json"
    run_cli("sphere", sphere, "--count", "2", "--seed", "4")
    small = ["--n-base", "8", "--levels", "2", "--rotations", "1", "--box-cells", "16", "--grid", "8"]
    made = {}
    for method in ("nearest", "reconstruct"):
        out = tmp_path / f"{method}.nc"
        run_cli(
            "cubes", out, "--synthetic", "--model", "m00001", "--sphere", sphere, "--method", method, *small
        )
        made[method] = xr.open_dataset(out)
    assert made["nearest"].attrs["coemu_fingerprint"] != made["reconstruct"].attrs["coemu_fingerprint"]
    assert not np.array_equal(made["nearest"].velocity_z, made["reconstruct"].velocity_z)


def test_data_error_of_the_test_models_for_the_evaluation(tmp_path):
    from coemu.evaluation.fidelity import data_error
    from coemu.io.atomic import write_netcdf_atomic

    radius, _ = global_radius(synthetic_extents(SEED, 4))
    files = {}
    for index in (1, 2):
        model = synthetic_model(SEED, index, n_base=12, levels=2)
        cube = make_cubes(model, radius, SEED, n_rotations=2, box_cells=16, grid=8)
        write_netcdf_atomic(cube, tmp_path / f"{model.name}.nc")
        files[model.name] = {"cube": tmp_path / f"{model.name}.nc"}
    solver = RenderSettings.from_config(settings.complete({"images": {"channels": 3}}))
    models = ["m00001", "m00002"]
    three = data_error(models, files, SEED, solver, max_samples=3)
    assert three["data_n_samples"] == 3  # both rotations of m00001, the first of m00002
    assert 0 < three["data_maxrel_percent_median"] <= three["data_maxrel_percent_p95"]
    assert -1 <= three["data_zncc_median"] <= 1
    faceon = data_error(models, files, SEED, solver, max_samples=8, faceon=True)
    assert faceon["data_n_samples"] == 2  # rotation 0 of each model
    assert data_error(["wind3"], {"wind3": files["m00001"]}, SEED, solver, 4) is None  # not synthetic
    assert data_error(models, files, SEED, solver, 0) is None
