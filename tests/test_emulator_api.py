"""The column emulator's transfer structure, model files that load safely, and the predict API."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch
import xarray as xr
from conftest import cube_image_statistics, make_cube, run_cli

from coemu.data.description import INPUT_VARIABLES, describe
from coemu.data.transform import Preprocessing
from coemu.evaluation.metrics import maxrel_percent, zncc
from coemu.io.errors import CoemuInputError
from coemu.nn import COEmuNet, ColumnEmulator, Emulator
from coemu.nn.column import log_segment_profile
from coemu.training import checkpoint


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """A synthetic model's 24^3 cube (3 rotations), its 7-channel images, and their statistics."""
    tmp = tmp_path_factory.mktemp("column")
    cube = make_cube(tmp)
    image = tmp / "image.nc"
    run_cli("render", cube, image)
    stats = cube_image_statistics(cube, image)
    prep = Preprocessing.from_stats(stats)
    return {
        "cube": cube,
        "image": image,
        "prep": prep,
        "data": describe(image, cube, prep, stats),
        "tmp": tmp,
    }


def test_segment_profile_is_the_mean_of_the_gaussian_along_the_segment():
    b0 = torch.tensor([0.0, -1.0, 2.0, 20.0, -30.0, -0.5, 1.0, 5.0, 3.0], dtype=torch.float64)
    b1 = torch.tensor([0.0, 1.0, 3.0, 21.0, -25.0, 0.5, 1.0005, 5.0, -2.0], dtype=torch.float64)
    expected = []
    for a, b in zip(b0.tolist(), b1.tolist(), strict=True):
        s = np.linspace(a, b, 400_001)
        # the far wing (|b| of 20 to 30) underflows exp(-b^2): its log by the same quadrature
        m = -(s**2).min()
        expected.append(m + math.log(np.exp(-(s**2) - m).mean()))
    got = log_segment_profile(b0, b1)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-5)  # the quadrature: ~3e-6
    assert torch.isfinite(log_segment_profile(b0.float(), b1.float())).all()


def _oracle_segments(model, data, x, dx):
    """The segment terms of the LTE physics itself (node averages of opacity and source)."""
    from coemu.rt.lamda import load_line
    from coemu.rt.lte import inverse_doppler_width, opacity_and_source

    line = load_line(data.molecule, data.transition)
    t, n, _ = Preprocessing(**data.preprocessing).inputs_inverse(x.transpose(0, 1))
    chi, s = opacity_and_source(line, t)
    a = dx / math.sqrt(math.pi) * inverse_doppler_width(line, t) * chi * n
    log_a = torch.log(0.5 * (a[..., :-1] + a[..., 1:])).unsqueeze(1)
    log_s = torch.log(0.5 * (s[..., :-1] + s[..., 1:])).unsqueeze(1)
    b = model.doppler_offsets(x)
    profile = log_segment_profile(b[..., :-1], b[..., 1:])
    return profile + log_a, log_s.expand_as(profile)


def test_the_column_transfer_sum_with_the_true_segment_terms_is_the_solver(rendered, monkeypatch):
    """The exact part of the column emulator (the sum over segments along each ray, the
    Doppler convention) given the physics' own segment terms
    reproduces the solver's images: what the network has to learn is only local."""
    data, prep = rendered["data"], rendered["prep"]
    with xr.open_dataset(rendered["cube"]) as c, xr.open_dataset(rendered["image"]) as i:
        t, n, v = (torch.as_tensor(c[k].values, dtype=torch.float64) for k in INPUT_VARIABLES)
        truth = torch.as_tensor(i["intensity"].values, dtype=torch.float64)
    model = ColumnEmulator.from_data(data).double()
    x = prep.inputs(t, n, v).transpose(0, 1)
    monkeypatch.setattr(model, "segment_terms", lambda x: _oracle_segments(model, data, x, data.cell_size))
    with torch.no_grad():
        predicted = prep.intensity_inverse(model(x))
    assert float(maxrel_percent(truth, predicted).max()) < 2.0
    assert float(zncc(prep.intensity(truth), prep.intensity(predicted)).min()) > 0.999
    # the opposite Doppler convention (each channel at minus its velocity) is seen
    mirrored = ColumnEmulator(
        **(model.kwargs | {"channel_velocities": [-u for u in data.channel_velocities]})
    )
    mirrored = mirrored.double()
    monkeypatch.setattr(
        mirrored, "segment_terms", lambda x: _oracle_segments(mirrored, data, x, data.cell_size)
    )
    with torch.no_grad():
        wrong = prep.intensity_inverse(mirrored(x))
    assert float(maxrel_percent(truth, wrong).median()) > 3 * float(maxrel_percent(truth, predicted).median())


def test_a_model_file_rebuilds_the_emulator_and_predicts_physical_images(rendered, tmp_path):
    data = rendered["data"]
    torch.manual_seed(0)
    model = ColumnEmulator.from_data(data, hidden=8, layers=1)
    model.data = data
    path = tmp_path / "model.pt"
    checkpoint.save(path, model.model_file(run={"note": "test"}))
    raw = torch.load(path, weights_only=True)  # plain data and tensors only
    assert (
        raw["kind"] == "column" and raw["data"]["grid"] == 24 and len(raw["data"]["channel_velocities"]) == 7
    )
    loaded = Emulator.load(path)
    assert type(loaded) is ColumnEmulator and loaded.data == data
    with xr.open_dataset(rendered["cube"]) as c:
        arrays = [c[k].values for k in INPUT_VARIABLES]
    one = loaded.predict(*(a[0] for a in arrays))
    assert isinstance(one, np.ndarray) and one.shape == (7, 24, 24) and (one > 0).all()
    batch = loaded.predict(*arrays, batch_size=2)
    assert batch.shape == (3, 7, 24, 24)
    np.testing.assert_allclose(batch[0], one, rtol=1e-5)
    as_torch = loaded.predict(*(torch.as_tensor(a) for a in arrays))
    assert isinstance(as_torch, torch.Tensor)
    np.testing.assert_allclose(as_torch.numpy(), batch, rtol=1e-5)
    stacked = loaded.predict(*(np.stack([a[:2]] * 2) for a in arrays))  # (2, 2, G, G, G): any batch shape
    assert stacked.shape == (2, 2, 7, 24, 24)
    # the same as the network on the preprocessed input, turned back into intensities
    prep = rendered["prep"]
    x = prep.inputs(*(torch.as_tensor(a) for a in arrays)).transpose(0, 1)
    with torch.no_grad():
        np.testing.assert_allclose(prep.intensity_inverse(loaded(x).double()).numpy(), batch, rtol=1e-4)
    # a wrong shape is an error; values outside the training ranges a warning naming them
    with pytest.raises(ValueError, match=r"temperature has shape \(16, 16, 16\); this emulator takes"):
        loaded.predict(*(a[0, :16, :16, :16] for a in arrays))
    hot = arrays[0][0].copy()
    hot[:12] = 2.0 * data.input_ranges["temperature"][1]  # half the cells hotter than any in training
    with pytest.warns(UserWarning, match=r"temperature: 50\.00% of the cells lie outside the training range"):
        loaded.predict(hot, arrays[1][0], arrays[2][0])


def test_one_inference_path_in_three_steps(rendered):
    """Emulator.emulate: preprocess (network_inputs), the network, inverse (to_intensities);
    predict and intensities are its intensities, and gradients reach the inputs (a fit's path)."""
    data, prep = rendered["data"], rendered["prep"]
    torch.manual_seed(0)
    model = ColumnEmulator.from_data(data, hidden=8, layers=1).eval()
    model.data = data
    with xr.open_dataset(rendered["cube"]) as c:
        t, n, v = (torch.as_tensor(c[k].values[:2]) for k in INPUT_VARIABLES)
    x = model.network_inputs(t, n, v)
    assert x.shape == (2, 3, 24, 24, 24) and x.dtype == torch.float32
    assert torch.equal(x, prep.inputs(t, n, v).transpose(0, 1))
    with torch.no_grad():
        normalised, intensity = model.emulate(t, n, v)
        assert torch.equal(normalised, model(x)) and intensity.dtype == torch.float64
        assert torch.equal(intensity, model.to_intensities(normalised))
        assert torch.equal(intensity, prep.intensity_inverse(normalised.double()))
        assert torch.equal(model.intensities(t, n, v), intensity)
    np.testing.assert_array_equal(
        model.predict(t.numpy(), n.numpy(), v.numpy(), batch_size=2), intensity.numpy()
    )
    hot = t.clone().requires_grad_()
    model.intensities(hot, n, v).sum().backward()
    assert hot.grad is not None and torch.isfinite(hot.grad).all() and hot.grad.abs().max() > 0


def test_coemunet_files_carry_the_same_description(rendered, tmp_path):
    data = rendered["data"]
    model = COEmuNet.from_data(
        data, stem=2, widths=[4, 4, 8], blocks_per_stage=1, latent=16, decoder_channels=8
    )
    model.data = data
    checkpoint.save(tmp_path / "c.pt", model.model_file())
    loaded = Emulator.load(tmp_path / "c.pt")
    assert loaded.kwargs["n_freq"] == 7 and loaded.kwargs["grid"] == 24 and loaded.data == data
    with xr.open_dataset(rendered["cube"]) as c:
        out = loaded.predict(*(c[k].values[:1] for k in INPUT_VARIABLES))
    assert out.shape == (1, 7, 24, 24)


class _Exploit:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_a_model_file_that_would_run_code_is_refused(tmp_path):
    target = tmp_path / "created-by-the-pickle"
    crafted = tmp_path / "model.pt"
    torch.save({"kind": "column", "kwargs": {}, "model": {}, "payload": _Exploit(str(target))}, crafted)
    assert not target.exists()
    with pytest.raises(CoemuInputError, match="model.pt: refused: it holds more than tensors and plain data"):
        Emulator.load(crafted)
    assert not target.exists()
    proc = run_cli("predict", crafted, tmp_path / "cube.nc", tmp_path / "out.nc", check=False)
    assert proc.returncode == 2 and "refused" in proc.stderr and not target.exists()
    assert not (tmp_path / "out.nc").exists()
    with open(tmp_path / "junk.pt", "wb") as f:
        pickle.dump([1, 2], f)
    with pytest.raises(CoemuInputError, match="junk.pt"):
        Emulator.load(tmp_path / "junk.pt")


def test_coemu_predict_writes_the_image_contract(rendered, tmp_path):
    data = rendered["data"]
    torch.manual_seed(0)
    model = ColumnEmulator.from_data(data, hidden=8, layers=1)
    model.data = data
    checkpoint.save(tmp_path / "model.pt", model.model_file())
    out = tmp_path / "predicted.nc"
    run_cli("predict", tmp_path / "model.pt", rendered["cube"], out)
    with xr.open_dataset(out) as got, xr.open_dataset(rendered["image"]) as solver:
        assert got["intensity"].dims == solver["intensity"].dims == ("rotation", "frequency", "x", "y")
        assert got["intensity"].shape == solver["intensity"].shape
        assert got["intensity"].attrs["units"] == "W m-2 Hz-1 sr-1"
        np.testing.assert_allclose(got["velocity"].values, solver["velocity"].values)
        np.testing.assert_allclose(got["frequency"].values, solver["frequency"].values, rtol=1e-12)
        assert got.attrs["emulator"] == "column (model.pt)" and got.attrs["rest_frequency"] == pytest.approx(
            solver.attrs["rest_frequency"]
        )
        with xr.open_dataset(rendered["cube"]) as c:
            direct = model.predict(*(c[k].values for k in INPUT_VARIABLES))
        np.testing.assert_allclose(got["intensity"].values, direct, rtol=1e-5)
    # a cube on another grid: the file and variable named, nothing written
    small = tmp_path / "small.nc"
    with xr.open_dataset(rendered["cube"]) as c:
        c.isel(x=slice(0, 16), y=slice(0, 16), z=slice(0, 16)).load().to_netcdf(small)
    bad = tmp_path / "bad.nc"
    proc = run_cli("predict", tmp_path / "model.pt", small, bad, check=False)
    assert (
        proc.returncode == 2 and "small.nc: variable 'temperature'" in proc.stderr and "24^3" in proc.stderr
    )
    assert not bad.exists()


def test_the_column_network_skips_only_segments_the_line_does_not_reach(rendered, monkeypatch):
    """The network runs only within WING_CUT line widths of each channel; everywhere else the
    segment's optical depth is below exp(-36) of the line centre's: the output is unchanged."""
    import coemu.nn.column as column

    data, prep = rendered["data"], rendered["prep"]
    torch.manual_seed(0)
    model = ColumnEmulator.from_data(data, hidden=8, layers=1).double()
    with xr.open_dataset(rendered["cube"]) as c:
        x = prep.inputs(*(torch.as_tensor(c[k].values, dtype=torch.float64) for k in INPUT_VARIABLES))
    x = x.transpose(0, 1)
    b = model.doppler_offsets(x)
    skipped = float((log_segment_profile(b[..., :-1], b[..., 1:]) <= -(column.WING_CUT**2)).double().mean())
    assert skipped > 0.3  # the saving is real on these data
    with torch.no_grad():
        cut = model(x)
        monkeypatch.setattr(column, "WING_CUT", 1.0e9)
        every = model(x)
    torch.testing.assert_close(cut, every, rtol=0, atol=1e-12)


def test_coemu_observe_renders_with_a_trained_emulator_whose_cells_match(rendered, tmp_path):
    """The predict API behind `coemu observe --emulator`: the same image as predict on rotation 0."""
    from astropy.io import fits

    from coemu.observe.fits import sky_array
    from coemu.observe.units import pixel_solid_angle

    data = rendered["data"]
    torch.manual_seed(0)
    model = ColumnEmulator.from_data(data, hidden=8, layers=1)
    model.data = data
    checkpoint.save(tmp_path / "model.pt", model.model_file())
    geometry = ["--seed", "5", "--n-base", "16", "--levels", "4", "--box-cells", "48"]
    geometry += ["--sphere", rendered["tmp"] / "sphere.json", "--unit", "Jy/pixel", "--beam-major", "null"]
    out = tmp_path / "obs.fits"
    run_cli(
        "observe", out, "--model", "m00001", *geometry, "--grid", "24", "--emulator", tmp_path / "model.pt"
    )
    with xr.open_dataset(rendered["cube"]) as c:
        direct = model.predict(*(c[k].values[0] for k in INPUT_VARIABLES))
    with fits.open(out) as hdul:
        assert hdul[0].header["RENDERER"] == "emulator model.pt"
        expected = sky_array(direct.astype(np.float64)) * pixel_solid_angle(data.cell_size, 150.0) * 1e26
        np.testing.assert_allclose(hdul[0].data, expected, rtol=1e-4, atol=1e-6 * expected.max())
    bad = tmp_path / "bad.fits"
    proc = run_cli(
        "observe",
        bad,
        "--model",
        "m00001",
        *geometry,
        "--grid",
        "16",
        "--emulator",
        tmp_path / "model.pt",
        check=False,
    )
    assert proc.returncode == 2 and "model.pt: variable 'cell_size'" in proc.stderr and "24^3" in proc.stderr
    assert not bad.exists()
