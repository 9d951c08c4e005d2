"""Process group set-up from the environment: torchrun (RANK, WORLD_SIZE, LOCAL_RANK) or SLURM.

Under ``torchrun`` the rendezvous variables are set for us. Under ``srun``
without torchrun, SLURM_PROCID / SLURM_NTASKS / SLURM_LOCALID give the rank,
and MASTER_ADDR / MASTER_PORT must be exported by the job script. A single
process (no variables) runs without a process group. A run that a launcher
started (``MASTER_ADDR`` and ``MASTER_PORT`` set, as torchrun does) joins one
even as a world of 1, so one GPU takes the same path as several: nccl, DDP,
the collectives. nccl on CUDA, gloo on CPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Context:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    grouped: bool = False  # this process joined a process group (every launched run)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """The collectives and DDP are used (a process group is joined, a world of 1 included)."""
        return self.grouped

    @property
    def backend(self) -> str | None:
        """``nccl`` or ``gloo`` when a process group is joined, else None."""
        return str(dist.get_backend()) if self.grouped and dist.is_initialized() else None


def _env_int(*names: str, default: int) -> int:
    for name in names:
        if name in os.environ:
            return int(os.environ[name])
    return default


def setup(device: str) -> Context:
    """Join the process group (if there is more than one process) and pick this rank's device.

    Args:
        device: ``cpu``, ``cuda`` or ``auto`` (CUDA when available): ``training.device``.
    """
    rank = _env_int("RANK", "SLURM_PROCID", default=0)
    world = _env_int("WORLD_SIZE", "SLURM_NTASKS", default=1)
    local = _env_int("LOCAL_RANK", "SLURM_LOCALID", default=0)
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if use_cuda and not torch.cuda.is_available():
        raise RuntimeError("training.device is cuda, but no CUDA device is available")
    dev = torch.device("cuda", local) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(dev)
    launched = "MASTER_ADDR" in os.environ and "MASTER_PORT" in os.environ
    if (world > 1 or launched) and not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo", rank=rank, world_size=world)
    return Context(rank, world, local, dev, grouped=dist.is_initialized())


def all_reduce_sum(values: list[float], ctx: Context) -> list[float]:
    """Sum of ``values`` over all ranks (float64)."""
    t = torch.tensor(values, dtype=torch.float64, device=ctx.device)
    if ctx.distributed:
        dist.all_reduce(t)
    return t.tolist()


def all_gather_objects(value, ctx: Context) -> list:
    """``value`` of every rank, in rank order (picklable objects)."""
    if not ctx.distributed:
        return [value]
    out = [None] * ctx.world_size
    dist.all_gather_object(out, value)
    return out


def barrier(ctx: Context) -> None:
    if ctx.distributed:
        dist.barrier()


def teardown(ctx: Context) -> None:
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()


def broadcast_buffers(model: torch.nn.Module, ctx: Context, src: int = 0) -> None:
    """Rank ``src``'s buffers (batch-norm running statistics) on every rank, as DDP does."""
    if ctx.distributed:
        for buffer in model.buffers():
            dist.broadcast(buffer, src)


def wrap(model: torch.nn.Module, ctx: Context) -> torch.nn.Module:
    """``model`` in DistributedDataParallel when there are several ranks (itself otherwise)."""
    if not ctx.distributed:
        return model
    ids = [ctx.local_rank] if ctx.device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
