"""Reductions over lazy arrays: moments, extremes, per-file medians and the exact global median.

* count, mean, variance (population, ddof 0), min, max: Dask's own
  reductions, accumulated in float64; ``dask.array.var`` combines per-chunk
  (count, mean, central moment) triples pairwise, which is the parallel
  algorithm of Chan, Golub & LeVeque (1979): no sum of squares is formed.
* median of medians: the median of each file's median (the paper's
  "median of medians" over its chunks, a file being a chunk).
* exact median: a radix select on the float32 values as stored. Each value
  maps to a 32-bit key that sorts like the value; the first pass counts keys
  by their top 16 bits (65,536 bins, alongside the moments), which fixes the
  top half of the wanted order statistics' keys; the second pass counts the
  low 16 bits of the keys under that prefix, which fixes the keys, hence the
  values, exactly. Two passes whatever the data, 512 kB of counts per
  variable, and nothing gathered.
"""

from __future__ import annotations

from collections.abc import Callable

import dask
import dask.array as da
import numpy as np

HALF = 16
BINS = 1 << HALF


def moments(x) -> dict:
    """Lazy {count, mean, variance, min, max} of a Dask array, in float64."""
    return {
        "count": x.size,
        "mean": x.mean(dtype=np.float64),
        "variance": x.var(dtype=np.float64),
        "min": x.min().astype(np.float64),
        "max": x.max().astype(np.float64),
    }


def _median(values: np.ndarray, transform: Callable | None = None) -> float:
    v = values.astype(np.float64) if transform is None else transform(values)
    return float(np.median(v, overwrite_input=True))  # v is a copy: sort it in place


def file_medians(files: list, transform: Callable | None = None) -> list:
    """Lazy median of each file's values (after ``transform``, if given), as 0-d Dask arrays.

    Arrays, not Delayed objects: dask 2026.8 misorders the results of one
    ``dask.compute`` call that mixes the two kinds (checked by the tests).
    """
    return [
        da.from_delayed(dask.delayed(_median, pure=True)(a, transform), shape=(), dtype=np.float64)
        for a in files
    ]


def sort_keys(values: np.ndarray) -> np.ndarray:
    """uint32 keys that sort like the float32 ``values`` (negative: all bits flipped; else sign set)."""
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32)
    return np.where(bits >> 31, ~bits, bits | np.uint32(0x80000000))


def key_values(keys: np.ndarray) -> np.ndarray:
    """float32 values of sort keys (the inverse of :func:`sort_keys`)."""
    keys = np.asarray(keys, dtype=np.uint32)
    bits = np.where(keys >> 31, keys & np.uint32(0x7FFFFFFF), ~keys)
    return bits.view(np.float32)


def _top_counts(block: np.ndarray) -> np.ndarray:
    return np.bincount((sort_keys(block.ravel()) >> HALF).astype(np.int64), minlength=BINS)[None]


def _low_counts(block: np.ndarray, prefix: int) -> np.ndarray:
    keys = sort_keys(block.ravel())
    low = keys[(keys >> HALF) == prefix] & np.uint32(BINS - 1)
    return np.bincount(low.astype(np.int64), minlength=BINS)[None]


def _counts(files: list, function, **kwargs):
    """Lazy (BINS,) counts summed over every block of every file."""
    per_block = [
        a.reshape(a.shape[0], -1).map_blocks(function, chunks=(1, BINS), dtype=np.int64, **kwargs)
        for a in files
    ]
    return da.concatenate(per_block, axis=0).sum(axis=0)


def top_counts(files: list):
    """Lazy counts of the values' sort keys by their top 16 bits (first pass)."""
    return _counts(files, _top_counts)


def median_ranks(count: int) -> tuple[int, int]:
    """0-based ranks of the two middle values (equal for an odd count)."""
    return (count - 1) // 2, count // 2


def _locate(counts: np.ndarray, rank: int) -> tuple[int, int]:
    """(bin holding the value of ``rank``, values in lower bins)."""
    cum = np.cumsum(counts)
    b = int(np.searchsorted(cum, rank, side="right"))
    return b, int(cum[b - 1]) if b else 0


def exact_medians(files: dict[str, list], tops: dict[str, np.ndarray]) -> dict[str, tuple[float, float]]:
    """The two middle values (float32, as stored) of each variable, by the second radix pass.

    Args:
        files: name -> list of per-file Dask arrays (float32).
        tops: name -> computed :func:`top_counts` of those files.

    Returns:
        name -> (value of rank (n-1)//2, value of rank n//2); the median is their mean.
    """
    plan = {}
    for name, counts in tops.items():
        ranks = median_ranks(int(counts.sum()))
        plan[name] = [(rank, *_locate(counts, rank)) for rank in ranks]
    lows = {
        (name, prefix): _counts(files[name], _low_counts, prefix=prefix)
        for name, located in plan.items()
        for _, prefix, _ in located
    }
    (lows,) = dask.compute(lows)
    result = {}
    for name, located in plan.items():
        values = []
        for rank, prefix, below in located:
            low, _ = _locate(lows[name, prefix], rank - below)
            values.append(float(key_values(np.uint32((prefix << HALF) | low))))
        result[name] = (values[0], values[1])
    return result
