"""Milliseconds per image: the solver, the emulator and pomme, like with like (paper table 2, fairly).

Every method renders the same cubes (rotations of one test model); each
timing is the median, min and max over ``repeats`` runs after a warm-up run,
with ``torch.cuda.synchronize`` around each run on CUDA. Rows:

* ``coemu-solver``: the LTE solver (float32, as the images stage runs it),
  one cube per call, on the CPU and on CUDA when present;
* the trained emulator, named by its kind (``column``, ``coemunet``; 1
  channel = the pretrained model, 7 = the fine-tuned one), batch 1 and a
  large batch, on the CPU and on CUDA: physical cubes to intensities by
  :meth:`coemu.nn.Emulator.intensities` (the path ``predict`` and the
  evaluation run), so the preprocessing of the input and the inverse transform
  of the output are included;
* ``coemunet-paper``: the paper's widths (143,294,737 parameters at 64^3 and
  7 channels), untrained weights (the cost does not depend on their values),
  through the same path with the trained emulator's data description;
* ``pomme``: pomme 0.2.1 on the CPU, float64, when it is installed (tests extra).

``timing.csv`` has method, device, n_freq, batch_size, threads and
ms_per_image_median/min/max; ``timing.md`` the table with speed-ups of the
emulator over the solver on the *same* device and for the same channels.
"""

from __future__ import annotations

import csv
import functools
import importlib.util
import io
import logging
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from coemu.data.transform import Preprocessing
from coemu.evaluation.evaluate import load_emulator
from coemu.geometry.cube_contract import check_cube
from coemu.io.atomic import atomic_output
from coemu.io.blocks import model_files, read_manifests
from coemu.io.errors import CoemuInputError
from coemu.io.validation import read_json
from coemu.nn import COEmuNet, Emulator
from coemu.rt.lamda import load_line
from coemu.rt.solver import line_images
from coemu.rt.spectral import velocity_to_frequency

log = logging.getLogger(__name__)
FIELDS = (
    "method",
    "device",
    "n_freq",
    "batch_size",
    "threads",
    "ms_per_image_median",
    "ms_per_image_min",
    "ms_per_image_max",
)


def time_call(fn: Callable[[], object], repeats: int, device: torch.device) -> list[float]:
    """Seconds of each of ``repeats`` calls after one warm-up call (synchronised on CUDA)."""
    fn()
    out = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        out.append(time.perf_counter() - t0)
    return out


def _solve_each(line, cubes, freqs, dx) -> None:
    """The solver on each cube in turn (one cube per call, as the images stage and pomme run)."""
    for i in range(cubes[0].shape[0]):
        line_images(line, *(c[i : i + 1] for c in cubes), freqs, dx)


@torch.no_grad()
def _emulate(model: Emulator, cubes, idx) -> torch.Tensor:
    """Intensities (B, F, G, G) of cubes ``idx`` by :meth:`coemu.nn.Emulator.intensities`."""
    return model.intensities(*(c[idx] for c in cubes))


def _frequencies(model: Emulator, line) -> np.ndarray:
    """The emulator's channels as frequencies (Hz): those it was trained on."""
    return velocity_to_frequency(model.data.channel_velocities, line.frequency)


def _paper_coemunet(trained: Emulator, device: torch.device) -> COEmuNet:
    """The paper's COEmuNet (untrained) for the channels, grid and transform of ``trained``."""
    model = COEmuNet(n_freq=trained.data.n_freq, grid=trained.data.grid)
    model.data = trained.data
    return model.to(device).eval()


def _row(method, device, n_freq, batch, seconds):
    ms = [1e3 * s / batch for s in seconds]
    return {
        "method": method,
        "device": str(device.type),
        "n_freq": n_freq,
        "batch_size": batch,
        "threads": torch.get_num_threads(),
        "ms_per_image_median": statistics.median(ms),
        "ms_per_image_min": min(ms),
        "ms_per_image_max": max(ms),
    }


def run_timing(
    trained: list[str | Path],
    split_path: str | Path,
    stats: str | Path,
    manifests: list[str | Path],
    out_dir: str | Path,
    settings: dict,
) -> list[dict]:
    """Time every method for the channels of each trained ``model.pt`` (e.g. pretrain: 1, finetune: 7).

    Args:
        trained: model.pt files.
        split_path, stats, manifests: split.json (its first test model's cubes are timed),
            stats/global.json and the image block manifests.
        settings: the ``timing`` config section (device: cpu, or cuda for CPU and GPU rows;
            repeats; large_batch; pomme).
    """
    out_dir = Path(out_dir)
    prep = Preprocessing.from_file(stats)
    loaded = {p: load_emulator(p, prep, stats) for p in trained}
    models = {m.data.n_freq: p for p, m in loaded.items()}
    split = read_json(split_path)
    if not split.get("test"):
        raise CoemuInputError(split_path, "test", "no test models")
    test_model = split["test"][0]
    cube_path = model_files(read_manifests(manifests), [test_model], ("cube",), split_path)[test_model][
        "cube"
    ]
    repeats, large_batch = settings["repeats"], settings["large_batch"]
    devices = ["cpu", "cuda"] if settings["device"] == "cuda" else ["cpu"]
    with xr.open_dataset(cube_path) as ds:
        dx = check_cube(ds, cube_path)  # the cube contract, as every reader of a cube checks it
        arrays = {
            k: ds[k].values.astype(np.float32) for k in ("temperature", "number_density_co", "velocity_z")
        }
    n_cubes = arrays["temperature"].shape[0]
    data = next(iter(loaded.values())).data
    line = load_line(data.molecule, data.transition, data.datafile or None)
    devs = [torch.device(d) for d in devices]
    rows = []
    for device in devs:
        cubes = [
            torch.as_tensor(arrays[k], device=device)
            for k in ("temperature", "number_density_co", "velocity_z")
        ]
        for n_freq, model_path in sorted(models.items()):
            freqs = _frequencies(loaded[model_path], line)
            solve = functools.partial(_solve_each, line, cubes, freqs, dx)
            seconds = time_call(solve, repeats, device)
            rows.append(_row("coemu-solver", device, n_freq, 1, [s / n_cubes for s in seconds]))
            trained_model = loaded[model_path].to(device)
            for name, model in (
                (trained_model.kind, trained_model),
                ("coemunet-paper", _paper_coemunet(trained_model, device)),
            ):
                for batch in (1, large_batch):
                    idx = [i % n_cubes for i in range(batch)]
                    emulate = functools.partial(_emulate, model, cubes, idx)
                    rows.append(_row(name, device, n_freq, batch, time_call(emulate, repeats, device)))
                log.info("timed %s", rows[-1])
    if settings["pomme"] and importlib.util.find_spec("pomme") is not None:
        from coemu.rt.reference import SOLVER_INPUTS, run_reference

        for n_freq, model_path in sorted(models.items()):
            freqs = _frequencies(loaded[model_path], line)
            _, seconds = run_reference(
                {key: arrays[var].astype(np.float64) for key, var in SOLVER_INPUTS.items()},
                freqs,
                dx,
                np.zeros(n_freq),
                threads=torch.get_num_threads(),
                repeat=repeats + 1,
            )
            rows.append(
                _row("pomme", torch.device("cpu"), n_freq, 1, list(np.asarray(seconds)[1:].mean(axis=1)))
            )
    _write(out_dir, rows)
    return rows


def markdown(rows: list[dict]) -> str:
    """Table 2 done like with like: each emulator row against the solver on its device and channels."""
    solver = {
        (r["device"], r["n_freq"]): r["ms_per_image_median"] for r in rows if r["method"] == "coemu-solver"
    }
    pomme = {r["n_freq"]: r["ms_per_image_median"] for r in rows if r["method"] == "pomme"}
    lines = [
        "| method | device | channels | batch | ms per image (median) | solver / this (same device) "
        "| pomme CPU / this |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        ms = r["ms_per_image_median"]
        own = solver.get((r["device"], r["n_freq"]))
        vs_solver = f"{own / ms:.1f}x" if own and r["method"] != "coemu-solver" else ""
        vs_pomme = (
            f"{pomme[r['n_freq']] / ms:.1f}x" if r["n_freq"] in pomme and r["method"] != "pomme" else ""
        )
        lines.append(
            f"| {r['method']} | {r['device']} | {r['n_freq']} | {r['batch_size']} | {ms:.2f} | "
            f"{vs_solver} | {vs_pomme} |"
        )
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "none"
    lines.append("")
    lines.append(
        f"CPU: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads; "
        f"GPU: {gpu}; torch {torch.__version__}."
    )
    return "\n".join(lines) + "\n"


def _write(out_dir: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=FIELDS)
    writer.writeheader()
    writer.writerows(rows)
    with atomic_output(out_dir / "timing.csv") as tmp:
        tmp.write_text(buf.getvalue())
    with atomic_output(out_dir / "timing.md") as tmp:
        tmp.write_text(markdown(rows))
