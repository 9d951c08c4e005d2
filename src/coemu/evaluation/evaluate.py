"""Evaluate a trained emulator on the test models: per-sample metrics, a summary and figures.

Outputs in ``out_dir`` (``results/evaluation/{stage}/``; contracts in docs/contracts.md):

* ``samples.nc``: ``maxrel_percent``, ``zncc``, ``ssim`` on dim ``sample``
  and per channel (``*_per_channel`` on dims ``sample``, ``velocity``), with
  the ``model`` id and ``rotation`` of each sample;
* ``metrics.json``: ``maxrel_percent_median``, ``zncc_mean``, ``ssim_mean``,
  percentiles (5, 25, 50, 75, 95) of each metric, ``n_samples``,
  ``n_test_models``, the emulator's ``kind``, ``per_channel`` (median MaxRel,
  mean ZNCC and SSIM of each channel) and, for synthetic models, the data's
  own error (``data_*``) on ``data_n_samples`` of the test samples;
* ``table.md``: the summary in the style of the paper's table 1, with the
  data's own error as a second row and a per-channel table;
* ``cdf.png``: cumulative distributions of the three metrics (paper fig. 5);
* ``examples.png``: truth, prediction and relative error per channel for the
  best, median and worst sample by MaxRel, truth and prediction of a sample
  on one colour scale; ``spectra.png``: the spectra of a few pixels of the
  median sample, truth and prediction;
* ``loss.png``: the training and validation loss per epoch (from the run's
  history.csv) when it is given.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from coemu.data.dataset import EmulatorDataset
from coemu.data.transform import Preprocessing
from coemu.evaluation.metrics import maxrel_percent, ssim, zncc
from coemu.io.atomic import atomic_output, write_json_atomic, write_netcdf_atomic
from coemu.io.blocks import read_manifests
from coemu.io.errors import CoemuInputError
from coemu.io.validation import read_json
from coemu.nn import Emulator
from coemu.rt.solver import resolve_device

log = logging.getLogger(__name__)

PERCENTILES = (5, 25, 50, 75, 95)
METRICS = ("maxrel_percent", "zncc", "ssim")


def load_emulator(
    model_path: str | Path, prep: Preprocessing, stats: str | Path, device: str | torch.device = "cpu"
) -> Emulator:
    """The trained emulator in ``model_path`` (eval mode, on ``device``), checked against ``stats``.

    The emulator preprocesses its inputs and inverts its outputs with its own transform
    (:meth:`coemu.nn.Emulator.emulate`); ``prep`` (from ``stats``) normalises the targets, so
    the two must be one.

    Raises:
        CoemuInputError: a model file without a data description (an older coemu), or one
            trained with other preprocessing constants than ``stats`` holds.
    """
    model = Emulator.from_checkpoint(model_path, device)
    if model.data is None:
        raise CoemuInputError(model_path, "data", "no data description (a model file from an older coemu)")
    if model.data.preprocessing != prep.to_dict():
        raise CoemuInputError(
            stats, None, f"preprocessing constants other than those {model_path} was trained with"
        )
    return model


@torch.no_grad()
def predict(model: Emulator, dataset: EmulatorDataset, batch_size: int, device: torch.device):
    """Targets and predictions of every sample, through :meth:`coemu.nn.Emulator.emulate`.

    Args:
        dataset: with ``physical_inputs`` (the emulator preprocesses the cubes itself).

    Returns:
        (targets, predictions, intensities): the normalised targets and predictions
        (samples, n_freq, G, G) float32, and the predictions in W m-2 Hz-1 sr-1 (float64), on the CPU.
    """
    targets, predictions, intensities = [], [], []
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size)
    for cubes, y in loader:
        normalised, intensity = model.emulate(*(c.to(device) for c in cubes))
        predictions.append(normalised.float().cpu())
        intensities.append(intensity.cpu())
        targets.append(y)
    return torch.cat(targets), torch.cat(predictions), torch.cat(intensities)


def summarise(values: dict[str, np.ndarray], per_channel: dict[str, np.ndarray] | None = None) -> dict:
    """Medians, means and percentiles over samples; ``per_channel`` (sample, channel) arrays too."""
    out = {
        "n_samples": int(len(values["zncc"])),
        "maxrel_percent_median": float(np.median(values["maxrel_percent"])),
        "zncc_mean": float(np.nanmean(values["zncc"])),
        "ssim_mean": float(np.mean(values["ssim"])),
    }
    for name in METRICS:
        for q in PERCENTILES:
            out[f"{name}_p{q}"] = float(np.nanpercentile(values[name], q))
    if per_channel is not None:
        out["per_channel"] = {
            "maxrel_percent_median": [float(v) for v in np.median(per_channel["maxrel_percent"], axis=0)],
            "zncc_mean": [float(v) for v in np.nanmean(per_channel["zncc"], axis=0)],
            "ssim_mean": [float(v) for v in np.mean(per_channel["ssim"], axis=0)],
        }
    return out


def markdown_table(stage: str, summary: dict, velocities=None) -> str:
    """Table 1 style: the emulator's row, the data's own error beside it, then per channel."""
    kind = summary.get("kind", "")
    n_models = summary.get("n_test_models", "")
    table = (
        "| what | kind | stage | test models | samples | MaxRel median (%) | MaxRel p95 (%) |"
        " ZNCC mean | SSIM mean |\n"
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |\n"
        f"| emulator vs the pipeline's images | {kind} | {stage} | {n_models} | {summary['n_samples']} |"
        f" {summary['maxrel_percent_median']:.2f} | {summary['maxrel_percent_p95']:.2f} |"
        f" {summary['zncc_mean']:.4f} | {summary['ssim_mean']:.4f} |\n"
    )
    if "data_maxrel_percent_median" in summary:
        table += (
            f"| data: the pipeline's images vs the analytic cubes' | | {stage} | |"
            f" {summary['data_n_samples']} | {summary['data_maxrel_percent_median']:.2f} |"
            f" {summary['data_maxrel_percent_p95']:.2f} | {summary['data_zncc_median']:.4f} (median) | |\n"
            "\nThe second row is the data's own error (the cubes against the models they sample);"
            " an emulator error below it says nothing about the physics.\n"
        )
    if "per_channel" in summary:
        pc = summary["per_channel"]
        heads = velocities if velocities is not None else range(len(pc["zncc_mean"]))
        table += "\n| channel (km/s) | " + " | ".join(f"{v / 1e3:+.2f}" for v in heads) + " |\n"
        table += "| --- |" + " ---: |" * len(pc["zncc_mean"]) + "\n"
        table += (
            "| MaxRel median (%) | " + " | ".join(f"{v:.2f}" for v in pc["maxrel_percent_median"]) + " |\n"
        )
        table += "| ZNCC mean | " + " | ".join(f"{v:.4f}" for v in pc["zncc_mean"]) + " |\n"
        table += "| SSIM mean | " + " | ".join(f"{v:.4f}" for v in pc["ssim_mean"]) + " |\n"
    return table


def evaluate(
    stage: str,
    model_path: str | Path,
    split_path: str | Path,
    stats: str | Path,
    manifests: list[str | Path],
    out_dir: str | Path,
    settings: dict,
    data_reference: tuple | None = None,
    history: str | Path | None = None,
) -> dict:
    """Evaluate ``model_path`` on the test models of ``split_path``; returns the summary.

    Args:
        stats: stats/global.json (the preprocessing the model was trained with).
        manifests: the image block manifests (every model's files).
        settings: the ``evaluation`` config section (batch_size, device, data_error_samples).
        data_reference: (data-set seed, RenderSettings) of synthetic models: the summary
            then also holds the data's own error (:func:`coemu.evaluation.fidelity.data_error`)
            on ``data_error_samples`` test samples.
        history: the training run's history.csv (for ``loss.png``).
    """
    out_dir = Path(out_dir)
    dev = resolve_device(settings["device"])
    test_models, files, prep, dataset = _test_set(stage, split_path, stats, manifests)
    model = load_emulator(model_path, prep, stats, dev)
    target, prediction, physical_p = predict(model, dataset, settings["batch_size"], dev)
    physical_t = prep.intensity_inverse(target.double())
    per_channel = per_channel_metrics(target, prediction, physical_t, physical_p, prep.intensity_floor)
    values = {k: v.mean(axis=1) for k, v in per_channel.items()}
    velocities = model.data.channel_velocities
    write_netcdf_atomic(
        samples_dataset(values, per_channel, dataset.index, velocities), out_dir / "samples.nc"
    )
    summary = summarise(values, per_channel) | {
        "stage": stage,
        "kind": model.kind,
        "test_models": test_models,
        "n_test_models": len(test_models),
    }
    if data_reference is not None and settings["data_error_samples"] > 0:
        from coemu.evaluation.fidelity import data_error

        seed, solver = data_reference
        data = data_error(
            test_models, files, seed, solver, settings["data_error_samples"], faceon=stage == "pretrain"
        )
        summary |= data or {}
    write_json_atomic(summary, out_dir / "metrics.json")
    with atomic_output(out_dir / "table.md") as tmp:
        tmp.write_text(markdown_table(stage, summary, velocities))
    _figures(out_dir, values, target, prediction, physical_t, physical_p)
    if history is not None:
        loss_figure(history, out_dir / "loss.png", f"{model.kind} {stage}")
    log.info(
        "%s %s: MaxRel median %.2f%%, ZNCC %.4f, SSIM %.4f over %d samples of %d test models",
        model.kind,
        stage,
        summary["maxrel_percent_median"],
        summary["zncc_mean"],
        summary["ssim_mean"],
        summary["n_samples"],
        len(test_models),
    )
    return summary


def _test_set(
    stage: str, split_path: str | Path, stats: str | Path, manifests: list[str | Path]
) -> tuple[list[str], dict, Preprocessing, EmulatorDataset]:
    """The test models of ``split_path``, every model's files, the preprocessing of ``stats`` and
    the test samples (physical input cubes, normalised targets).

    Raises:
        CoemuInputError: the split has no test models.
    """
    split = read_json(split_path)
    prep = Preprocessing.from_file(stats)
    if not split.get("test"):
        raise CoemuInputError(split_path, "test", "no test models")
    files = read_manifests(manifests)
    dataset = EmulatorDataset(split["test"], files, prep, stage, source=split_path, physical_inputs=True)
    return split["test"], files, prep, dataset


def per_channel_metrics(
    target: torch.Tensor,
    prediction: torch.Tensor,
    physical_target: torch.Tensor,
    physical_prediction: torch.Tensor,
    intensity_floor: float,
) -> dict[str, np.ndarray]:
    """MaxRel (%, of the intensities), ZNCC and SSIM (of the normalised images) per sample and channel.

    Args:
        target, prediction: normalised images (samples, n_freq, G, G).
        physical_target, physical_prediction: the same in W m-2 Hz-1 sr-1 (float64).
        intensity_floor: W m-2 Hz-1 sr-1, the transform's floor (MaxRel's peaks at least it).

    Returns:
        ``maxrel_percent``, ``zncc``, ``ssim``: (samples, n_freq) float64 arrays.
    """
    return {
        "maxrel_percent": maxrel_percent(physical_target, physical_prediction, intensity_floor, True).numpy(),
        "zncc": zncc(target.double(), prediction.double(), True).numpy(),
        "ssim": ssim(target, prediction, True).double().numpy(),
    }


def samples_dataset(
    values: dict[str, np.ndarray],
    per_channel: dict[str, np.ndarray],
    index: list[tuple[str, int]],
    velocities: list[float],
) -> xr.Dataset:
    """The contents of samples.nc: each metric per sample (``values``, (samples,)) and per sample
    and channel (``per_channel``, (samples, n_freq)), the model id and rotation of each sample
    (``index``) and the channels' velocities (m s-1)."""
    samples = xr.Dataset(
        {k: ("sample", v) for k, v in values.items()}
        | {f"{k}_per_channel": (("sample", "velocity"), v) for k, v in per_channel.items()}
        | {
            "model": ("sample", [m for m, _ in index]),
            "rotation": ("sample", [r for _, r in index]),
        }
    )
    samples["maxrel_percent"].attrs = {"units": "percent", "long_name": "MaxRel (paper eq. 30)"}
    samples["zncc"].attrs = {"units": "1", "long_name": "ZNCC averaged over channels (eq. 31-32)"}
    samples["ssim"].attrs = {"units": "1", "long_name": "SSIM averaged over channels (eq. 33-36)"}
    return samples.assign_coords(velocity=("velocity", velocities, {"units": "m s-1"}))


def _save(fig, path: Path) -> None:
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")


def _figures(out_dir, values, target, prediction, physical_t, physical_p) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    for ax, name in zip(axes, METRICS, strict=True):
        v = np.sort(values[name][np.isfinite(values[name])])
        ax.step(v, np.arange(1, len(v) + 1) / max(len(v), 1), where="post")
        ax.set_xlabel(name.replace("_percent", " (%)"))
        ax.set_ylabel("cumulative fraction")
        ax.grid(alpha=0.3)
    fig.suptitle("Test samples: cumulative distributions")
    _save(fig, out_dir / "cdf.png")
    plt.close(fig)

    order = np.argsort(values["maxrel_percent"])
    picks = {"best": order[0], "median": order[len(order) // 2], "worst": order[-1]}
    n_freq = target.shape[1]
    fig, axes = plt.subplots(
        3 * len(picks), n_freq, figsize=(1.8 * n_freq + 1, 5.4 * len(picks)), squeeze=False
    )
    for row, (label, i) in enumerate(picks.items()):
        peak = physical_t[i].amax(dim=0).clamp_min(1e-300)
        rel = ((physical_t[i] - physical_p[i]).abs() / peak).numpy() * 100
        lo, hi = float(target[i].min()), float(target[i].max())  # one scale: the truth's range
        for c in range(n_freq):
            for k, (img, title, cmap, vmin, vmax) in enumerate(
                [
                    (target[i, c], "truth", "magma", lo, hi),
                    (prediction[i, c], "prediction", "magma", lo, hi),
                    (rel[c], "error %", "viridis", 0.0, float(rel.max())),
                ]
            ):
                ax = axes[3 * row + k, c]
                ax.imshow(np.asarray(img), origin="lower", cmap=cmap, vmin=vmin, vmax=vmax)
                ax.set_xticks([])
                ax.set_yticks([])
                if c == 0:
                    ax.set_ylabel(f"{label}\n{title}", fontsize=8)
    fig.suptitle(
        "Normalised ln intensity (truth and prediction of a sample on one scale, the truth's range)"
        " and MaxRel error (%) per channel: best, median, worst sample"
    )
    _save(fig, out_dir / "examples.png")
    plt.close(fig)

    i = picks["median"]
    g = target.shape[-1]
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for (px, py), colour in zip(
        [(g // 2, g // 2), (g // 4, g // 2), (g // 2, g // 4), (3 * g // 4, 3 * g // 4)],
        ["C0", "C1", "C2", "C3"],
        strict=True,
    ):
        ax.plot(physical_t[i, :, px, py].numpy(), "-o", color=colour, label=f"truth ({px}, {py})")
        ax.plot(physical_p[i, :, px, py].numpy(), "--x", color=colour, label="prediction")
    ax.set_xlabel("channel")
    ax.set_ylabel("I (W m-2 Hz-1 sr-1)")
    ax.set_yscale("log")
    ax.legend(fontsize=6, ncol=2)
    ax.set_title("Spectra of four pixels, median sample")
    _save(fig, out_dir / "spectra.png")
    plt.close(fig)


def loss_figure(history: str | Path, path: Path, title: str) -> None:
    """Training and validation loss per epoch from a history.csv, log scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    rows = pd.read_csv(history)
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    ax.plot(rows["epoch"], rows["train_loss"], "-o", label="training")
    if rows["val_loss"].notna().any():
        ax.plot(rows["epoch"], rows["val_loss"], "-s", label="validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(f"Loss per epoch: {title}")
    _save(fig, path)
    plt.close(fig)
