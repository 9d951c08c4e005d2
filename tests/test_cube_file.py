"""`coemu sphere` / `coemu cubes`: the cube file against the contract, and bad input."""

import json

import netCDF4
import numpy as np
import pytest
import xarray as xr
from conftest import run_cli

SMALL = ["--rotations", "3", "--box-cells", "32", "--grid", "16"]


@pytest.fixture()
def sphere_json(tmp_path, model_nc):
    out = tmp_path / "sphere.json"
    run_cli("sphere", out, "--source", "directory", "--directory", model_nc.parent)
    return out


def test_sphere_from_a_directory(sphere_json, small_model):
    summary = json.loads(sphere_json.read_text())
    half = (small_model.position.max(0) - small_model.position.min(0)) / 2
    assert summary["radius"] == pytest.approx(half.min(), rel=1e-6)  # float32 on disk
    assert summary["limiting_model"] == "m00003" and summary["units"] == "m"


def test_sphere_synthetic_matches_generated_points(tmp_path):
    from coemu.geometry.sphere import Extent
    from coemu.hydro.synthetic import synthetic_model

    out = tmp_path / "sphere.json"
    run_cli("sphere", out, "--count", "4", "--seed", "8")
    summary = json.loads(out.read_text())
    radii = [Extent.of_points(synthetic_model(8, i, n_base=8, levels=2).position).radius for i in range(4)]
    assert summary["radius"] == pytest.approx(min(radii), rel=1e-12)
    assert summary["limiting_model"] == f"m{int(np.argmin(radii)):05d}"


def test_cube_file_follows_the_contract(tmp_path, model_nc, sphere_json):
    out = tmp_path / "cubes" / "m00003.nc"
    run_cli("cubes", out, model_nc, "--model", "m00003", "--sphere", sphere_json, "--seed", "3", *SMALL)
    radius = json.loads(sphere_json.read_text())["radius"]
    with netCDF4.Dataset(out) as nc:
        assert nc.data_model == "NETCDF4"
        for name in ("temperature", "number_density_co", "velocity_z"):
            assert nc[name].dimensions == ("rotation", "x", "y", "z")
            assert nc[name].dtype == np.float32
        assert nc["temperature"].units == "K"
        assert nc["number_density_co"].units == "m-3"
        assert nc["velocity_z"].units == "m s-1"
        assert nc["x"].units == "m"
    ds = xr.open_dataset(out)
    assert dict(ds.sizes) == {"rotation": 3, "x": 16, "y": 16, "z": 16, "i": 3, "j": 3}
    assert ds.attrs["model"] == "m00003"
    assert ds.attrs["sphere_radius"] == pytest.approx(radius)
    dx = 2 * radius / 32
    for axis in "xyz":
        np.testing.assert_allclose(np.diff(ds[axis]), dx, rtol=1e-9)
        np.testing.assert_allclose(ds[axis].values, -ds[axis].values[::-1], atol=1e-6 * dx)
        assert ds[axis].values[-1] == pytest.approx(8 * dx - dx / 2)
    np.testing.assert_array_equal(ds.rotation_matrix[0], np.eye(3))
    for k in range(3):
        r = ds.rotation_matrix[k].values
        np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-12)
    for name in ("temperature", "number_density_co", "velocity_z"):
        assert np.isfinite(ds[name]).all()
    assert (ds.temperature > 0).all() and (ds.number_density_co > 0).all()
    # rotation 0 is the unrotated model: same data whether written by one or three rotations
    out1 = tmp_path / "one.nc"
    run_cli(
        "cubes",
        out1,
        model_nc,
        "--model",
        "m00003",
        "--sphere",
        sphere_json,
        "--seed",
        "3",
        "--rotations",
        "1",
        "--box-cells",
        "32",
        "--grid",
        "16",
    )
    np.testing.assert_array_equal(xr.open_dataset(out1).temperature[0], ds.temperature[0])
    assert not np.array_equal(ds.temperature[1], ds.temperature[0])


def test_synthetic_cubes_are_reproducible(tmp_path):
    sphere = tmp_path / "sphere.json"
    run_cli("sphere", sphere, "--count", "3", "--seed", "4")
    outs = []
    for name in ("a.nc", "b.nc"):
        outs.append(tmp_path / name)
        run_cli(
            "cubes",
            outs[-1],
            "--synthetic",
            "--model",
            "m00002",
            "--seed",
            "4",
            "--n-base",
            "12",
            "--levels",
            "3",
            "--sphere",
            sphere,
            *SMALL,
        )
    a, b = (xr.open_dataset(p) for p in outs)
    for name in ("temperature", "number_density_co", "velocity_z", "rotation_matrix"):
        np.testing.assert_array_equal(a[name], b[name])


def corrupt(path, variable, value):
    with netCDF4.Dataset(path, "a") as ds:
        data = ds[variable][...]
        data.flat[10] = value
        ds[variable][...] = data


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda p: corrupt(p, "temperature", np.nan), "variable 'temperature': 1 non-finite"),
        (lambda p: corrupt(p, "temperature", -20.0), "variable 'temperature': 1 non-positive"),
        (lambda p: corrupt(p, "number_density_co", -1.0), "variable 'number_density_co': 1 negative"),
        (lambda p: p.write_bytes(p.read_bytes()[:4000]), "corrupt or truncated"),
    ],
)
def test_bad_model_gives_a_clear_error_and_no_output(tmp_path, model_nc, sphere_json, damage, message):
    out_dir = tmp_path / "cubes"
    out_dir.mkdir()
    out = out_dir / "m00003.nc"
    out.write_text("previous result")  # an earlier output must survive a failed run untouched
    damage(model_nc)
    proc = run_cli("cubes", out, model_nc, "--model", "m00003", "--sphere", sphere_json, *SMALL, check=False)
    assert proc.returncode == 2
    assert f"error: {model_nc}" in proc.stderr and message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert out.read_text() == "previous result"
    assert sorted(p.name for p in out_dir.iterdir()) == ["m00003.nc"]  # no temporary left behind


def test_missing_variable_gives_a_clear_error_and_no_output(tmp_path, model_nc, sphere_json):
    ds = xr.open_dataset(model_nc).load()
    bad = tmp_path / "bad" / "m00003.nc"
    bad.parent.mkdir()
    ds.drop_vars("velocity").to_netcdf(bad)
    out = tmp_path / "out" / "m00003.nc"
    proc = run_cli("cubes", out, bad, "--model", "m00003", "--sphere", sphere_json, *SMALL, check=False)
    assert proc.returncode == 2
    assert f"{bad}: variable 'velocity': missing variable" in proc.stderr
    assert not out.exists() and not any(out.parent.glob("*")) if out.parent.exists() else True


def test_bad_sphere_file(tmp_path, model_nc):
    sphere = tmp_path / "sphere.json"
    sphere.write_text('{"radius": -1}')
    proc = run_cli("cubes", tmp_path / "o.nc", model_nc, "--sphere", sphere, *SMALL, check=False)
    assert proc.returncode == 2 and "variable 'radius': must be a positive number" in proc.stderr


def test_sphere_larger_than_the_model_is_refused(tmp_path, model_nc):
    sphere = tmp_path / "sphere.json"
    sphere.write_text('{"radius": 1e20}')
    proc = run_cli("cubes", tmp_path / "o.nc", model_nc, "--sphere", sphere, *SMALL, check=False)
    assert proc.returncode == 2 and "smaller than the sphere radius" in proc.stderr
    assert not (tmp_path / "o.nc").exists()


@pytest.mark.slow  # about 15-35 s on 2 cores
def test_cubes_many_makes_only_what_it_lacks(tmp_path):
    """A cube block rerun keeps the cubes made from the same model, radius and settings."""
    sphere = tmp_path / "sphere.json"
    run_cli("sphere", sphere, "--count", "3", "--seed", "3")
    ids = ["m00000", "m00001", "m00002"]
    outs = [tmp_path / "cubes" / f"{m}.nc" for m in ids]
    manifest = tmp_path / "blocks" / "b0000.json"
    synthetic = ["--synthetic", "--seed", "3", "--n-base", "8", "--levels", "2", "--sphere", sphere]

    def block(n, *settings):
        proc = run_cli(
            "cubes-many",
            "--models",
            *ids[:n],
            "--outputs",
            *outs[:n],
            "--manifest",
            manifest,
            *synthetic,
            *settings,
        )
        entries = json.loads(manifest.read_text())["models"]
        assert sorted(entries) == ids[:n]
        assert all(
            entries[m]["cube"]["fingerprint"] == xr.open_dataset(o).attrs["coemu_fingerprint"]
            for m, o in zip(ids[:n], outs[:n], strict=True)
        )
        return proc.stderr, [o.stat().st_mtime_ns for o in outs[:n]]

    _, first = block(2, *SMALL)
    log, again = block(3, *SMALL)
    assert "1 of 3 cubes made, 2 kept" in log and again[:2] == first
    log, _ = block(3, "--rotations", "2", "--box-cells", "32", "--grid", "16")
    assert "3 of 3 cubes made, 0 kept" in log
    assert xr.open_dataset(outs[0]).temperature.shape == (2, 16, 16, 16)


@pytest.mark.slow  # about 15-35 s on 2 cores
def test_cubes_many_from_files_redoes_a_rewritten_model_and_names_bad_arguments(
    tmp_path, model_nc, sphere_json
):
    second = tmp_path / "second" / "m00003.nc"
    second.parent.mkdir()
    second.write_bytes(model_nc.read_bytes())
    outs = [tmp_path / "cubes" / "m00003.nc"]
    manifest = tmp_path / "b0000.json"
    args = ["--models", "m00003", "--outputs", *outs, "--manifest", manifest, "--sphere", sphere_json, *SMALL]
    assert "1 of 1 cubes made" in run_cli("cubes-many", *args, "--inputs", model_nc).stderr
    assert "0 of 1 cubes made, 1 kept" in run_cli("cubes-many", *args, "--inputs", model_nc).stderr
    # another file (path, size, time) with the same content: remade
    assert "1 of 1 cubes made" in run_cli("cubes-many", *args, "--inputs", second).stderr
    # a temporary file left by a killed writer is removed
    stale = outs[0].parent / f".{outs[0].name}.abc123.nc.tmp"
    stale.write_bytes(b"half")
    run_cli("cubes-many", *args, "--inputs", second)
    assert not stale.exists()
    # neither --inputs nor --synthetic; a missing model file
    proc = run_cli("cubes-many", *args, check=False)
    assert proc.returncode == 2 and "--inputs" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_cli("cubes-many", *args, "--inputs", tmp_path / "nope.nc", check=False)
    assert proc.returncode == 2 and "nope.nc" in proc.stderr and "Traceback" not in proc.stderr
