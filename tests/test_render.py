"""`coemu render`: the image file against the contract, and bad cubes."""

import json

import netCDF4
import numpy as np
import pytest
import torch
import xarray as xr
from conftest import make_cube, run_cli


@pytest.fixture(scope="module")
def cube_nc(tmp_path_factory):
    return make_cube(tmp_path_factory.mktemp("render"))


def test_image_file_follows_the_contract(tmp_path, cube_nc):
    out, face = tmp_path / "img.nc", tmp_path / "face.nc"
    run_cli("render", cube_nc, out, "--faceon", face)
    with netCDF4.Dataset(out) as nc:
        assert nc["intensity"].dimensions == ("rotation", "frequency", "x", "y")
        assert nc["intensity"].dtype == np.float32
        assert nc["intensity"].units == "W m-2 Hz-1 sr-1"
        assert nc["frequency"].units == "Hz"
    ds = xr.open_dataset(out)
    assert dict(ds.sizes) == {"rotation": 3, "frequency": 7, "x": 24, "y": 24}
    assert ds.attrs["molecule"] == "CO" and ds.attrs["transition"] == "CO(J=2-1)"
    assert ds.attrs["rest_frequency"] == 230.538e9
    np.testing.assert_allclose(np.diff(ds.frequency), -230.698e3, rtol=1e-5)  # 300 m/s channels
    np.testing.assert_allclose(ds.velocity, [-900, -600, -300, 0, 300, 600, 900])
    assert np.isfinite(ds.intensity).all() and (ds.intensity >= 0).all() and float(ds.intensity.max()) > 0
    cube = xr.open_dataset(cube_nc)
    np.testing.assert_array_equal(ds.x, cube.x)
    fo = xr.open_dataset(face)
    assert dict(fo.sizes) == {"rotation": 1, "frequency": 1, "x": 24, "y": 24}
    assert float(fo.frequency[0]) == 230.538e9
    np.testing.assert_array_equal(fo.intensity[0, 0], ds.intensity[0, 3])  # rotation 0, line centre


def _recorded_settings(ds):
    """The RenderSettings a file's ``setting_*`` attributes record (None written as "", bools as 0/1)."""
    from dataclasses import fields

    from coemu.rt.render import RenderSettings

    values = {f.name: ds.attrs[f"setting_{f.name}"] for f in fields(RenderSettings)}
    values = {k: None if v == "" else v.item() if hasattr(v, "item") else v for k, v in values.items()}
    return RenderSettings(**values | {"compile": bool(values["compile"])})


def test_each_file_records_the_settings_of_its_own_channels(tmp_path, cube_nc):
    """The face-on file holds one channel and says so (setting_channels 1, not the image
    file's 3): rendering rotation 0 with the settings it records gives it again."""
    from coemu.rt.lamda import load_line
    from coemu.rt.render import read_cube, render_cube
    from coemu.rt.spectral import channel_velocities

    out, face = tmp_path / "img.nc", tmp_path / "face.nc"
    run_cli("render", cube_nc, out, "--faceon", face, "--channels", "3", "--spacing", "500")
    image, faceon = xr.open_dataset(out), xr.open_dataset(face)
    assert image.attrs["setting_channels"] == 3 and faceon.attrs["setting_channels"] == 1
    for ds in (image, faceon):
        recorded = _recorded_settings(ds)
        assert recorded.channels == ds.sizes["frequency"]
        np.testing.assert_array_equal(ds.velocity, channel_velocities(recorded.channels, recorded.spacing))
    assert {k: v for k, v in faceon.attrs.items() if k != "setting_channels"} == {
        k: v for k, v in image.attrs.items() if k != "setting_channels"
    }  # the fingerprint too: one render made both
    cube, dx = read_cube(cube_nc)
    settings = _recorded_settings(faceon)
    again = render_cube(cube, dx, settings, load_line(settings.molecule, settings.transition), slice(0, 1))
    np.testing.assert_array_equal(again.intensity, faceon.intensity)


def test_options_reach_the_solver(tmp_path, cube_nc):
    out = tmp_path / "img.nc"
    run_cli(
        "render",
        cube_nc,
        out,
        "--channels",
        "3",
        "--spacing",
        "500",
        "--dtype",
        "float64",
        "--background",
        "cmb",
        "--device",
        "cpu",
    )
    ds = xr.open_dataset(out)
    assert ds.sizes["frequency"] == 3 and ds.attrs["setting_background"] == "cmb"
    np.testing.assert_allclose(ds.velocity, [-500, 0, 500])
    assert float(ds.intensity.min()) > 1e-19  # the CMB shines through everywhere


def damaged(tmp_path, cube_nc, how):
    ds = xr.open_dataset(cube_nc).load()
    if how == "nan":
        ds["temperature"][0, 1, 2, 3] = np.nan
    elif how == "negative temperature":
        ds["temperature"][1, 0, 0, 0] = -5.0
    elif how == "negative density":
        ds["number_density_co"][2, 5, 5, 5] = -1.0
    elif how == "wrong shape":
        ds["velocity_z"] = ds["velocity_z"].isel(rotation=0)
    elif how == "missing":
        ds = ds.drop_vars("velocity_z")
    path = tmp_path / "bad.nc"
    ds.to_netcdf(path)
    return path


@pytest.mark.parametrize(
    "how, message",
    [
        ("nan", "variable 'temperature': 1 non-finite values (1 NaN)"),
        ("negative temperature", "variable 'temperature': 1 non-positive temperatures"),
        ("negative density", "variable 'number_density_co': 1 negative densities"),
        ("wrong shape", "variable 'velocity_z': wrong dimensions"),
        ("missing", "variable 'velocity_z': missing variable"),
    ],
)
def test_bad_cube_gives_a_clear_error_and_writes_nothing(tmp_path, cube_nc, how, message):
    bad = damaged(tmp_path, cube_nc, how)
    out_dir = tmp_path / "out"
    proc = run_cli("render", bad, out_dir / "img.nc", "--faceon", out_dir / "face.nc", check=False)
    assert proc.returncode == 2, proc.stderr
    assert f"error: {bad}: {message}" in proc.stderr
    assert not out_dir.exists() or not any(out_dir.iterdir())


def test_truncated_cube(tmp_path, cube_nc):
    bad = tmp_path / "cut.nc"
    bad.write_bytes(cube_nc.read_bytes()[:5000])
    proc = run_cli("render", bad, tmp_path / "img.nc", check=False)
    assert proc.returncode == 2 and "corrupt or truncated" in proc.stderr
    assert not (tmp_path / "img.nc").exists()


def test_unknown_molecule_without_datafile(tmp_path, cube_nc):
    proc = run_cli("render", cube_nc, tmp_path / "img.nc", "--molecule", "HCN", check=False)
    assert proc.returncode == 2 and "no LAMDA file shipped for 'HCN'" in proc.stderr
    assert not (tmp_path / "img.nc").exists()


@pytest.mark.slow  # about 15-35 s on 2 cores
def test_render_many_maps_each_cube_to_its_own_files(tmp_path, cube_nc):
    hotter = tmp_path / "hotter.nc"
    ds = xr.open_dataset(cube_nc).load()
    ds["temperature"] = ds["temperature"] * 1.5
    ds.to_netcdf(hotter)
    cubes = [cube_nc, hotter]
    imgs = [tmp_path / "a.nc", tmp_path / "b.nc"]
    faces = [tmp_path / "fa.nc", tmp_path / "fb.nc"]
    run_cli("render-many", "--cubes", *cubes, "--images", *imgs, "--faceon", *faces, "--channels", "3")
    for cube, img, face in zip(cubes, imgs, faces, strict=True):
        single = tmp_path / "single.nc"
        run_cli("render", cube, single, "--channels", "3")
        np.testing.assert_array_equal(xr.open_dataset(img).intensity, xr.open_dataset(single).intensity)
        assert face.exists()
    assert not np.array_equal(xr.open_dataset(imgs[0]).intensity, xr.open_dataset(imgs[1]).intensity)
    proc = run_cli("render-many", "--cubes", *cubes, "--images", imgs[0], check=False)
    assert proc.returncode == 2 and "same number of files" in proc.stderr


@pytest.mark.slow  # about 15-35 s on 2 cores
def test_render_many_keeps_what_is_up_to_date(tmp_path, cube_nc):
    """A block rerun (a model added, a failure) renders only the images it lacks; other
    solver settings or a rewritten cube render again."""
    cubes = [tmp_path / f"c{k}.nc" for k in range(3)]
    for cube in cubes:
        cube.write_bytes(cube_nc.read_bytes())
    imgs, faces = [tmp_path / f"i{k}.nc" for k in range(3)], [tmp_path / f"f{k}.nc" for k in range(3)]

    def render(n, *extra):
        manifest = tmp_path / "b0000.json"
        proc = run_cli(
            "render-many",
            "--cubes",
            *cubes[:n],
            "--images",
            *imgs[:n],
            "--faceon",
            *faces[:n],
            "--manifest",
            manifest,
            "--channels",
            "3",
            *extra,
        )
        assert json.loads(manifest.read_text())["n_models"] == n
        return proc.stderr, [p.stat().st_mtime_ns for p in imgs[:n]]

    _, first = render(2)
    log, again = render(3)
    assert "1 of 3 models rendered, 2 kept" in log and again[:2] == first
    log, _ = render(3, "--v-turbulence", "100")
    assert "3 of 3 models rendered, 0 kept" in log
    cubes[1].write_bytes(cube_nc.read_bytes())  # rewritten: a new modification time
    log, _ = render(3, "--v-turbulence", "100")
    assert "1 of 3 models rendered, 2 kept" in log


def test_temperature_outside_the_solver_range(tmp_path, cube_nc):
    ds = xr.open_dataset(cube_nc).load()
    ds["temperature"][0, 0, 0, 0] = 5e5
    bad = tmp_path / "hot.nc"
    ds.to_netcdf(bad)
    proc = run_cli("render", bad, tmp_path / "img.nc", check=False)
    assert proc.returncode == 2
    assert (
        f"{bad}: variable 'temperature': values" in proc.stderr
        and "outside the solver's range" in proc.stderr
    )
    assert not (tmp_path / "img.nc").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on machines without CUDA")
def test_cuda_requested_without_cuda(tmp_path, cube_nc):
    proc = run_cli("render", cube_nc, tmp_path / "img.nc", "--device", "cuda", check=False)
    assert proc.returncode == 2 and "variable 'device': 'cuda' asked for, but no CUDA device" in proc.stderr
    assert not (tmp_path / "img.nc").exists()
