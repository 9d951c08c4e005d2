"""Training under torchrun (gloo on CPU): ranks agree, loss falls, kill-and-resume, preemption."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import trained_inputs

from coemu.settings import section
from coemu.training.loop import EXIT_PREEMPTED

CHANNELS = 3  # of the small_results images (conftest)
#: the training section, completed with the schema's defaults as the CLI completes it
SETTINGS = section(
    "training",
    {
        "device": "cpu",
        "seed": 7,
        "num_workers": 0,
        "bf16": False,
        "model": {
            "kind": "coemunet",
            "coemunet": {
                "stem": 2,
                "widths": [4, 4, 8],
                "blocks_per_stage": 1,
                "latent": 64,
                "decoder_channels": 16,
            },
            "column": {"hidden": 8, "layers": 1},
        },
        "pretrain": {
            "epochs": 4,
            "batch_size": 4,
            "lr": 0.004,
            "schedule": "step",
            "step_size": 200,
            "gamma": 0.1,
            "mse_weight": 0.8,
            "freq_weight": 0.2,
        },
        "finetune": {
            "epochs": 3,
            "batch_size": 4,
            "lr": 0.002,
            "schedule": "step",
            "step_size": None,
            "gamma": 1.0,
            "mse_weight": 0.8,
            "freq_weight": 0.2,
        },
    },
)


def torchrun(results, out, stage, nproc=2, extra=(), wait=True, settings=SETTINGS, launcher=True):
    """``coemu train`` under torchrun as the rules run it (or, ``launcher=False``, one bare process)."""
    launch = [
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        str(nproc),
        "--signals-to-handle",
        "SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1",
    ]
    inputs = trained_inputs(results)
    cmd = [
        sys.executable,
        *(launch if launcher else []),
        "-m",
        "coemu.cli",
        "train",
        "--stage",
        stage,
        "--split",
        str(inputs["split"]),
        "--stats",
        str(inputs["stats"]),
        "--manifests",
        *map(str, inputs["manifests"]),
        "--out",
        str(out),
        "--config",
        json.dumps({"training": settings}),
        "--no-progress",
        *extra,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if not wait:
        return subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True
        )
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)


def history(out):
    with open(out / "history.csv") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_two_ranks_agree_and_the_loss_falls(small_results, tmp_path):
    results = small_results  # 8 models: 6 train, 1 validation, 1 test
    proc = torchrun(results, tmp_path / "pretrain", "pretrain")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "weights identical on 2 rank(s)" in proc.stderr
    rows = history(tmp_path / "pretrain")
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    assert float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"])
    saved = torch.load(tmp_path / "pretrain" / "model.pt", weights_only=True)
    assert saved["run"]["world_size"] == 2 and saved["run"]["n_freq"] == 1
    assert (tmp_path / "pretrain" / "checkpoints" / "last.pt").exists()
    # fine-tuning starts from the pretrained weights: all but the channel-dependent layer
    proc = torchrun(
        results, tmp_path / "finetune", "finetune", extra=("--init", str(tmp_path / "pretrain" / "model.pt"))
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "newly initialised: to_decoder.bias, to_decoder.weight" in proc.stderr
    tuned = torch.load(tmp_path / "finetune" / "model.pt", weights_only=True)
    assert tuned["run"]["n_freq"] == CHANNELS


def _final_weights(out):
    return torch.load(out / "model.pt", weights_only=True)["model"]


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_weights(small_results, tmp_path):
    results = small_results
    ref = torchrun(results, tmp_path / "ref", "pretrain")
    assert ref.returncode == 0, ref.stderr[-3000:]
    out = tmp_path / "killed"
    proc = torchrun(results, out, "pretrain", wait=False)
    last = out / "checkpoints" / "last.pt"
    deadline = time.time() + 300
    while not last.exists() and time.time() < deadline:  # killed once the first epoch is saved
        time.sleep(0.05)
    time.sleep(0.3)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "model.pt").exists()
    resumed = torchrun(results, out, "pretrain")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from" in resumed.stderr
    a, b = _final_weights(tmp_path / "ref"), _final_weights(out)
    assert max(float((a[k].double() - b[k].double()).abs().max()) for k in a) <= 1e-6
    assert [r["epoch"] for r in history(out)] == ["1", "2", "3", "4"]


@pytest.mark.slow
@pytest.mark.parametrize(
    "signum, workers, launcher",
    [(signal.SIGTERM, 1, True), (signal.SIGUSR1, 1, True), (signal.SIGTERM, 0, False)],
)
def test_stop_signal_saves_a_checkpoint_and_exits_for_requeue(
    small_results, tmp_path, signum, workers, launcher
):
    results = small_results
    """SIGTERM (preemption) or SIGUSR1 (time-limit warning) to the whole job, DataLoader workers included."""
    out = tmp_path / "preempted"
    settings = {**SETTINGS, "num_workers": workers}
    proc = torchrun(results, out, "finetune", nproc=1, wait=False, settings=settings, launcher=launcher)
    deadline = time.time() + 300
    while not (out / "checkpoints" / "last.pt").exists() and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signum)  # SLURM signals every process of the job
    log, _ = proc.communicate(timeout=120)
    state = torch.load(out / "checkpoints" / "last.pt", weights_only=True)
    assert "signal received" in log, log[-3000:]
    # torchrun reports its own failure
    assert proc.returncode == (EXIT_PREEMPTED if not launcher else 1), log[-3000:]
    assert state["step"] > 0 or state["epoch"] > 0
    again = torchrun(results, out, "finetune", nproc=1, settings=settings, launcher=launcher)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resumed from" in again.stderr
    # under torchrun a world of 1 joins a process group too (one GPU takes the path of several)
    group = "gloo" if launcher else "none"
    assert f"weights identical on 1 rank(s) (process group: {group})" in again.stderr
    assert [r["epoch"] for r in history(out)] == ["1", "2", "3"]


class _SlowStart(torch.utils.data.Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, i):
        return torch.tensor([float(i)])


def _slow_init(worker_id):
    """The worker's init function after a pause: a signal can arrive before it runs."""
    from coemu.training.loop import _ignore_stop_signals

    time.sleep(1.0)
    _ignore_stop_signals(worker_id)


def test_a_stop_signal_while_dataloader_workers_start_does_not_kill_them():
    """SIGTERM from outside (as SLURM sends it) to a worker that has not yet run its init
    function: blocked at the start, it is discarded there, and the batches all arrive."""
    from torch.utils.data import DataLoader

    from coemu.training.loop import _workers_started

    loader = DataLoader(_SlowStart(), batch_size=1, num_workers=1, worker_init_fn=_slow_init)
    batches = _workers_started(loader)
    worker = batches._workers[0].pid
    time.sleep(0.2)  # the worker is in its init function's pause
    subprocess.run(["kill", "-TERM", str(worker)], check=True)
    assert [float(b) for b in batches] == [0.0, 1.0, 2.0, 3.0]


@pytest.mark.slow
def test_the_column_kind_pretrains_then_finetunes_every_weight(small_results, tmp_path):
    """kind column: a 1-channel pretraining carries over to 3 channels whole (no new tensor),
    with a cosine schedule down to 0 over the run's batches, and per-epoch progress lines."""
    settings = {
        **SETTINGS,
        "model": {**SETTINGS["model"], "kind": "column"},
        "pretrain": {**SETTINGS["pretrain"], "schedule": "cosine", "epochs": 2},
        "finetune": {**SETTINGS["finetune"], "schedule": "cosine", "epochs": 2},
    }
    proc = torchrun(small_results, tmp_path / "pretrain", "pretrain", settings=settings)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "column pretrain epoch 2/2: train loss" in proc.stderr and "samples/s" in proc.stderr
    assert "ETA" in proc.stderr
    rows = history(tmp_path / "pretrain")
    assert float(rows[-1]["lr"]) < float(rows[0]["lr"]) and float(rows[0]["samples_per_second"]) > 0
    init = ("--init", str(tmp_path / "pretrain" / "model.pt"))
    proc = torchrun(small_results, tmp_path / "finetune", "finetune", settings=settings, extra=init)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "newly initialised: none" in proc.stderr
    saved = torch.load(tmp_path / "finetune" / "model.pt", weights_only=True)
    assert saved["kind"] == "column" and saved["kwargs"]["hidden"] == 8
    assert saved["data"]["channel_velocities"] == [-300.0, 0.0, 300.0] and saved["data"]["grid"] == 16
    assert saved["run"]["model"] == {"kind": "column", "column": {"hidden": 8, "layers": 1}}


def test_without_validation_models_best_pt_follows_the_training_loss(small_results, tmp_path, caplog):
    """No validation models: the validation loss is NaN, so best.pt is the epoch of the lowest
    training loss, and the log says so (before, best.pt was never written)."""
    import logging

    from coemu.training.loop import train

    inputs = trained_inputs(small_results)
    split = json.loads(inputs["split"].read_text())
    inputs["split"] = tmp_path / "split.json"
    inputs["split"].write_text(
        json.dumps(split | {"train": split["train"] + split["validation"], "validation": []})
    )
    settings = {**SETTINGS, "pretrain": {**SETTINGS["pretrain"], "epochs": 3}}
    with caplog.at_level(logging.INFO, logger="coemu.training.loop"):
        train("pretrain", **inputs, out_dir=tmp_path / "run", settings=settings, progress=False)
    best = torch.load(tmp_path / "run" / "checkpoints" / "best.pt", weights_only=True)
    rows = history(tmp_path / "run")
    assert all(r["val_loss"] == "nan" for r in rows)
    losses = [float(r["train_loss"]) for r in rows]
    assert best["epoch"] == 1 + losses.index(min(losses)) and best["best_by"] == "train_loss"
    assert best["best"] == pytest.approx(min(losses), rel=1e-12)
    assert "no validation models: best.pt holds the epoch of the lowest training loss" in caplog.text


def test_the_trainer_is_given_its_parts_and_reads_no_files(tmp_path):
    """A Trainer assembled by hand from in-memory parts (no split, statistics or manifests):
    it trains, validates, steps a cosine schedule per batch, checkpoints and writes model.pt."""
    import math
    import types

    from torch.utils.data import TensorDataset

    from coemu.data.transform import Preprocessing
    from coemu.nn import ColumnEmulator
    from coemu.training import checkpoint
    from coemu.training.distributed import Context
    from coemu.training.loop import LoopSettings, Trainer, make_optimizer, make_scheduler
    from coemu.training.losses import EmulatorLoss

    grid, generator = 4, torch.Generator().manual_seed(0)
    x = torch.randn(6, 3, grid, grid, grid, generator=generator)  # normalised (v_z, T, n) cubes
    y = torch.rand(6, 1, grid, grid, generator=generator)  # normalised images, 1 channel
    prep = Preprocessing(0.0, 1.0, 0.0, 1.0, 0.0, 1.0, -40.0, 0.0)
    torch.manual_seed(0)
    model = ColumnEmulator(channel_velocities=[0.0], preprocessing=prep.to_dict(), hidden=4, layers=1)
    stage = SETTINGS["pretrain"] | {"epochs": 2, "batch_size": 2, "schedule": "cosine"}
    optimizer = make_optimizer(model, stage)
    scheduler = make_scheduler(optimizer, stage, 2)  # 4 training samples in batches of 2
    trainer = Trainer(
        model,
        TensorDataset(x[:4], y[:4]),
        TensorDataset(x[4:], y[4:]),
        optimizer,
        scheduler,
        EmulatorLoss(0.8, 0.2),
        LoopSettings(
            "pretrain", epochs=2, batch_size=2, schedule="cosine", seed=7, num_workers=0, bf16=False
        ),
        {"note": "hand-made"},
        Context(0, 1, 0, torch.device("cpu")),
        types.SimpleNamespace(raised=False),  # the stop flag: no signal
        tmp_path,
        progress=False,
    )
    saved = checkpoint.load(trainer.fit(), "model file")
    assert saved["run"] == {"note": "hand-made"} and saved["kind"] == "column"
    rows = history(tmp_path)
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert all(math.isfinite(float(r[k])) for r in rows for k in ("train_loss", "val_loss"))
    assert float(rows[1]["lr"]) < float(rows[0]["lr"]) and scheduler.last_epoch == 4  # per batch
    assert checkpoint.load(tmp_path / "checkpoints" / "last.pt")["epoch"] == 2


def test_the_schedule_loss_and_batches_come_from_the_settings_alone():
    """No defaults of the loop's own: a stage section without ``schedule`` is an error and the
    loss takes its weights; the schema holds them."""
    from coemu.training.loop import make_optimizer, make_scheduler, per_rank_batch
    from coemu.training.losses import EmulatorLoss

    optimizer = make_optimizer(torch.nn.Linear(2, 2), SETTINGS["pretrain"])
    step = make_scheduler(optimizer, SETTINGS["pretrain"], 3)
    assert isinstance(step, torch.optim.lr_scheduler.StepLR) and (step.step_size, step.gamma) == (200, 0.1)
    assert make_scheduler(optimizer, SETTINGS["finetune"], 3) is None  # step_size null: constant
    cosine = make_scheduler(optimizer, SETTINGS["pretrain"] | {"schedule": "cosine"}, 3)
    assert cosine.T_max == 4 * 3  # epochs x batches per epoch
    without = {k: v for k, v in SETTINGS["pretrain"].items() if k != "schedule"}
    with pytest.raises(KeyError, match="schedule"):
        make_scheduler(optimizer, without, 3)
    with pytest.raises(TypeError):
        EmulatorLoss()
    schema = section("training")["pretrain"]  # the defaults live in the schema, whatever they are
    assert {"schedule", "step_size", "gamma", "mse_weight", "freq_weight"} <= set(schema)
    assert per_rank_batch(8, 2, 10) == 4
    with pytest.raises(ValueError, match="not divisible by 3 ranks"):
        per_rank_batch(8, 3, 10)
    with pytest.raises(ValueError, match="fewer than batch_size 8"):
        per_rank_batch(8, 2, 7)
