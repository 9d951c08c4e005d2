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

:func:`build_trainer` reads the run's files and builds its parts
(:func:`make_datasets`, :func:`make_model`, :func:`make_optimizer`,
:func:`make_scheduler`, :func:`run_record`); :class:`Trainer` is given them and
holds the steps: :meth:`~Trainer.resume_or_start`,
:meth:`~Trainer.train_one_epoch`, :meth:`~Trainer.validate`,
:meth:`~Trainer.save_checkpoint` and :meth:`~Trainer.finish`;
:meth:`~Trainer.fit` runs them and :func:`train` sets up and tears down the
process group around it. Every setting comes from the completed ``training``
section (the schema's defaults, :func:`coemu.settings.section`); the loop has
no defaults of its own. Every collective goes through
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Sampler, Subset
from torch.utils.data.distributed import DistributedSampler

from coemu.data.dataset import EmulatorDataset
from coemu.data.description import DataDescription, describe
from coemu.data.transform import Preprocessing
from coemu.io.blocks import read_manifests
from coemu.io.errors import CoemuInputError
from coemu.io.validation import read_json
from coemu.nn import Emulator, emulator_kinds
from coemu.settings import pipeline_emulator
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

__all__ = [
    "EXIT_PREEMPTED",
    "LoopSettings",
    "Preempted",
    "Trainer",
    "TrainingData",
    "build_trainer",
    "make_datasets",
    "make_model",
    "make_optimizer",
    "make_scheduler",
    "train",
    "weights_digest",
]

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
        settings: the config's ``training`` section, completed with the schema's defaults
            (:func:`coemu.settings.section`): model, device, seed, num_workers, bf16, and the
            stage's epochs, batch_size, lr, schedule, step_size, gamma, mse_weight, freq_weight.
        init: a model.pt whose tensors of matching shape start the run (fine-tuning).
        kind: the emulator kind (default: the first of ``settings["model"]["kind"]``).

    Raises:
        Preempted: SIGTERM or SIGUSR1 arrived; the checkpoint was saved.
    """
    ctx = setup(settings["device"])
    stop = _StopFlag()
    try:
        trainer = build_trainer(
            stage, split, stats, manifests, out_dir, settings, ctx, stop, init, progress, kind
        )
        return trainer.fit()
    finally:
        teardown(ctx)


# --- building a run's parts from its files and settings ------------------------------------------


@dataclass(frozen=True)
class TrainingData:
    """One stage's data sets and what describes them.

    Attributes:
        train, validation: the data sets of the split's train and validation models
            (samples: normalised input cubes (3, G, G, G) and targets (n_freq, G, G)).
        train_models, validation_models: the models' ids, as split.json lists them.
        preprocessing: the transform of stats/global.json.
        description: the data an emulator is built from (line, channels, grid, cell size).
    """

    train: EmulatorDataset
    validation: EmulatorDataset
    train_models: list[str]
    validation_models: list[str]
    preprocessing: Preprocessing
    description: DataDescription


def make_datasets(
    stage: str, split: str | Path, stats: str | Path, manifests: Sequence[str | Path]
) -> TrainingData:
    """Read split.json, stats/global.json and the manifests; the stage's data sets.

    The training set is closed on return: no open files in the processes the DataLoader forks.

    Raises:
        CoemuInputError: ``split`` is not a split file (no ``train`` or ``validation`` list).
    """
    parts = read_json(split)
    preprocessing = Preprocessing.from_file(stats)
    files = read_manifests(manifests)
    try:
        train_models, validation_models = parts["train"], parts["validation"]
    except (KeyError, TypeError) as err:
        raise CoemuInputError(split, None, f"not a split file ({err!r})") from None
    train_set = EmulatorDataset(train_models, files, preprocessing, stage, source=split)
    validation_set = EmulatorDataset(validation_models, files, preprocessing, stage, source=split)
    first = train_set.files[train_models[0]]
    description = describe(first[train_set.target_kind], first["cube"], preprocessing, read_json(stats))
    train_set.close()
    return TrainingData(
        train_set, validation_set, train_models, validation_models, preprocessing, description
    )


def emulator_kind(model_settings: dict[str, Any], kind: str | None = None) -> str:
    """``kind``, or the first of the config's ``model.kind``; checked against the known kinds."""
    chosen = kind or pipeline_emulator({"model": model_settings})
    if chosen not in emulator_kinds():
        raise ValueError(f"unknown emulator kind '{chosen}' (known: {', '.join(emulator_kinds())})")
    return chosen


def make_model(
    kind: str, description: DataDescription, kind_settings: dict[str, Any], seed: int, device: torch.device
) -> Emulator:
    """An untrained emulator of ``kind`` on ``device``, its weights drawn after ``torch.manual_seed(seed)``
    (identical initial weights on every rank)."""
    torch.manual_seed(seed)
    model = emulator_kinds()[kind].from_data(description, **kind_settings).to(device)
    model.data = description
    return model


def per_rank_batch(batch_size: int, world_size: int, n_train: int) -> int:
    """Samples per rank and step: the global ``batch_size`` split evenly over ``world_size`` ranks.

    Raises:
        ValueError: ``batch_size`` does not divide by ``world_size``, or the ``n_train``
            training samples are fewer than ``batch_size``.
    """
    if batch_size % world_size:
        raise ValueError(f"batch_size {batch_size} is not divisible by {world_size} ranks")
    if n_train < batch_size:
        raise ValueError(f"{n_train} training samples are fewer than batch_size {batch_size}")
    return batch_size // world_size


def batches_per_epoch(n_train: int, world_size: int, per_rank: int) -> int:
    """Batches a rank takes per epoch: its DistributedSampler shard (padded to ceil(N / W)) in
    batches of ``per_rank``, the incomplete last one dropped."""
    return math.ceil(n_train / world_size) // per_rank


def make_optimizer(model: torch.nn.Module, stage_settings: dict[str, Any]) -> torch.optim.Optimizer:
    """Adam at the stage's ``lr`` (betas 0.9, 0.999; no weight decay)."""
    return torch.optim.Adam(model.parameters(), lr=stage_settings["lr"], betas=(0.9, 0.999), weight_decay=0.0)


def make_scheduler(
    optimizer: torch.optim.Optimizer, stage_settings: dict[str, Any], n_batches: int
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """The stage's learning-rate schedule (None: a constant rate).

    ``schedule: cosine``: from ``lr`` down to 0 over the run's ``epochs * n_batches`` batches,
    stepped after every batch; ``step``: StepLR by ``step_size`` epochs and ``gamma``, stepped
    after every epoch (a constant rate when ``step_size`` is null).
    """
    if stage_settings["schedule"] == "cosine":
        total = max(1, stage_settings["epochs"] * n_batches)
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, total)
    if stage_settings["step_size"]:
        return torch.optim.lr_scheduler.StepLR(
            optimizer, stage_settings["step_size"], stage_settings["gamma"]
        )
    return None


def run_record(
    stage: str,
    settings: dict[str, Any],
    kind: str,
    data: TrainingData,
    world_size: int,
    init: str | Path | None,
) -> dict[str, Any]:
    """What defines a run (stored in model.pt; its :func:`~coemu.training.checkpoint.fingerprint`
    decides whether ``last.pt`` is resumed from). The stage's ``runtime`` is left out: a job
    with a longer time limit resumes."""
    return {
        "stage": stage,
        "settings": {k: v for k, v in settings[stage].items() if k != "runtime"},
        "model": {"kind": kind, kind: settings["model"][kind]},
        "seed": settings["seed"],
        "train": data.train_models,
        "validation": data.validation_models,
        "preprocessing": data.preprocessing.to_dict(),
        "init": None if init is None else checkpoint.load(init, "model file").get("digest", str(init)),
        "n_freq": data.description.n_freq,
        "grid": data.description.grid,
        "world_size": world_size,
    }


@dataclass(frozen=True)
class LoopSettings:
    """What the loop itself needs of the settings.

    Attributes:
        stage: ``pretrain`` or ``finetune``.
        epochs: of the whole run (a resumed run trains the rest).
        batch_size: global samples per step, all ranks together.
        schedule: ``step`` (the scheduler, if any, steps after each epoch) or ``cosine`` (after each batch).
        seed: of the DistributedSampler's shuffling.
        num_workers: DataLoader worker processes per rank.
        bf16: bfloat16 autocast (used on CUDA only).
    """

    stage: str
    epochs: int
    batch_size: int
    schedule: str
    seed: int
    num_workers: int
    bf16: bool

    @classmethod
    def of(cls, stage: str, settings: dict[str, Any]) -> LoopSettings:
        """From the completed ``training`` section."""
        own = settings[stage]
        return cls(
            stage,
            own["epochs"],
            own["batch_size"],
            own["schedule"],
            settings["seed"],
            settings["num_workers"],
            settings["bf16"],
        )


def build_trainer(
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
) -> Trainer:
    """Read the run's files and build its parts (data sets, model, optimiser, schedule, loss).

    Args:
        as :func:`train`, plus ``ctx`` (this rank's process group) and ``stop`` (the flag the
        stop signals set).
    """
    own = settings[stage]
    data = make_datasets(stage, split, stats, manifests)
    per_rank = per_rank_batch(own["batch_size"], ctx.world_size, len(data.train))
    kind = emulator_kind(settings["model"], kind)
    model = make_model(kind, data.description, settings["model"][kind], settings["seed"], ctx.device)
    run = run_record(stage, settings, kind, data, ctx.world_size, init)
    optimizer = make_optimizer(model, own)
    scheduler = make_scheduler(optimizer, own, batches_per_epoch(len(data.train), ctx.world_size, per_rank))
    return Trainer(
        model,
        data.train,
        data.validation,
        optimizer,
        scheduler,
        EmulatorLoss(own["mse_weight"], own["freq_weight"]),
        LoopSettings.of(stage, settings),
        run,
        ctx,
        stop,
        out_dir,
        init=init,
        progress=progress,
    )


# --- the loop ------------------------------------------------------------------------------------


class Trainer:
    """One stage's training on this rank, given its parts: the epochs, validation and checkpoints.

    Args:
        model: the emulator (on ``ctx.device``; wrapped in DDP by :meth:`resume_or_start`).
        train_set, validation_set: samples (inputs (3, G, G, G), targets (n_freq, G, G)); every
            rank takes its shard.
        optimizer, scheduler: of ``model``'s parameters (``scheduler`` None: a constant rate).
        loss_fn: (prediction, target) -> the scalar loss.
        settings: the loop's settings (:class:`LoopSettings`).
        run: what defines the run (:func:`run_record`), stored in model.pt; its fingerprint
            decides whether ``checkpoints/last.pt`` is resumed from.
        ctx: this rank's process group; ``stop``: the flag the stop signals set.
        out_dir: where model.pt, history.csv and checkpoints/ go.
        init: a model.pt whose tensors of matching shape start a run that does not resume.
        progress: a progress bar per epoch on rank 0.
    """

    def __init__(
        self,
        model: Emulator,
        train_set: EmulatorDataset,
        validation_set: EmulatorDataset,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler | None,
        loss_fn: torch.nn.Module,
        settings: LoopSettings,
        run: dict[str, Any],
        ctx: Context,
        stop: _StopFlag,
        out_dir: str | Path,
        init: str | Path | None = None,
        progress: bool = True,
    ):
        self.model, self.optimizer, self.scheduler, self.loss_fn = model, optimizer, scheduler, loss_fn
        self.train_set, self.validation_set = train_set, validation_set
        self.settings, self.run, self.ctx, self.stop = settings, run, ctx, stop
        self.init, self.progress = init, progress
        self.out_dir = Path(out_dir)
        self.ckpt_dir = self.out_dir / "checkpoints"
        self.fingerprint = checkpoint.fingerprint(run)
        self.per_rank_batch = per_rank_batch(settings.batch_size, ctx.world_size, len(train_set))
        self.batches_per_epoch = batches_per_epoch(len(train_set), ctx.world_size, self.per_rank_batch)
        self.per_batch_schedule = settings.schedule == "cosine"
        if self.per_batch_schedule and scheduler is None:
            raise ValueError("schedule 'cosine' needs a scheduler (make_scheduler)")
        #: the position: epochs done, batches done in the current epoch
        self.epoch, self.batches_done = 0, 0
        self.history: list[dict] = []
        self.best = math.inf
        #: the loss that picks best.pt: the validation loss, or the training loss without validation models
        self.best_by = "val_loss" if len(validation_set) else "train_loss"
        #: loss sum and samples of the epoch so far (non-zero after a preemption)
        self.partial_loss = (0.0, 0)
        self.sampler = DistributedSampler(
            train_set, ctx.world_size, ctx.rank, shuffle=True, seed=settings.seed
        )
        # every rank its own validation shard, without padding: an exact mean
        self.validation_shard = Subset(validation_set, range(ctx.rank, len(validation_set), ctx.world_size))
        self.bf16 = settings.bf16 and ctx.device.type == "cuda"
        self.ddp_model: torch.nn.Module = self.model  # DDP-wrapped by resume_or_start

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
            if state.get("fingerprint") == self.fingerprint:
                resumed = state
            elif self.ctx.is_main:
                log.warning("%s is from other settings or inputs: starting afresh", last)
        where = all_gather_objects(
            (resumed is not None, resumed and resumed["epoch"], resumed and resumed["step"]), self.ctx
        )
        if len(set(where)) != 1:  # ranks that disagree would call different collectives
            raise RuntimeError(f"ranks see different checkpoints in {self.ckpt_dir}: {where}")
        if resumed is not None:
            self._restore(resumed)
            if self.ctx.is_main:
                log.info("resumed from %s: epoch %d, batch %d", last, self.epoch, self.batches_done)
        elif self.init is not None:
            fresh = checkpoint.load_matching(self.model, self.init)
            if self.ctx.is_main:
                log.info("initialised from %s; newly initialised: %s", self.init, ", ".join(fresh) or "none")
        self.ddp_model = wrap(self.model, self.ctx)

    def _restore(self, saved: dict[str, Any]) -> None:
        """The state of a checkpoint (:meth:`save_checkpoint`): weights, optimiser, schedule,
        position, history and RNG states."""
        self.model.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(saved["scheduler"])
        self.epoch, self.batches_done = saved["epoch"], saved["step"]
        self.history, self.best = saved["history"], saved["best"]
        self.partial_loss = saved.get("partial", (0.0, 0))  # checkpoints from before preemption support
        checkpoint.set_rng_state(saved["rng"])

    def save_checkpoint(self, path: Path) -> None:
        """Everything a restart needs, written atomically (rank 0 calls it)."""
        checkpoint.save(
            path,
            {
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
                "epoch": self.epoch,
                "step": self.batches_done,
                "history": self.history,
                "best": self.best,
                "best_by": self.best_by,
                "partial": self.partial_loss,
                "rng": checkpoint.rng_state(),
                "fingerprint": self.fingerprint,
                "run": self.run,
            },
        )

    def _train_loader(self) -> DataLoader:
        """This rank's batches of the current epoch, from the position reached in it."""
        self.sampler.set_epoch(self.epoch)
        return DataLoader(
            self.train_set,
            batch_size=self.per_rank_batch,
            sampler=_Skip(self.sampler, self.batches_done * self.per_rank_batch),
            num_workers=self.settings.num_workers,
            drop_last=True,  # no 1-sample batch for batch norm
            worker_init_fn=_ignore_stop_signals,
            pin_memory=self.ctx.device.type == "cuda",  # so that non_blocking copies overlap
        )

    def train_one_epoch(self) -> float:
        """The rest of the current epoch; returns its mean training loss over all ranks.

        Raises:
            Preempted: a stop signal arrived on some rank (after rank 0 saved ``last.pt``).
        """
        loader = self._train_loader()
        self.ddp_model.train()
        total, count = self.partial_loss
        batches = _workers_started(loader)
        if self.progress and self.ctx.is_main:
            from tqdm import tqdm

            desc = f"{self.settings.stage} epoch {self.epoch + 1}/{self.settings.epochs}"
            batches = tqdm(batches, total=len(loader), desc=desc, unit="batch", file=sys.stderr)
        for x, y in batches:
            x, y = x.to(self.ctx.device, non_blocking=True), y.to(self.ctx.device, non_blocking=True)
            self.optimizer.zero_grad(set_to_none=True)
            with self.autocast():
                prediction = self.ddp_model(x)
            loss = self.loss_fn(prediction, y)
            loss.backward()
            self.optimizer.step()
            if self.per_batch_schedule:
                self.scheduler.step()
            total += loss.item() * len(x)
            count += len(x)
            self.batches_done += 1
            if all_reduce_sum([float(self.stop.raised)], self.ctx)[0] > 0:
                self._stop_for_signal(total, count)
        train_sum, train_n = all_reduce_sum([total, count], self.ctx)
        self.partial_loss = (0.0, 0)
        return train_sum / max(train_n, 1)

    def _stop_for_signal(self, total: float, count: int) -> None:
        """Save ``last.pt`` at this batch (rank 0), wait for every rank, raise :class:`Preempted`."""
        self.partial_loss = (total, count)
        if self.ctx.is_main:
            self.save_checkpoint(self.ckpt_dir / "last.pt")
            log.warning(
                "signal received: checkpoint at epoch %d, batch %d; exiting", self.epoch, self.batches_done
            )
        barrier(self.ctx)
        raise Preempted(f"checkpoint at epoch {self.epoch}, batch {self.batches_done}")

    @torch.no_grad()
    def validate(self) -> float:
        """Mean loss over the validation samples (every rank its shard; NaN when there are none).

        Runs rank 0's model everywhere (its batch-norm statistics), through the
        bare module: ranks may hold different numbers of validation batches, and
        DDP's forward is a collective.
        """
        broadcast_buffers(self.model, self.ctx)
        if len(self.validation_set) == 0:
            return math.nan
        self.model.eval()
        total, count = 0.0, 0
        loader = DataLoader(
            self.validation_shard,
            batch_size=self.per_rank_batch,
            num_workers=self.settings.num_workers,
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
        self.epoch, self.batches_done = self.epoch + 1, 0
        rate = self.batches_per_epoch * self.settings.batch_size / max(seconds, 1e-9)  # samples, all ranks
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
            left = (self.settings.epochs - self.epoch) * seconds
            log.info(
                "%s %s epoch %d/%d: train loss %.5g, validation %.5g, lr %.3g, %.1f samples/s,"
                " %.1f s, ETA %.0f s",
                self.model.kind,
                self.settings.stage,
                self.epoch,
                self.settings.epochs,
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
        while self.epoch < self.settings.epochs:
            t0 = time.perf_counter()
            train_loss = self.train_one_epoch()
            val_loss = self.validate()
            self.end_epoch(train_loss, val_loss, time.perf_counter() - t0)
        return self.finish()
