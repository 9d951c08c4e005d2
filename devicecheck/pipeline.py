"""The pipeline's GPU stages, run as its rules run them, on a mini data set the check makes.

In a work folder: ``coemu sphere``, ``cubes-many``, ``render-many`` (the
images stage on the device), ``split`` and ``stats`` (a Dask LocalCluster)
make a synthetic data set; then

* the images stage on the device agrees with ``coemu render --device cpu``
  on the same cube (float32, <= 1e-4 of the peak);
* DDP: ``coemu train --stage finetune`` under ``torchrun`` on every GPU
  (nccl; on the CPU 2 processes on gloo; one GPU is a world of 1, which joins
  a process group all the same), bf16 autocast on CUDA. A reference run goes
  to the end; a second run is killed (SIGKILL to its process group) once its
  first ``last.pt`` is written, then started again: it must say it resumed,
  end with the ranks' weights check, hold every epoch in history.csv and end
  with the reference's weights (to 1e-6 of the largest weight on the CPU,
  1e-4 on CUDA, where kernels may sum in another order);
* ``coemu predict --device D`` against ``--device cpu`` (<= 1e-4 of the peak);
* ``coemu evaluate`` with ``evaluation.device: D`` (finite metrics);
* ``coemu timing`` with ``timing.device: D`` (the GPU rows: the solver, the
  trained kind and the paper's COEmuNet on CUDA); its table is copied into the
  report.

Each stage runs with the machine's cores (:func:`machine_cores`): a single process takes them
all, the processes of a torchrun share them (``OMP_NUM_THREADS`` = cores // processes, at
least 1), as the pipeline's training rule shares its job's threads.
"""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import xarray as xr

from coemu.training import checkpoint
from devicecheck.report import Report
from devicecheck.sizes import Sizes

SECTION = "pipeline"
DDP = "ddp"
TORCHRUN_SIGNALS = "SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1"
STAGE_TIMEOUT_S = 300


def mini_config(sizes: Sizes, device: str, world: int) -> dict:
    """The mini data set's config: the preset's geometry, every stage on ``device``."""
    cuda = device == "cuda"
    config = json.loads(json.dumps(sizes.pipeline))  # a deep copy
    config["images"] |= {"device": device, "dtype": "float32"}
    config["dask"] = {"workers": 2, "threads_per_worker": 1, "memory_limit": "2GiB"}
    stage = {
        "epochs": sizes.epochs,
        "batch_size": 4 * world,
        "lr": 0.01,
        "schedule": "cosine",
        "mse_weight": 1.0,
        "freq_weight": 0.0,
    }
    config["training"] = {
        "device": device,
        "gpus": world if cuda else 0,
        "processes": 1 if cuda else world,
        "num_workers": 2 if cuda else 0,
        "bf16": True,
        "seed": 1234,
        "model": {"kind": "column", "column": sizes.kind_settings("column")},
        "finetune": stage,
    }
    config["evaluation"] = {"device": device, "batch_size": 8, "data_error_samples": 1}
    config["timing"] = {"device": device, "repeats": sizes.repeats, "large_batch": 8, "pomme": False}
    return config


def machine_cores() -> int:
    """The CPU cores this process may run on (its affinity mask; ``os.cpu_count()`` where the
    platform has none)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # no sched_getaffinity (macOS)
        return os.cpu_count() or 1


def threads_per_process(processes: int, cores: int | None = None) -> int:
    """Threads for each of ``processes`` processes sharing ``cores`` (default: the machine's)."""
    return max(1, (cores or machine_cores()) // processes)


def read_rows(path: Path) -> list[dict[str, str]]:
    """The rows of a CSV file with a header (history.csv, timing.csv) as dicts of strings."""
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


class Stages:
    """``coemu`` subcommands in a work folder, each logged to ``logs/NAME.log``; failures become checks.

    A stage is one process with every core, or (``nproc``) ``nproc`` processes under torchrun
    that share the cores (:func:`threads_per_process`).
    """

    def __init__(self, work: Path, config: dict, report: Report):
        self.work, self.report = work, report
        self.results = work / "results"
        (work / "logs").mkdir(parents=True, exist_ok=True)
        self.config = work / "config.json"
        self.config.write_text(json.dumps(config, indent=1))

    def env(self, nproc: int | None = None) -> dict[str, str]:
        """The environment of a stage of ``nproc`` torchrun processes (None: one plain process)."""
        return {**os.environ, "OMP_NUM_THREADS": str(threads_per_process(nproc or 1))}

    def _log(self, name: str) -> Path:
        return self.work / "logs" / f"{name}.log"

    def run(self, name: str, *args, nproc: int | None = None, section: str = SECTION) -> bool:
        """``coemu ARGS --config ...`` (ARGS: the subcommand and its arguments; under torchrun with
        ``nproc`` processes); a check named ``name`` that it exited 0 (with the log's tail when not)."""
        cmd, env = self._command(args, nproc), self.env(nproc)
        t0 = time.perf_counter()
        with open(self._log(name), "w") as log:
            try:
                rc = subprocess.run(
                    cmd, stdout=log, stderr=subprocess.STDOUT, env=env, timeout=STAGE_TIMEOUT_S
                ).returncode
            except subprocess.TimeoutExpired:
                rc = "timeout"
        self.report.rows(section, "stages").append(
            {
                "stage": name,
                "exit": rc,
                "seconds": time.perf_counter() - t0,
                "processes": nproc or 1,
                "threads": int(env["OMP_NUM_THREADS"]),
            }
        )
        return self.report.check(
            section, f"coemu {name}", rc == 0, rc, "exit 0", "" if rc == 0 else self.tail(name)
        )

    def _command(self, args: tuple, nproc: int | None) -> list[str]:
        """``python [-m torch.distributed.run ...] -m coemu.cli ARGS --config CONFIG``, as the rules
        call coemu."""
        launcher = () if nproc is None else _launcher(nproc)
        return [sys.executable, *launcher, "-m", "coemu.cli", *map(str, args), "--config", str(self.config)]

    def tail(self, name: str, chars: int = 1500) -> str:
        return self._log(name).read_text(errors="replace")[-chars:]

    def start(self, name: str, *args, nproc: int | None = None) -> subprocess.Popen:
        """As :meth:`run`, in the background, in a process group of its own."""
        cmd = self._command(args, nproc)
        log = open(self._log(name), "w")  # noqa: SIM115 (closed by the caller's wait)
        return subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env(nproc), start_new_session=True
        )


def make_data(stages: Stages, sizes: Sizes) -> dict | None:
    """The mini data set through the pipeline's stages; its files (or None when a stage failed)."""
    r = stages.results
    count = sizes.pipeline["models"]["count"]
    models = [f"m{i:05d}" for i in range(count)]
    files = {kind: [r / kind / f"{m}.nc" for m in models] for kind in ("cubes", "images", "faceon")}
    blocks = {kind: r / "blocks" / kind / "b0000.json" for kind in ("cubes", "images")}
    ok = stages.run("sphere", "sphere", r / "sphere.json")
    ok = ok and stages.run(
        "cubes-many",
        "cubes-many",
        "--models", *models,
        "--outputs", *files["cubes"],
        "--synthetic",
        "--sphere", r / "sphere.json",
        "--manifest", blocks["cubes"],
    )  # fmt: skip
    ok = ok and stages.run(
        "render-many",
        "render-many",
        "--cubes", *files["cubes"],
        "--images", *files["images"],
        "--faceon", *files["faceon"],
        "--manifest", blocks["images"],
    )  # fmt: skip
    ok = ok and stages.run("split", "split", r / "sphere.json", r / "split.json")
    ok = ok and stages.run(
        "stats", "stats", r / "split.json", r / "stats" / "global.json", "--manifests", blocks["images"]
    )
    if not ok:
        return None
    return {
        "models": models,
        "cubes": files["cubes"],
        "images": files["images"],
        "split": r / "split.json",
        "stats": r / "stats" / "global.json",
        "manifest": blocks["images"],
    }


def _peak_error(a_path: Path, b_path: Path) -> float:
    """max |a - b| / max |b| of two image files' intensities."""
    with xr.open_dataset(a_path) as a, xr.open_dataset(b_path) as b:
        x, y = a["intensity"].values.astype(np.float64), b["intensity"].values.astype(np.float64)
    return float(np.abs(x - y).max() / np.abs(y).max())


def check_images(stages: Stages, data: dict, device: str) -> None:
    """The images stage's file (rendered on ``device``) against the same cube rendered on the CPU."""
    out = stages.results / "cpu" / "image.nc"
    if stages.run("render on cpu", "render", data["cubes"][0], out, "--device", "cpu"):
        err = _peak_error(data["images"][0], out)
        stages.report.check(
            SECTION, f"images stage on {device} vs cpu (float32)", err <= 1e-4, err, "<= 1e-4 of the peak"
        )


def _train_args(data: dict, out: Path) -> tuple:
    return (
        "train", "--stage", "finetune",
        "--split", data["split"], "--stats", data["stats"], "--manifests", data["manifest"],
        "--out", out, "--no-progress",
    )  # fmt: skip


def _launcher(world: int) -> tuple:
    return ("-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(world),
            "--signals-to-handle", TORCHRUN_SIGNALS)  # fmt: skip


def _weights(path: Path) -> dict:
    return checkpoint.load(path, "model file")["model"]


def check_ddp(stages: Stages, data: dict, device: str, world: int, sizes: Sizes) -> Path | None:
    """Reference run, killed run, resumed run; returns the resumed run's model.pt when it finished."""
    report, train = stages.report, stages.results / "train"
    backend = "nccl" if device == "cuda" else "gloo"
    report.record(DDP, "world_size", world)
    report.record(DDP, "backend", backend)
    report.record(DDP, "epochs", sizes.epochs)
    #: what rank 0 logs at the end when every rank holds the same weights
    identical = f"weights identical on {world} rank(s) (process group: {backend})"
    if not _reference_run(stages, data, train / "reference", world, identical):
        return None
    out = train / "finetune"
    _killed_run(stages, data, out, world)
    if not _resumed_run(stages, data, out, world, identical, sizes.epochs):
        return None
    _compare_weights(report, train / "reference" / "model.pt", out / "model.pt", device, world)
    return out / "model.pt"


def _reference_run(stages: Stages, data: dict, out: Path, world: int, identical: str) -> bool:
    """A run to the end in ``out``; whether it finished (and checks that the ranks agreed)."""
    if not stages.run("train (reference)", *_train_args(data, out), nproc=world, section=DDP):
        return False
    said = stages.tail("train (reference)", 10**6)
    stages.report.check(
        DDP,
        "ranks end with identical weights",
        identical in said,
        identical if identical in said else None,
        f"'{identical}' in the log",
    )
    return True


def _killed_run(stages: Stages, data: dict, out: Path, world: int) -> None:
    """A run in ``out`` killed (SIGKILL to its process group) once its first ``last.pt`` is written."""
    proc = stages.start("train (killed)", *_train_args(data, out), nproc=world)
    last, deadline = out / "checkpoints" / "last.pt", time.monotonic() + STAGE_TIMEOUT_S
    while not last.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    saved = checkpoint.load(last) if last.exists() else {}
    killed = last.exists() and not (out / "model.pt").exists()
    stages.report.check(
        DDP,
        "killed after its first checkpoint, before the end",
        killed,
        f"epoch {saved.get('epoch')}, batch {saved.get('step')}" if saved else None,
        "last.pt written, model.pt not",
        "" if killed else stages.tail("train (killed)"),
    )


def _resumed_run(stages: Stages, data: dict, out: Path, world: int, identical: str, epochs: int) -> bool:
    """The killed run started again; whether it finished (and checks that it resumed, that the
    ranks agreed and that history.csv holds every epoch once, rows kept in the report)."""
    report = stages.report
    if not stages.run("train (resumed)", *_train_args(data, out), nproc=world, section=DDP):
        return False
    said = stages.tail("train (resumed)", 10**6)
    report.check(
        DDP, "the second run resumed from last.pt", "resumed from" in said, None, "'resumed from' in the log"
    )
    report.check(
        DDP,
        "the resumed run ends with identical weights on every rank",
        identical in said,
        None,
        f"'{identical}'",
    )
    history = read_rows(out / "history.csv")
    seen = [int(row["epoch"]) for row in history]
    report.check(
        DDP,
        "history.csv holds every epoch once",
        seen == list(range(1, epochs + 1)),
        str(seen),
        f"1..{epochs}",
    )
    report.rows(DDP, "history").extend({k: float(v) for k, v in row.items()} for row in history)
    return True


def _compare_weights(report: Report, reference: Path, resumed: Path, device: str, world: int) -> None:
    """The resumed run's weights against the reference's (to 1e-6 of the largest weight on the
    CPU, 1e-4 on CUDA), and the world size its model.pt records."""
    a, b = _weights(reference), _weights(resumed)
    scale = max(float(t.abs().max()) for t in a.values() if t.is_floating_point())
    diff = max(float((a[k].double() - b[k].double()).abs().max()) for k in a if a[k].is_floating_point())
    limit = 1e-4 if device == "cuda" else 1e-6
    report.check(
        DDP,
        "killed and resumed run ends with the reference's weights",
        diff <= limit * scale,
        diff / scale,
        f"<= {limit:g} of the largest weight",
    )
    model = checkpoint.load(resumed, "model file")
    report.check(
        DDP,
        "model.pt records the world size",
        model["run"]["world_size"] == world,
        model["run"]["world_size"],
        str(world),
    )


def check_trained(stages: Stages, data: dict, model: Path, device: str) -> None:
    """``coemu predict`` on the device and the CPU, ``coemu evaluate`` and ``coemu timing`` on the device."""
    report, r = stages.report, stages.results
    cube = data["cubes"][0]
    predicted = {}
    for dev in dict.fromkeys((device, "cpu")):
        predicted[dev] = r / "predict" / f"{dev}.nc"
        if not stages.run(f"predict on {dev}", "predict", model, cube, predicted[dev], "--device", dev):
            return
    err = _peak_error(predicted[device], predicted["cpu"])
    report.check(SECTION, f"coemu predict on {device} vs cpu", err <= 1e-4, err, "<= 1e-4 of the peak")

    inputs = ("--split", data["split"], "--stats", data["stats"], "--manifests", data["manifest"])
    evaluation = r / "evaluation"
    if stages.run(
        "evaluate", "evaluate", "--stage", "finetune", "--model", model, *inputs, "--out", evaluation
    ):
        metrics = json.loads((evaluation / "metrics.json").read_text())
        keys = ("n_samples", "maxrel_percent_median", "maxrel_percent_p95", "zncc_mean", "ssim_mean")
        summary = {k: metrics.get(k) for k in keys}
        finite = all(isinstance(v, (int, float)) and math.isfinite(v) for v in summary.values())
        report.check(SECTION, "evaluate: finite metrics", finite, len(summary), "every metric finite")
        report.record(
            SECTION, "evaluation (a tiny model on the mini data set: not a measure of accuracy)", summary
        )

    timing = r / "timing"
    if stages.run("timing", "timing", "--models", model, *inputs, "--out", timing):
        rows = read_rows(timing / "timing.csv")
        wanted = {("coemu-solver", device), ("column", device), ("coemunet-paper", device)}
        have = {(row["method"], row["device"]) for row in rows}
        report.check(
            SECTION,
            f"timing: rows on {device}",
            wanted <= have,
            len(rows),
            ", ".join(sorted(f"{m}/{d}" for m, d in wanted)),
        )
        report.record("timing stage", "markdown", (timing / "timing.md").read_text())
