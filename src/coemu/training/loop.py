"""The training loop: DDP over ranks, resumable, preemption-safe (paper section 2.5, tables A1/A2).

Run one process per GPU (or per CPU slot) with ``torchrun``; a single
process needs no launcher. The global batch size ``batch_size`` is split
evenly: each of the W ranks takes ``batch_size / W`` samples per step from its
``DistributedSampler`` shard (reshuffled every epoch with ``set_epoch``; an incomplete last batch is
dropped), and DDP averages the gradients, so a step sees ``batch_size``
samples whatever W.

Every epoch ends with a validation pass, a row of ``history.csv`` and an
atomic ``checkpoints/last.pt`` (``best.pt`` when the validation loss
improved; with no validation models, the validation loss is NaN and ``best.pt``
follows the training loss instead, as the log says); ``model.pt`` holds the
final weights. A job started again with the
same settings resumes from ``last.pt``. SIGTERM or SIGUSR1 (SLURM's
preemption and time-limit warning) make every rank stop after its current
batch; rank 0 saves a checkpoint with the position inside the epoch and
:class:`Preempted` is raised (the CLI exits with :data:`EXIT_PREEMPTED`), so a
requeued or retried job continues where it stopped.

:class:`Trainer` holds the steps: :meth:`~Trainer.resume_or_start`,
:meth:`~Trainer.train_one_epoch`, :meth:`~Trainer.validate`,
:meth:`~Trainer.save_checkpoint` and :meth:`~Trainer.finish`;
:meth:`~Trainer.fit` runs them and :func:`train` sets up and tears down the
process group around it. Every collective goes through
:mod:`coemu.training.distributed`.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import itertools
import logging
import math
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Sampler, Subset
from torch.utils.data.distributed import DistributedSampler

from coemu.data.dataset import EmulatorDataset
from coemu.data.description import describe
from coemu.data.transform import Preprocessing
from coemu.io.blocks import read_manifests
from coemu.io.errors import CoemuInputError
from coemu.io.validation import read_json
from coemu.nn import emulator_kinds
from coemu.training import checkpoint
from coemu.training.distributed import (
    Context,
    all_gather_objects,
    all_reduce_sum,
    barrier,
    broadcast_buffers,
    setup,
    teardown,
    wrap,
)
from coemu.training.losses import EmulatorLoss
from coemu.training.preemption import EXIT_PREEMPTED, Preempted

__all__ = ["EXIT_PREEMPTED", "Preempted", "Trainer", "train", "weights_digest"]

log = logging.getLogger(__name__)

HISTORY_FIELDS = ("epoch", "train_loss", "val_loss", "lr", "seconds", "samples_per_second")


class _Skip(Sampler):
    """The indices of ``sampler`` after the first ``skip`` (resuming inside an epoch)."""

    def __init__(self, sampler: Sampler, skip: int = 0):
        self.sampler, self.skip = sampler, skip

    def __iter__(self):
        return itertools.islice(iter(self.sampler), self.skip, None)

    def __len__(self) -> int:
        return max(0, len(self.sampler) - self.skip)


#: The signals that stop a run after its current batch (SLURM's preemption and time-limit warning).
STOP_SIGNALS = {signal.SIGTERM, signal.SIGUSR1}


class _StopFlag:
    """Set by SIGTERM / SIGUSR1; checked between batches."""

    def __init__(self):
        self.raised = False
        for sig in STOP_SIGNALS:
            signal.signal(sig, self._handle)

    def _handle(self, signum, frame):
        self.raised = True


def _ignore_stop_signals(worker_id: int) -> None:
    """In DataLoader workers: leave SIGTERM/SIGUSR1 to the training process.

    SLURM and torchrun signal every process; a worker killed by SIGTERM would
    make its parent fail before it can save a checkpoint. The workers start
    with the signals blocked (:func:`_workers_started`), so one that arrives
    before this function runs stays pending and is discarded here.
    """
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


def _workers_started(loader: DataLoader):
    """``iter(loader)``, its worker processes started with SIGTERM/SIGUSR1 blocked.

    torch installs its own SIGTERM handler in a new worker before the worker's
    init function runs; a signal in between killed the worker and so the run
    (seen in CI when the signal came as an epoch's workers started). Blocked,
    it waits: the workers ignore it (:func:`_ignore_stop_signals`) and this
    process receives it when the block ends, so it stops after its batch.
    """
    old = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        return iter(loader)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def weights_digest(model: torch.nn.Module) -> str:
    """SHA-256 of every parameter, in order (equal digests: equal weights).

    Buffers are left out: each rank's batch-norm running statistics follow its
    own batches (DDP copies rank 0's into every rank at each forward pass).
    """
    h = hashlib.sha256()
    for tensor in model.parameters():
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _write_history(path: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=HISTORY_FIELDS)
    writer.writeheader()
    writer.writerows(rows)
    with checkpoint.atomic_output(path) as tmp:
        tmp.write_text(buf.getvalue())


def train(
    stage: str,
    split: str | Path,
    stats: str | Path,
    manifests: Sequence[str | Path],
    out_dir: str | Path,
    settings: dict[str, Any],
    init: str | Path | None = None,
    progress: bool = True,
    kind: str | None = None,
) -> Path:
    """Train an emulator for one stage; returns the path of ``model.pt`` (on every rank).

    Args:
        stage: ``pretrain`` (face-on, 1 channel) or ``finetune`` (all rotations and channels).
        split: split.json (its train and validation models are used).
        stats: stats/global.json (the preprocessing constants).
        manifests: the image block manifests (every model's cube, image and face-on files).
        out_dir: where model.pt, history.csv and checkpoints/ go.
        settings: the config's ``training`` section (model, device, seed, num_workers, bf16, and
            the stage's epochs, batch_size, lr, step_size, gamma, mse_weight, freq_weight).
        init: a model.pt whose tensors of matching shape start the run (fine-tuning).
        kind: the emulator kind (default: the first of ``settings["model"]["kind"]``).

    Raises:
        Preempted: SIGTERM or SIGUSR1 arrived; the checkpoint was saved.
    """
    ctx = setup(settings["device"])
    stop = _StopFlag()
    try:
        trainer = Trainer(stage, split, stats, manifests, out_dir, settings, ctx, stop, init, progress, kind)
        return trainer.fit()
    finally:
        teardown(ctx)


class Trainer:
    """One stage's training on this rank: data, model, optimiser, schedule and checkpoints.

    Args:
        as :func:`train`, plus ``ctx`` (this rank's process group) and ``stop``
        (the flag the stop signals set).
    """

    def __init__(
        self,
        stage: str,
        split: str | Path,
        stats: str | Path,
        manifests: Sequence[str | Path],
        out_dir: str | Path,
        settings: dict[str, Any],
        ctx: Context,
        stop: _StopFlag,
        init: str | Path | None = None,
        progress: bool = True,
        kind: str | None = None,
    ):
        self.stage, self.ctx, self.stop, self.init, self.progress = stage, ctx, stop, init, progress
        self.out_dir = Path(out_dir)
        self.settings, s = settings, settings[stage]
        self.s = s
        parts = read_json(split)
        prep = Preprocessing.from_file(stats)
        files = read_manifests(manifests)
        try:
            train_models, val_models = parts["train"], parts["validation"]
        except (KeyError, TypeError) as err:
            raise CoemuInputError(split, None, f"not a split file ({err!r})") from None
        self.train_set = EmulatorDataset(train_models, files, prep, stage, source=split)
        self.val_set = EmulatorDataset(val_models, files, prep, stage, source=split)
        if s["batch_size"] % ctx.world_size:
            raise ValueError(f"batch_size {s['batch_size']} is not divisible by {ctx.world_size} ranks")
        self.per_rank = s["batch_size"] // ctx.world_size
        if len(self.train_set) < s["batch_size"]:
            raise ValueError(
                f"{len(self.train_set)} training samples are fewer than batch_size {s['batch_size']}"
            )
        first = self.train_set.files[train_models[0]]
        data = describe(first[self.train_set.target_kind], first["cube"], prep, read_json(stats))
        grid, n_freq = data.grid, data.n_freq
        self.train_set.close()  # no open files in the processes the DataLoader forks

        kinds = settings["model"]["kind"]
        self.kind = kind or (kinds if isinstance(kinds, str) else kinds[0])
        if self.kind not in emulator_kinds():
            raise ValueError(f"unknown emulator kind '{self.kind}' (known: {', '.join(emulator_kinds())})")
        model_settings = settings["model"].get(self.kind, {})
        torch.manual_seed(settings["seed"])  # identical initial weights on every rank
        self.model = emulator_kinds()[self.kind].from_data(data, **model_settings).to(ctx.device)
        self.model.data = data
        self.run = {
            "stage": stage,
            "settings": {k: v for k, v in s.items() if k != "runtime"},  # a longer time limit resumes
            "model": {"kind": self.kind, self.kind: model_settings},
            "seed": settings["seed"],
            "train": train_models,
            "validation": val_models,
            "preprocessing": prep.to_dict(),
            "init": None if init is None else checkpoint.load(init, "model file").get("digest", str(init)),
            "n_freq": n_freq,
            "grid": grid,
            "world_size": ctx.world_size,
        }
        self.key = checkpoint.fingerprint(self.run)
        self.optimizer = torch.optim.Adam(
            self.model.parameters(), lr=s["lr"], betas=(0.9, 0.999), weight_decay=0.0
        )
        # per rank: its DistributedSampler shard (padded to ceil(N / W)) in batches, the last dropped
        self.batches_per_epoch = math.ceil(len(self.train_set) / ctx.world_size) // self.per_rank
        self.per_batch_schedule = s.get("schedule", "step") == "cosine"
        if self.per_batch_schedule:  # down to 0 over all the run's batches, stepped after each
            total = max(1, s["epochs"] * self.batches_per_epoch)
            self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, total)
        elif s.get("step_size"):
            self.scheduler = torch.optim.lr_scheduler.StepLR(self.optimizer, s["step_size"], s["gamma"])
        else:
            self.scheduler = None
        self.ckpt_dir = self.out_dir / "checkpoints"
        self.epoch, self.step, self.history, self.best = 0, 0, [], math.inf
        #: the loss that picks best.pt: the validation loss, or the training loss without validation models
        self.best_by = "val_loss" if len(self.val_set) else "train_loss"
        self.partial = (0.0, 0)  # loss sum and samples of the epoch so far (after a preemption)
        self.loss_fn = EmulatorLoss(s["mse_weight"], s["freq_weight"])
        self.sampler = DistributedSampler(
            self.train_set, ctx.world_size, ctx.rank, shuffle=True, seed=settings["seed"]
        )
        # every rank its own validation shard, without padding: an exact mean
        self.val_shard = Subset(self.val_set, range(ctx.rank, len(self.val_set), ctx.world_size))
        self.workers = settings["num_workers"]
        self.bf16 = settings["bf16"] and ctx.device.type == "cuda"
        self.ddp: torch.nn.Module = self.model

    def autocast(self):
        return torch.autocast("cuda", dtype=torch.bfloat16) if self.bf16 else contextlib.nullcontext()

    def resume_or_start(self) -> None:
        """Resume from ``checkpoints/last.pt`` when it is from the same run, else start (from ``init``)."""
        last = self.ckpt_dir / "last.pt"
        resumed = None
        if last.exists():
            try:
                state = checkpoint.load(last)
            except Exception as err:  # a checkpoint that cannot be read is not resumed from
                state = {}
                log.warning("%s cannot be read (%s): starting afresh", last, err)
            if state.get("fingerprint") == self.key:
                resumed = state
            elif self.ctx.is_main:
                log.warning("%s is from other settings or inputs: starting afresh", last)
        where = all_gather_objects(
            (resumed is not None, resumed and resumed["epoch"], resumed and resumed["step"]), self.ctx
        )
        if len(set(where)) != 1:  # ranks that disagree would call different collectives
            raise RuntimeError(f"ranks see different checkpoints in {self.ckpt_dir}: {where}")
        if resumed is not None:
            self.model.load_state_dict(resumed["model"])
            self.optimizer.load_state_dict(resumed["optimizer"])
            if self.scheduler is not None:
                self.scheduler.load_state_dict(resumed["scheduler"])
            self.epoch, self.step = resumed["epoch"], resumed["step"]
            self.history, self.best = resumed["history"], resumed["best"]
            self.partial = resumed.get("partial", (0.0, 0))
            checkpoint.set_rng_state(resumed["rng"])
            if self.ctx.is_main:
                log.info("resumed from %s: epoch %d, batch %d", last, self.epoch, self.step)
        elif self.init is not None:
            fresh = checkpoint.load_matching(self.model, self.init)
            if self.ctx.is_main:
                log.info("initialised from %s; newly initialised: %s", self.init, ", ".join(fresh) or "none")
        self.ddp = wrap(self.model, self.ctx)

    def save_checkpoint(self, path: Path) -> None:
        """Everything a restart needs, written atomically (rank 0 calls it)."""
        checkpoint.save(
            path,
            {
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
                "epoch": self.epoch,
                "step": self.step,
                "history": self.history,
                "best": self.best,
                "best_by": self.best_by,
                "partial": self.partial,
                "rng": checkpoint.rng_state(),
                "fingerprint": self.key,
                "run": self.run,
            },
        )

    def train_one_epoch(self) -> float:
        """The rest of the current epoch; returns its mean training loss over all ranks.

        Raises:
            Preempted: a stop signal arrived on some rank (after rank 0 saved ``last.pt``).
        """
        self.sampler.set_epoch(self.epoch)
        loader = DataLoader(
            self.train_set,
            batch_size=self.per_rank,
            sampler=_Skip(self.sampler, self.step * self.per_rank),
            num_workers=self.workers,
            drop_last=True,  # no 1-sample batch for batch norm
            worker_init_fn=_ignore_stop_signals,
            pin_memory=self.ctx.device.type == "cuda",  # so that non_blocking copies overlap
        )
        self.ddp.train()
        total, count = self.partial
        batches = _workers_started(loader)
        if self.progress and self.ctx.is_main:
            from tqdm import tqdm

            desc = f"{self.stage} epoch {self.epoch + 1}/{self.s['epochs']}"
            batches = tqdm(batches, total=len(loader), desc=desc, unit="batch", file=sys.stderr)
        for x, y in batches:
            x, y = x.to(self.ctx.device, non_blocking=True), y.to(self.ctx.device, non_blocking=True)
            self.optimizer.zero_grad(set_to_none=True)
            with self.autocast():
                prediction = self.ddp(x)
            loss = self.loss_fn(prediction, y)
            loss.backward()
            self.optimizer.step()
            if self.per_batch_schedule:
                self.scheduler.step()
            total += loss.item() * len(x)
            count += len(x)
            self.step += 1
            if all_reduce_sum([float(self.stop.raised)], self.ctx)[0] > 0:
                self.partial = (total, count)
                if self.ctx.is_main:
                    self.save_checkpoint(self.ckpt_dir / "last.pt")
                    log.warning(
                        "signal received: checkpoint at epoch %d, batch %d; exiting", self.epoch, self.step
                    )
                barrier(self.ctx)
                raise Preempted(f"checkpoint at epoch {self.epoch}, batch {self.step}")
        train_sum, train_n = all_reduce_sum([total, count], self.ctx)
        self.partial = (0.0, 0)
        return train_sum / max(train_n, 1)

    @torch.no_grad()
    def validate(self) -> float:
        """Mean loss over the validation samples (every rank its shard; NaN when there are none).

        Runs rank 0's model everywhere (its batch-norm statistics), through the
        bare module: ranks may hold different numbers of validation batches, and
        DDP's forward is a collective.
        """
        broadcast_buffers(self.model, self.ctx)
        if len(self.val_set) == 0:
            return math.nan
        self.model.eval()
        total, count = 0.0, 0
        loader = DataLoader(
            self.val_shard,
            batch_size=self.per_rank,
            num_workers=self.workers,
            worker_init_fn=_ignore_stop_signals,
            pin_memory=self.ctx.device.type == "cuda",
        )
        for x, y in _workers_started(loader):
            x, y = x.to(self.ctx.device, non_blocking=True), y.to(self.ctx.device, non_blocking=True)
            with self.autocast():
                prediction = self.model(x)
            total += self.loss_fn(prediction, y).item() * len(x)
            count += len(x)
        total, count = all_reduce_sum([total, count], self.ctx)
        return total / max(count, 1)

    def end_epoch(self, train_loss: float, val_loss: float, seconds: float) -> None:
        """Step the schedule, record the epoch and write ``last.pt``, ``best.pt`` and history.csv."""
        lr = self.optimizer.param_groups[0]["lr"]
        if self.scheduler is not None and not self.per_batch_schedule:
            self.scheduler.step()
        self.epoch, self.step = self.epoch + 1, 0
        rate = self.batches_per_epoch * self.s["batch_size"] / max(seconds, 1e-9)  # samples, all ranks
        row = {"epoch": self.epoch, "train_loss": train_loss, "val_loss": val_loss, "lr": lr}
        self.history.append(row | {"seconds": round(seconds, 3), "samples_per_second": round(rate, 3)})
        improved = row[self.best_by] < self.best  # False for NaN
        if improved:
            self.best = row[self.best_by]
        if self.ctx.is_main:
            self.save_checkpoint(self.ckpt_dir / "last.pt")
            if improved:
                self.save_checkpoint(self.ckpt_dir / "best.pt")
            _write_history(self.out_dir / "history.csv", self.history)
            left = (self.s["epochs"] - self.epoch) * seconds
            log.info(
                "%s %s epoch %d/%d: train loss %.5g, validation %.5g, lr %.3g, %.1f samples/s,"
                " %.1f s, ETA %.0f s",
                self.kind,
                self.stage,
                self.epoch,
                self.s["epochs"],
                train_loss,
                val_loss,
                lr,
                rate,
                seconds,
                left,
            )
        barrier(self.ctx)

    def finish(self) -> Path:
        """Check that every rank holds the same weights, then write ``model.pt`` (rank 0)."""
        digest = weights_digest(self.model)
        broadcast_buffers(self.model, self.ctx)  # rank 0's running statistics everywhere, as DDP does
        digests = all_gather_objects(digest, self.ctx)
        if len(set(digests)) != 1:
            raise RuntimeError(f"ranks ended with different weights: {digests}")
        path = self.out_dir / "model.pt"
        if self.ctx.is_main:
            log.info(
                "weights identical on %d rank(s) (process group: %s): sha256 %s",
                self.ctx.world_size,
                self.ctx.backend or "none",
                digest[:16],
            )
            checkpoint.save(path, self.model.model_file(run=self.run, digest=digest))
            _write_history(self.out_dir / "history.csv", self.history)
        barrier(self.ctx)
        return path

    def fit(self) -> Path:
        """Resume or start, train the remaining epochs (each with a validation pass), finish."""
        self.resume_or_start()
        if self.ctx.is_main and self.best_by == "train_loss":
            log.warning("no validation models: best.pt holds the epoch of the lowest training loss")
        while self.epoch < self.s["epochs"]:
            t0 = time.perf_counter()
            train_loss = self.train_one_epoch()
            val_loss = self.validate()
            self.end_epoch(train_loss, val_loss, time.perf_counter() - t0)
        return self.finish()
