"""Every reader of a cube file checks the cube contract's geometry (issue 27, item 3).

A cube that breaks it (cut to 16 x 16 x 8 cells, uneven coordinates, coordinates or
``cell_size`` that disagree, a missing field, transposed dims) is refused by ``coemu render``
(exit 2, nothing written; ``render-many`` and ``coemu predict`` on the issue's cut cube) and by
each reader's Python entry point (``predict_file`` is ``coemu predict``'s), all with the same
message naming the file and the variable; the valid cube still renders.
"""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from conftest import cube_image_statistics, make_cube, run_cli

from coemu.geometry.cube_contract import check_cube
from coemu.io.errors import CoemuInputError

#: how a cube is broken -> (the variable named, a part of the problem)
BROKEN = {
    "cut to 16x16x8": ("z", "16 x 16 x 8 cells along (x, y, z)"),
    "uneven x": ("x", "cell centres not evenly spaced: centre 5"),
    "z spacing": ("z", "m apart, but cell_size is"),
    "wrong cell_size": ("cell_size", "m, but 2 sphere_radius / box_cells ="),
    "missing velocity_z": ("velocity_z", "missing variable"),
    "transposed": ("temperature", "wrong dimensions ('rotation', 'z', 'y', 'x')"),
}


@pytest.fixture(scope="module")
def valid(tmp_path_factory):
    """A valid 16^3 cube (2 rotations, box of 32 cells), its image by ``coemu render``, and a
    small column emulator (model.pt) trained on nothing, described by them."""
    import torch

    from coemu.data.description import describe
    from coemu.data.transform import Preprocessing
    from coemu.nn import ColumnEmulator
    from coemu.training import checkpoint

    tmp = tmp_path_factory.mktemp("contract")
    cube = make_cube(tmp, rotations=2, box_cells=32, grid=16)
    image = tmp / "image.nc"
    run_cli("render", cube, image, "--channels", "3")
    stats = cube_image_statistics(cube, image)
    prep = Preprocessing.from_stats(stats)
    data = describe(image, cube, prep, stats)
    torch.manual_seed(0)
    model = ColumnEmulator.from_data(data, hidden=4, layers=1)
    model.data = data
    checkpoint.save(tmp / "model.pt", model.model_file())
    return {"cube": cube, "image": image, "model": tmp / "model.pt", "prep": prep, "stats": stats}


def broken(cube_path, how: str, folder):
    """A copy of the cube at ``cube_path`` broken in one way, written to ``folder/bad.nc``."""
    ds = xr.open_dataset(cube_path).load()
    dx = float(ds.attrs["cell_size"])
    if how == "cut to 16x16x8":
        ds = ds.isel(z=slice(0, 8))
    elif how == "uneven x":
        x = ds["x"].values.copy()
        x[5] += 0.3 * dx
        ds = ds.assign_coords(x=("x", x, ds["x"].attrs))
    elif how == "z spacing":
        ds = ds.assign_coords(z=("z", 2 * ds["z"].values, ds["z"].attrs))  # even, 2 dx apart
    elif how == "wrong cell_size":
        ds.attrs["cell_size"] = 1.5 * dx
    elif how == "missing velocity_z":
        ds = ds.drop_vars("velocity_z")
    elif how == "transposed":
        ds = ds.transpose("rotation", "z", "y", "x", ...)
    else:
        raise ValueError(how)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "bad.nc"
    ds.to_netcdf(path)
    return path


def assert_refused(text: str, path, how: str, prefix: str = "") -> None:
    """``text`` (a message, or stderr with ``prefix`` "error: ") names the file and the variable
    the cube broken by ``how`` breaks, and the problem."""
    variable, problem = BROKEN[how]
    start = f"{prefix}{path}: variable '{variable}': "
    lines = [line for line in text.splitlines() if line.startswith(start)]
    assert lines and problem in lines[0], text


def refusal(call) -> str:
    """The message of the CoemuInputError that ``call()`` raises."""
    with pytest.raises(CoemuInputError) as info:
        call()
    return str(info.value)


def test_the_valid_cube_renders_and_passes_every_reader(valid, tmp_path):
    """The control: the same readers take the unbroken cube (the image rendered; predict writes)."""
    from coemu.data.dataset import EmulatorDataset
    from coemu.emulate import predict_file
    from coemu.rt.render import read_cube

    with xr.open_dataset(valid["image"]) as image:
        assert image["intensity"].shape == (2, 3, 16, 16) and float(image["intensity"].max()) > 0
    cube, dx = read_cube(valid["cube"])
    assert dx == pytest.approx(cube.attrs["cell_size"], rel=1e-9)
    files = {"m00001": {"cube": valid["cube"], "image": valid["image"], "faceon": valid["image"]}}
    assert len(EmulatorDataset(["m00001"], files, valid["prep"], "finetune")) == 2
    predict_file(valid["model"], valid["cube"], tmp_path / "predicted.nc")
    assert (tmp_path / "predicted.nc").exists()


@pytest.mark.parametrize("how", list(BROKEN))
def test_coemu_render_refuses_a_broken_cube_and_writes_nothing(valid, tmp_path, how):
    bad = broken(valid["cube"], how, tmp_path)
    out = tmp_path / "out"
    proc = run_cli("render", bad, out / "img.nc", "--faceon", out / "face.nc", check=False)
    assert proc.returncode == 2, proc.stderr
    assert_refused(proc.stderr, bad, how, "error: ")
    assert not out.exists() or not any(out.iterdir())


def test_coemu_predict_refuses_the_cut_cube_as_render_does(valid, tmp_path):
    """The issue's cube (16 x 16 x 8) through ``coemu predict``: the contract's message, not the
    emulator's grid (every broken cube through predict_file: below)."""
    bad = broken(valid["cube"], "cut to 16x16x8", tmp_path)
    out = tmp_path / "out"
    proc = run_cli("predict", valid["model"], bad, out / "predicted.nc", check=False)
    assert proc.returncode == 2, proc.stderr
    assert_refused(proc.stderr, bad, "cut to 16x16x8", "error: ")
    assert not out.exists() or not any(out.iterdir())


def test_render_many_refuses_a_cut_cube_and_writes_nothing(valid, tmp_path):
    bad = broken(valid["cube"], "cut to 16x16x8", tmp_path)
    out = tmp_path / "out"
    proc = run_cli(
        "render-many",
        "--cubes", bad, "--images", out / "img.nc", "--manifest", out / "b0000.json",
        check=False,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert_refused(proc.stderr, bad, "cut to 16x16x8", "error: ")
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize("how", list(BROKEN))
def test_every_python_reader_gives_the_same_error(valid, tmp_path, how):
    """read_cube (render), predict_file, the training/evaluation data set (both stages, netCDF4)
    and the model file's data description (describe)."""
    from coemu.data.dataset import EmulatorDataset
    from coemu.data.description import describe
    from coemu.emulate import predict_file
    from coemu.rt.render import read_cube

    bad = broken(valid["cube"], how, tmp_path)
    files = {"m00001": {"cube": bad, "image": valid["image"], "faceon": valid["image"]}}
    calls = {
        "read_cube": lambda: read_cube(bad),
        "predict_file": lambda: predict_file(valid["model"], bad, tmp_path / "predicted.nc"),
        "dataset finetune": lambda: EmulatorDataset(["m00001"], files, valid["prep"], "finetune"),
        "dataset pretrain": lambda: EmulatorDataset(["m00001"], files, valid["prep"], "pretrain"),
        "describe": lambda: describe(valid["image"], bad, valid["prep"], valid["stats"]),
    }
    messages = {name: refusal(call) for name, call in calls.items()}
    for message in messages.values():
        assert_refused(message, bad, how)
    assert len(set(messages.values())) == 1, messages
    assert not (tmp_path / "predicted.nc").exists()


def test_coemu_observe_checks_the_cube_it_makes(valid, tmp_path, monkeypatch, model_nc):
    """``coemu observe --input``: the cube made from the model file goes through the same check
    before it is rendered (here a cube made 16 x 16 x 8 by a faulty regridder)."""
    import coemu.geometry.cube as cube_module
    from coemu.observe.make import observe_model
    from coemu.settings import complete

    make_cubes = cube_module.make_cubes
    monkeypatch.setattr(cube_module, "make_cubes", lambda *a, **k: make_cubes(*a, **k).isel(z=slice(0, 8)))
    config = complete(
        {
            "models": {"n_base": 16, "levels": 3},
            "cubes": {"box_cells": 32, "grid": 16},
            "images": {"channels": 3},
            "observations": {"unit": "Jy/pixel", "beam_major": None},
        }
    )
    out = tmp_path / "obs.fits"
    message = refusal(lambda: observe_model(out, config, model_file=model_nc))
    assert message.startswith(f"{model_nc}: variable 'z': 16 x 16 x 8 cells"), message
    assert not out.exists()


def _in_memory(**attrs) -> xr.Dataset:
    """A 2-rotation 4^3 cube of the contract (coordinates, cell_size 1 m of a 16-cell box)."""
    dims = ("rotation", "x", "y", "z")
    fields = {k: (dims, np.ones((2, 4, 4, 4), np.float32)) for k in ("temperature", "number_density_co")}
    fields["velocity_z"] = (dims, np.zeros((2, 4, 4, 4), np.float32))
    centres = np.arange(4) + 0.5 - 2.0
    base = {"cell_size": 1.0, "sphere_radius": 8.0, "box_cells": 16}
    return xr.Dataset(fields, coords={a: centres for a in "xyz"}, attrs=base | attrs)


@pytest.mark.parametrize(
    "attrs, variable, problem",
    [
        ({"cell_size": float("nan")}, "cell_size", "nan m: not a positive finite length"),
        ({"cell_size": -1.0}, "cell_size", "-1.0 m: not a positive finite length"),
        ({"cell_size": "1 m"}, "cell_size", "not a number ('1 m')"),
        ({"sphere_radius": 0.0}, "sphere_radius", "0.0 m: not a positive finite length"),
        ({"box_cells": 3, "sphere_radius": 1.5}, "box_cells", "3, fewer than the cube's 4 cells"),
        ({"box_cells": 2.5}, "box_cells", "not a positive integer (2.5)"),
        ({"sphere_radius": 9.0}, "cell_size", "1 m, but 2 sphere_radius / box_cells = 1.125 m"),
    ],
)
def test_the_attributes_rules(attrs, variable, problem):
    message = refusal(lambda: check_cube(_in_memory(**attrs), "c.nc"))
    assert message.startswith(f"c.nc: variable '{variable}': {problem}"), message


def test_what_the_contract_leaves_open_passes():
    """No coordinates (unless asked for), no box_cells (the cube within the sphere's box),
    float32 coordinates; one cell too many for the box without box_cells is refused."""
    full = _in_memory()
    assert check_cube(full, "c.nc", coordinates=True) == 1.0
    bare = full.drop_vars(["x", "y", "z"])
    assert check_cube(bare, "c.nc") == 1.0
    assert refusal(lambda: check_cube(bare, "c.nc", coordinates=True)).startswith(
        "c.nc: variable 'x': missing coordinate"
    )
    loose = full.copy()
    del loose.attrs["box_cells"]
    assert check_cube(loose, "c.nc") == 1.0
    loose.attrs["sphere_radius"] = 1.9  # 4 cells of 1 m in a 3.8 m box
    assert refusal(lambda: check_cube(loose, "c.nc")).startswith("c.nc: variable 'cell_size': 4 cells of 1 m")
    single = full.assign_coords({a: full[a].values.astype(np.float32) for a in "xyz"})
    assert check_cube(single, "c.nc") == 1.0


def test_the_check_reads_no_field(valid):
    """Cheap: on a lazily opened file (xarray or netCDF4) no field is loaded."""
    import netCDF4

    with xr.open_dataset(valid["cube"]) as ds:
        check_cube(ds, valid["cube"])
        assert not any(ds[k].variable._in_memory for k in ("temperature", "number_density_co", "velocity_z"))
    with netCDF4.Dataset(valid["cube"]) as nc:
        assert check_cube(nc, valid["cube"]) == pytest.approx(float(nc.getncattr("cell_size")), rel=1e-9)
