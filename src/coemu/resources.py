"""Portable resource estimates for the rules (memory in MB, runtime in minutes).

Standard library only: the Snakefile evaluates these on every run. The
per-rotation cost comes from ``bench/cubes.py`` (about 0.3 s per 64^3
rotation on one core of the 2-core development machine), with a 3x margin.
"""

from __future__ import annotations

import math

SECONDS_PER_ROTATION_64 = 1.0  # measured ~0.3 s, with margin


def cube_mem_mb(rotations: int, grid: int) -> int:
    """Memory of one cube job: the float32 output (3 variables) about 2.5 times, plus 1 GB."""
    output_mb = rotations * grid**3 * 3 * 4 / 1e6
    return int(1024 + 2.5 * output_mb)


def cube_runtime_min(rotations: int, grid: int, models: int = 1) -> int:
    """Wall time of one cube job making ``models`` cube files, minutes."""
    seconds = models * (5 + rotations * SECONDS_PER_ROTATION_64 * (grid / 64) ** 3)
    return 5 + math.ceil(seconds / 60)


#: CPU float32 solver, 7 channels of a 64^3 cube, 2 threads: about 0.05-0.1 s per image
#: (bench/solver.py); with margin.
SECONDS_PER_IMAGE_64_7 = 0.5


def image_mem_mb(rotations: int, grid: int) -> int:
    """Memory of one image job: the cube file in float32 and float64 copies, plus 1.5 GB."""
    cube_mb = rotations * grid**3 * 3 * 4 / 1e6
    return int(1536 + 3 * cube_mb)


def image_runtime_min(rotations: int, grid: int, channels: int, gpu: bool, models: int = 1) -> int:
    """Wall time of one image job rendering ``models`` cube files, minutes (a GPU assumed 10x faster)."""
    seconds = models * (5 + rotations * SECONDS_PER_IMAGE_64_7 * (grid / 64) ** 3 * max(channels, 1) / 7)
    return 5 + math.ceil(seconds / (10 if gpu else 1) / 60)


def dask_mem_mb(workers: int, memory_limit: str) -> int:
    """Memory of the statistics job: its workers' limits (e.g. ``"1GiB"``) plus 1 GB for the client."""
    from dask.utils import parse_bytes

    return workers * parse_bytes(memory_limit) // 1_000_000 + 1000
