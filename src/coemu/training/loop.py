"""The training loop: DDP over ranks, resumable, preemption-safe (paper section 2.5, tables A1/A2).

Run one process per GPU (or per CPU slot) with ``torchrun``; a single
process needs no launcher. The global batch size ``batch_size`` is split
evenly: each of the W ranks takes ``batch_size / W`` samples per step from its
``DistributedSampler`` shard (reshuffled every epoch with ``set_epoch``; an incomplete last batch is
dropped), and DDP averages the gradients, so a step sees ``batch_size``
samples whatever W.

Every epoch ends with a validation pass, a row of ``history.csv`` and an
atomic ``checkpoints/last.pt`` (``best.pt`` when the validation loss
improved); ``model.pt`` holds the final weights. A job started again with the
same settings resumes from ``last.pt``. SIGTERM or SIGUSR1 (SLURM's
preemption and time-limit warning) make every rank stop after its current
batch; rank 0 saves a checkpoint with the position inside the epoch and the
process exits with :data:`EXIT_PREEMPTED`, so a requeued or retried job
continues where it stopped.
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
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Sampler, Subset
from torch.utils.data.distributed import DistributedSampler

from coemu.data.dataset import EmulatorDataset
from coemu.data.transform import Preprocessing
from coemu.io.validation import read_json
from coemu.nn import COEmuNet
from coemu.training import checkpoint
from coemu.training.distributed import Context, all_gather_objects, all_reduce_sum, barrier, setup, teardown
from coemu.training.losses import EmulatorLoss

log = logging.getLogger(__name__)

#: Exit status after a checkpoint on SIGTERM/SIGUSR1 (EX_TEMPFAIL: run again to continue).
EXIT_PREEMPTED = 75
HISTORY_FIELDS = ("epoch", "train_loss", "val_loss", "lr", "seconds")


class _Skip(Sampler):
    """The indices of ``sampler`` after the first ``skip`` (resuming inside an epoch)."""

    def __init__(self, sampler: Sampler, skip: int = 0):
        self.sampler, self.skip = sampler, skip

    def __iter__(self):
        return itertools.islice(iter(self.sampler), self.skip, None)

    def __len__(self) -> int:
        return max(0, len(self.sampler) - self.skip)


class _StopFlag:
    """Set by SIGTERM / SIGUSR1; checked between batches."""

    def __init__(self):
        self.raised = False
        for sig in (signal.SIGTERM, signal.SIGUSR1):
            signal.signal(sig, self._handle)

    def _handle(self, signum, frame):
        self.raised = True


def _ignore_stop_signals(worker_id: int) -> None:
    """In DataLoader workers: leave SIGTERM/SIGUSR1 to the training process.

    SLURM and torchrun signal every process; a worker killed by SIGTERM would
    make its parent fail before it can save a checkpoint.
    """
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)


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
    results: str | Path,
    out_dir: str | Path,
    settings: dict[str, Any],
    init: str | Path | None = None,
    progress: bool = True,
) -> Path:
    """Train COEmuNet for one stage; returns the path of ``model.pt`` (on every rank).

    Args:
        stage: ``pretrain`` (face-on, 1 channel) or ``finetune`` (all rotations and channels).
        results: the pipeline's results folder (split.json, stats/global.json, cubes/, images/, faceon/).
        out_dir: where model.pt, history.csv and checkpoints/ go.
        settings: the config's ``training`` section (model, device, seed, num_workers, bf16, and
            the stage's epochs, batch_size, lr, step_size, gamma, mse_weight, freq_weight).
        init: a model.pt whose tensors of matching shape start the run (fine-tuning).
    """
    results, out_dir = Path(results), Path(out_dir)
    s = settings[stage]
    ctx = setup(settings.get("device", "auto"))
    stop = _StopFlag()
    try:
        return _train(stage, results, out_dir, settings, s, init, ctx, stop, progress)
    finally:
        teardown(ctx)


def _train(stage, results, out_dir, settings, s, init, ctx: Context, stop, progress) -> Path:
    split = read_json(results / "split.json")
    prep = Preprocessing.from_file(results / "stats" / "global.json")
    train_set = EmulatorDataset(split["train"], results, prep, stage)
    val_set = EmulatorDataset(split["validation"], results, prep, stage)
    if s["batch_size"] % ctx.world_size:
        raise ValueError(f"batch_size {s['batch_size']} is not divisible by {ctx.world_size} ranks")
    per_rank = s["batch_size"] // ctx.world_size
    if len(train_set) < s["batch_size"]:
        raise ValueError(f"{len(train_set)} training samples are fewer than batch_size {s['batch_size']}")
    grid = train_set[0][0].shape[-1]
    n_freq = train_set.n_freq
    train_set.close()  # no open files in the processes the DataLoader forks

    torch.manual_seed(settings["seed"])  # identical initial weights on every rank
    model = COEmuNet(n_freq=n_freq, grid=grid, **settings["model"]).to(ctx.device)
    run = {
        "stage": stage,
        "settings": {k: v for k, v in s.items() if k != "runtime"},  # a longer time limit resumes
        "model": settings["model"],
        "seed": settings["seed"],
        "train": split["train"],
        "validation": split["validation"],
        "preprocessing": prep.to_dict(),
        "init": None if init is None else checkpoint.load(init).get("digest", str(init)),
        "n_freq": n_freq,
        "grid": grid,
        "world_size": ctx.world_size,
    }
    key = checkpoint.fingerprint(run)
    optimizer = torch.optim.Adam(model.parameters(), lr=s["lr"], betas=(0.9, 0.999), weight_decay=0.0)
    scheduler = (
        torch.optim.lr_scheduler.StepLR(optimizer, s["step_size"], s["gamma"]) if s.get("step_size") else None
    )
    ckpt_dir = out_dir / "checkpoints"
    last = ckpt_dir / "last.pt"
    epoch, step, history, best, partial = 0, 0, [], math.inf, (0.0, 0)
    resumed = None
    if last.exists():
        try:
            state = checkpoint.load(last)
        except Exception as err:  # a checkpoint that cannot be read is not resumed from
            state = {}
            log.warning("%s cannot be read (%s): starting afresh", last, err)
        if state.get("fingerprint") == key:
            resumed = state
        elif ctx.is_main:
            log.warning("%s is from other settings or inputs: starting afresh", last)
    where = all_gather_objects(
        (resumed is not None, resumed and resumed["epoch"], resumed and resumed["step"]), ctx
    )
    if len(set(where)) != 1:  # ranks that disagree would call different collectives
        raise RuntimeError(f"ranks see different checkpoints in {ckpt_dir}: {where}")
    if resumed is not None:
        model.load_state_dict(resumed["model"])
        optimizer.load_state_dict(resumed["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(resumed["scheduler"])
        epoch, step, history, best = resumed["epoch"], resumed["step"], resumed["history"], resumed["best"]
        partial = resumed.get("partial", (0.0, 0))
        checkpoint.set_rng_state(resumed["rng"])
        if ctx.is_main:
            log.info("resumed from %s: epoch %d, batch %d", last, epoch, step)
    elif init is not None:
        fresh = checkpoint.load_matching(model, init)
        if ctx.is_main:
            log.info("initialised from %s; newly initialised: %s", init, ", ".join(fresh) or "none")

    ddp = (
        torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[ctx.local_rank] if ctx.device.type == "cuda" else None
        )
        if ctx.distributed
        else model
    )
    loss_fn = EmulatorLoss(s["mse_weight"], s["freq_weight"])
    sampler = DistributedSampler(train_set, ctx.world_size, ctx.rank, shuffle=True, seed=settings["seed"])
    val_shard = Subset(val_set, range(ctx.rank, len(val_set), ctx.world_size))  # no padding: exact mean
    workers = settings.get("num_workers", 0)
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16)
        if settings.get("bf16") and ctx.device.type == "cuda"
        else contextlib.nullcontext()
    )

    def save_state(path: Path, epoch_: int, step_: int) -> None:
        checkpoint.save(
            path,
            {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict() if scheduler is not None else None,
                "epoch": epoch_,
                "step": step_,
                "history": history,
                "best": best,
                "partial": partial,
                "rng": checkpoint.rng_state(),
                "fingerprint": key,
                "run": run,
            },
        )

    while epoch < s["epochs"]:
        t0 = time.perf_counter()
        sampler.set_epoch(epoch)
        loader = DataLoader(
            train_set,
            batch_size=per_rank,
            sampler=_Skip(sampler, step * per_rank),
            num_workers=workers,
            drop_last=True,  # no 1-sample batch for batch norm
            worker_init_fn=_ignore_stop_signals,
        )
        ddp.train()
        total, count = partial
        bar = loader
        if progress and ctx.is_main:
            from tqdm import tqdm

            bar = tqdm(loader, desc=f"{stage} epoch {epoch + 1}/{s['epochs']}", unit="batch", file=sys.stderr)
        for x, y in bar:
            x, y = x.to(ctx.device, non_blocking=True), y.to(ctx.device, non_blocking=True)
            optimizer.zero_grad(set_to_none=True)
            with autocast:
                prediction = ddp(x)
            loss = loss_fn(prediction, y)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(x)
            count += len(x)
            step += 1
            if all_reduce_sum([float(stop.raised)], ctx)[0] > 0:
                partial = (total, count)
                if ctx.is_main:
                    save_state(last, epoch, step)
                    log.warning("signal received: checkpoint at epoch %d, batch %d; exiting", epoch, step)
                barrier(ctx)
                teardown(ctx)
                sys.exit(EXIT_PREEMPTED)
        train_sum, train_n = all_reduce_sum([total, count], ctx)
        partial = (0.0, 0)
        if ctx.distributed:  # validate rank 0's model: its batch-norm statistics everywhere
            for buffer in model.buffers():
                torch.distributed.broadcast(buffer, 0)
        val_loss = _validate(model, val_shard, len(val_set), per_rank, workers, loss_fn, ctx, autocast)
        lr = optimizer.param_groups[0]["lr"]
        if scheduler is not None:
            scheduler.step()
        epoch, step = epoch + 1, 0
        row = {
            "epoch": epoch,
            "train_loss": train_sum / max(train_n, 1),
            "val_loss": val_loss,
            "lr": lr,
            "seconds": round(time.perf_counter() - t0, 3),
        }
        history.append(row)
        improved = val_loss < best
        best = min(best, val_loss)
        if ctx.is_main:
            save_state(last, epoch, 0)
            if improved:
                save_state(ckpt_dir / "best.pt", epoch, 0)
            _write_history(out_dir / "history.csv", history)
            log.info("epoch %d: train %.5g, validation %.5g, lr %.3g", epoch, row["train_loss"], val_loss, lr)
        barrier(ctx)

    digest = weights_digest(model)
    if ctx.distributed:
        for buffer in model.buffers():  # rank 0's running statistics everywhere, as DDP does
            torch.distributed.broadcast(buffer, 0)
        digests = [None] * ctx.world_size
        torch.distributed.all_gather_object(digests, digest)
        if len(set(digests)) != 1:
            raise RuntimeError(f"ranks ended with different weights: {digests}")
    if ctx.is_main:
        log.info("weights identical on %d rank(s): sha256 %s", ctx.world_size, digest[:16])
        checkpoint.save(out_dir / "model.pt", {"model": model.state_dict(), "run": run, "digest": digest})
        _write_history(out_dir / "history.csv", history)
    barrier(ctx)
    return out_dir / "model.pt"


@torch.no_grad()
def _validate(model, shard, n_val, per_rank, workers, loss_fn, ctx, autocast) -> float:
    """Mean loss over the validation samples (every rank its shard; NaN when there are none).

    ``model`` is the bare module, not the DDP wrapper: ranks may hold different
    numbers of validation batches, and DDP's forward is a collective.
    """
    if n_val == 0:
        return math.nan
    model.eval()
    total, count = 0.0, 0
    loader = DataLoader(shard, batch_size=per_rank, num_workers=workers, worker_init_fn=_ignore_stop_signals)
    for x, y in loader:
        x, y = x.to(ctx.device), y.to(ctx.device)
        with autocast:
            prediction = model(x)
        total += loss_fn(prediction, y).item() * len(x)
        count += len(x)
    total, count = all_reduce_sum([total, count], ctx)
    return total / max(count, 1)
