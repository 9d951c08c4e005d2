"""The paper's metrics on hand-made cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import trained_inputs

from coemu.evaluation.metrics import maxrel_percent, ssim, zncc


def images(seed=0, batch=3, channels=4, size=24):
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(
        torch.arange(size, dtype=torch.float64), torch.arange(size, dtype=torch.float64), indexing="ij"
    )
    out = torch.empty(batch, channels, size, size, dtype=torch.float64)
    for b in range(batch):
        for c in range(channels):
            x0, y0 = torch.rand(2, generator=g, dtype=torch.float64) * size
            out[b, c] = 0.1 + 0.8 * torch.exp(-((xx - x0) ** 2 + (yy - y0) ** 2) / (20.0 + 5 * c))
    return out


def test_identical_images_score_perfectly():
    x = images()
    assert torch.equal(maxrel_percent(x, x), torch.zeros(3, dtype=x.dtype))
    torch.testing.assert_close(zncc(x, x), torch.ones(3, dtype=x.dtype))
    torch.testing.assert_close(ssim(x, x), torch.ones(3, dtype=x.dtype))


def test_known_offsets_and_scalings():
    x = images()
    # a constant spectrum per pixel: max over channels = the value itself
    flat = x[:, :1].expand(-1, 4, -1, -1).clone()
    torch.testing.assert_close(maxrel_percent(flat, 2 * flat), torch.full((3,), 100.0, dtype=x.dtype))
    # an offset c: MaxRel = mean over pixels of c / peak
    c = 0.05
    expected = (c / x.amax(dim=1)).mean(dim=(1, 2)) * 100
    torch.testing.assert_close(maxrel_percent(x, x + c), expected)
    # ZNCC ignores brightness and contrast; a negative image correlates at -1
    torch.testing.assert_close(zncc(x, 3 * x + 0.2), torch.ones(3, dtype=x.dtype))
    torch.testing.assert_close(zncc(x, -x), -torch.ones(3, dtype=x.dtype))
    # SSIM of an offset image: luminance term (2 mu (mu + c) + C1) / (mu^2 + (mu + c)^2 + C1) < 1,
    # contrast and structure terms 1; for a constant image it is exactly the luminance term
    const = torch.full((1, 1, 24, 24), 0.5, dtype=torch.float64)
    c1 = (0.01 * 1.0) ** 2
    lum = (2 * 0.5 * 0.6 + c1) / (0.5**2 + 0.6**2 + c1)
    assert float(ssim(const, const + 0.1)[0]) == pytest.approx(lum, rel=1e-6)
    assert float(ssim(x, x + 0.1).max()) < 1.0


def test_zncc_of_unrelated_images_is_small_and_constant_images_count_as_zero():
    a, b = images(seed=1, batch=1, channels=2), images(seed=2, batch=1, channels=2)
    assert abs(float(zncc(a, b)[0])) < 1
    assert float(zncc(a, torch.ones_like(a))[0]) == 0.0
    half = a.clone()
    half[:, 1] = 0.5  # one constant channel: (1 + 0) / 2
    assert float(zncc(a, half)[0]) == pytest.approx(0.5)


@pytest.mark.slow
def test_evaluate_writes_metrics_samples_and_figures(small_results, tmp_path):
    """A briefly trained small model, evaluated on the test model of a small results folder."""
    import json

    import xarray as xr

    from coemu.evaluation.evaluate import evaluate
    from coemu.settings import section
    from coemu.training.loop import train
    from tests.test_training import SETTINGS

    inputs = trained_inputs(small_results)
    model = train("finetune", **inputs, out_dir=tmp_path / "train", settings=SETTINGS, progress=False)
    summary = evaluate("finetune", model, *inputs.values(), tmp_path / "eval", section("evaluation"))
    saved = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert saved["n_samples"] == 3 == summary["n_samples"]  # 1 test model x 3 rotations
    for key in ("maxrel_percent_median", "zncc_mean", "ssim_mean", "maxrel_percent_p95", "ssim_p5"):
        assert math.isfinite(saved[key])
    samples = xr.open_dataset(tmp_path / "eval" / "samples.nc")
    assert samples.sizes["sample"] == 3 and set(samples["model"].values) == {"m00007"}
    assert float(samples["maxrel_percent"].median()) == pytest.approx(saved["maxrel_percent_median"])
    for name in ("cdf", "examples", "spectra"):
        assert (tmp_path / "eval" / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
    table = (tmp_path / "eval" / "table.md").read_text()
    assert "| emulator vs the pipeline's images | coemunet | finetune | 1 | 3 |" in table
    assert "| channel (km/s) | -0.30 | +0.00 | +0.30 |" in table
    # per channel: the sample's value is the mean over its channels
    per = samples["zncc_per_channel"]
    assert per.dims == ("sample", "velocity") and per.sizes["velocity"] == 3
    np.testing.assert_allclose(per.mean("velocity").values, samples["zncc"].values, rtol=1e-12)
    assert len(saved["per_channel"]["maxrel_percent_median"]) == 3 and saved["kind"] == "coemunet"
    # the loss curve from the run's history, and the table of several kinds
    from coemu.evaluation.compare import compare_table
    from coemu.evaluation.evaluate import loss_figure

    loss_figure(tmp_path / "train" / "history.csv", tmp_path / "loss.png", "test")
    assert (tmp_path / "loss.png").read_bytes()[:4] == b"\x89PNG"
    rows = compare_table([tmp_path / "eval" / "metrics.json"] * 2).splitlines()
    assert len(rows) == 4 and rows[2].startswith("| coemunet | finetune | 1 | 3 |")


@pytest.mark.slow
def test_timing_writes_like_with_like_rows(small_results, tmp_path):
    import csv

    from coemu.evaluation.timing import run_timing
    from coemu.training.loop import train
    from tests.test_training import SETTINGS

    short = {
        **SETTINGS,
        "pretrain": {**SETTINGS["pretrain"], "epochs": 1},
        "finetune": {**SETTINGS["finetune"], "epochs": 1},
    }
    inputs = trained_inputs(small_results)
    models = [
        train(stage, **inputs, out_dir=tmp_path / stage, settings=short, progress=False)
        for stage in ("pretrain", "finetune")
    ]
    settings = {"device": "cpu", "repeats": 2, "large_batch": 4, "pomme": False}
    rows = run_timing(models, *inputs.values(), tmp_path / "timing", settings)
    with open(tmp_path / "timing" / "timing.csv") as f:
        saved = list(csv.DictReader(f))
    assert len(saved) == len(rows) == 2 * (1 + 2 * 2)  # per channel count: solver, 2 emulators x 2 batches
    assert {(r["method"], r["n_freq"]) for r in saved} >= {("coemu-solver", "1"), ("coemunet", "3")}
    for r in saved:
        assert (
            0
            < float(r["ms_per_image_min"])
            <= float(r["ms_per_image_median"])
            <= float(r["ms_per_image_max"])
        )
    table = (tmp_path / "timing" / "timing.md").read_text()
    assert "| coemunet | cpu | 3 | 4 |" in table and "torch" in table


def test_evaluate_names_a_missing_or_unusable_statistics_file(small_results, tmp_path):
    import shutil

    from coemu.evaluation.evaluate import evaluate
    from coemu.io.errors import CoemuInputError
    from coemu.settings import section

    results = tmp_path / "results"
    shutil.copytree(small_results, results)
    inputs = trained_inputs(results)
    (results / "stats" / "global.json").write_text('{"cubes": {}}')
    args = ("finetune", tmp_path / "model.pt", *inputs.values(), tmp_path / "eval", section("evaluation"))
    with pytest.raises(CoemuInputError, match="global.json: no usable preprocessing constants"):
        evaluate(*args)
    (results / "stats" / "global.json").unlink()
    with pytest.raises(CoemuInputError, match="global.json: cannot be read"):
        evaluate(*args)
    assert not (tmp_path / "eval").exists()


def _untrained_model(results, path, **changed_constants):
    """An untrained small COEmuNet for the fine-tuning data of ``results``, saved at ``path``; its
    transform is the statistics' with ``changed_constants`` set."""
    import dataclasses
    import json

    from coemu.data.description import describe
    from coemu.data.transform import Preprocessing
    from coemu.io.blocks import read_manifests
    from coemu.nn import COEmuNet
    from coemu.training import checkpoint

    inputs = trained_inputs(results)
    prep = dataclasses.replace(Preprocessing.from_file(inputs["stats"]), **changed_constants)
    first = read_manifests(inputs["manifests"])["m00000"]
    data = describe(first["image"], first["cube"], prep, json.loads(inputs["stats"].read_text()))
    torch.manual_seed(0)
    model = COEmuNet.from_data(
        data, stem=2, widths=[4, 4, 8], blocks_per_stage=1, latent=16, decoder_channels=8
    )
    model.data = data
    checkpoint.save(path, model.model_file())
    return path


def test_the_evaluation_runs_the_emulator_s_own_inference_path(small_results, tmp_path):
    """The evaluation's predictions are Emulator.emulate's: its intensities are predict's to the
    bit (in batches of the same size), its normalised output the network's on the training
    data's preprocessed samples."""
    import xarray as xr

    from coemu.data.dataset import EmulatorDataset
    from coemu.data.transform import Preprocessing
    from coemu.evaluation.evaluate import load_emulator, predict
    from coemu.io.blocks import read_manifests

    inputs = trained_inputs(small_results)
    prep = Preprocessing.from_file(inputs["stats"])
    model = load_emulator(_untrained_model(small_results, tmp_path / "model.pt"), prep, inputs["stats"])
    files = read_manifests(inputs["manifests"])
    physical = EmulatorDataset(["m00007"], files, prep, "finetune", physical_inputs=True)
    target, normalised, intensity = predict(model, physical, 2, torch.device("cpu"))
    with xr.open_dataset(files["m00007"]["cube"]) as cube:
        arrays = [cube[k].values for k in ("temperature", "number_density_co", "velocity_z")]
    expected = model.predict(*arrays, batch_size=2)
    assert intensity.dtype == torch.float64 and intensity.shape == (3, 3, 16, 16)
    np.testing.assert_array_equal(intensity.numpy(), expected)
    training = EmulatorDataset(["m00007"], files, prep, "finetune")
    x, y = (torch.stack(s) for s in zip(*(training[i] for i in range(3)), strict=True))
    with torch.no_grad():
        assert torch.equal(normalised, torch.cat([model(x[:2]), model(x[2:])])) and torch.equal(target, y)
    torch.testing.assert_close(model.to_intensities(normalised), intensity, rtol=0, atol=0)


def test_evaluation_and_timing_refuse_a_model_of_another_transform(small_results, tmp_path):
    """The emulator preprocesses with its own constants and the targets are normalised with the
    statistics': a model trained on other statistics is refused, naming both files."""
    from coemu.evaluation.evaluate import evaluate
    from coemu.evaluation.timing import run_timing
    from coemu.io.errors import CoemuInputError
    from coemu.settings import section

    inputs = trained_inputs(small_results)
    other = _untrained_model(small_results, tmp_path / "other.pt", log_intensity_max=0.0)
    message = f"global.json: preprocessing constants other than those {other} was trained with"
    with pytest.raises(CoemuInputError, match=message):
        evaluate("finetune", other, *inputs.values(), tmp_path / "eval", section("evaluation"))
    timing = {"device": "cpu", "repeats": 1, "large_batch": 2, "pomme": False}
    with pytest.raises(CoemuInputError, match=message):
        run_timing([other], *inputs.values(), tmp_path / "timing", timing)
    assert not (tmp_path / "eval").exists() and not (tmp_path / "timing").exists()
