"""Global statistics: the Dask reduction against a single-process numpy loop over the same files.

1. Throughput (GB/s of float32 values read and reduced): ``coemu.stats`` on a
   LocalCluster (2 workers x 1 thread) against a plain loop that reads each
   file, combines moments with Chan's formula, takes per-file medians and
   the exact median of everything it kept in memory. Both results are
   checked to agree before the times are printed.
2. A data set larger than the workers' combined memory limit: the Dask
   reduction completes (chunks of 2 rotations, two radix passes for the median).
3. Preprocessing on the fly: ms to read one sample (one rotation of a cube
   and its image) against ms to transform it (coemu.data.transform).

Usage: python bench/stats.py [--files 12] [--rotations 8] [--grid 64] [--big-files 32]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import xarray as xr

from coemu.data.variables import (
    DEFAULT_DENSITY_FLOOR,
    DEFAULT_INTENSITY_FLOOR,
    INPUT_VARIABLES,
    transformed_values,
)
from coemu.stats.cluster import dask_client
from coemu.stats.global_stats import global_statistics

FLOORS = {"number_density_co": DEFAULT_DENSITY_FLOOR, "intensity": DEFAULT_INTENSITY_FLOOR}


def write_files(folder: Path, n: int, rotations: int, grid: int, seed: int = 0) -> tuple[list, list]:
    rng = np.random.default_rng(seed)
    shape = (rotations, grid, grid, grid)
    cubes, images = [], []
    for i in range(n):
        dims = ("rotation", "x", "y", "z")
        cube = xr.Dataset(
            {
                "temperature": (dims, rng.lognormal(5.5, 0.5, shape).astype(np.float32)),
                "number_density_co": (dims, (10 ** rng.uniform(6, 14, shape)).astype(np.float32)),
                "velocity_z": (dims, rng.normal(0.0, 4e3, shape).astype(np.float32)),
            }
        )
        image = xr.Dataset(
            {
                "intensity": (
                    ("rotation", "frequency", "x", "y"),
                    (10 ** rng.uniform(-19, -13, (rotations, 7, grid, grid))).astype(np.float32),
                )
            }
        )
        cubes.append(str(folder / f"cube{i:04d}.nc"))
        images.append(str(folder / f"image{i:04d}.nc"))
        cube.to_netcdf(cubes[-1])
        image.to_netcdf(images[-1])
    return cubes, images


def numpy_loop(cubes: list, images: list) -> dict:
    """The same statistics in one process: Chan-combined moments, per-file and global medians.

    Raw values are reported (and checked); the transformed values' moments and
    per-file medians are computed too, as coemu.stats does, so the work matches.
    """
    out = {}
    for var, paths in [(v, cubes) for v in INPUT_VARIABLES] + [("intensity", images)]:
        n, mean, m2, lo, hi, medians, kept = 0, 0.0, 0.0, np.inf, -np.inf, [], []
        for path in paths:
            with xr.open_dataset(path) as ds:
                x = ds[var].values.astype(np.float64).ravel()
            t = transformed_values(var, x, FLOORS)
            t.mean(), t.var(), t.min(), t.max(), np.median(t)
            nb, mb = x.size, x.mean()
            m2b = ((x - mb) ** 2).sum()
            delta = mb - mean
            mean += delta * nb / (n + nb)
            m2 += m2b + delta**2 * n * nb / (n + nb)
            n += nb
            lo, hi = min(lo, x.min()), max(hi, x.max())
            medians.append(np.median(x))
            kept.append(x)
        out[var] = {
            "mean": mean,
            "variance": m2 / n,
            "min": lo,
            "max": hi,
            "median": float(np.median(np.concatenate(kept))),
            "median_of_medians": float(np.median(medians)),
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=12)
    ap.add_argument("--rotations", type=int, default=8)
    ap.add_argument("--grid", type=int, default=64)
    ap.add_argument("--big-files", type=int, default=32, help="files of the larger-than-memory run")
    ap.add_argument("--memory-limit", default="256MiB", help="per worker, larger-than-memory run")
    args = ap.parse_args()
    print(f"# global statistics, {os.cpu_count()} cores, files of {args.rotations} x {args.grid}^3")
    with tempfile.TemporaryDirectory() as tmp, dask_client({"workers": 2, "threads_per_worker": 1}) as client:
        cubes, images = write_files(Path(tmp), args.files, args.rotations, args.grid)
        values = args.files * args.rotations * args.grid**2 * (3 * args.grid + 7)
        gb = values * 4 / 1e9
        t0 = time.perf_counter()
        ref = numpy_loop(cubes, images)
        t_np = time.perf_counter() - t0
        t0 = time.perf_counter()
        stats = global_statistics(client, cubes, images, FLOORS)
        t_dask = time.perf_counter() - t0
        for var, r in ref.items():
            s = stats["images" if var == "intensity" else "cubes"][var]
            assert s["median"] == r["median"] and s["min"] == r["min"] and s["max"] == r["max"], var
            assert (
                abs(s["variance"] / r["variance"] - 1) < 1e-9
                and s["median_of_medians"] == r["median_of_medians"]
            )
        print(f"data: {args.files} cube + {args.files} image files, {gb:.2f} GB of float32 values")
        print(f"numpy loop (1 process): {t_np:6.1f} s  {gb / t_np:6.3f} GB/s")
        print(f"dask (2 workers x 1):   {t_dask:6.1f} s  {gb / t_dask:6.3f} GB/s  ratio {t_np / t_dask:.2f}x")

        sample = xr.open_dataset(cubes[0])
        import torch

        from coemu.data.transform import Preprocessing

        p = Preprocessing.from_stats(stats)
        reps = 20
        t0 = time.perf_counter()
        for r in range(reps):
            with xr.open_dataset(cubes[r % len(cubes)]) as c, xr.open_dataset(images[r % len(images)]) as im:
                x = [
                    c[v][r % args.rotations].values
                    for v in ("temperature", "number_density_co", "velocity_z")
                ]
                y = im["intensity"][r % args.rotations].values
        t_read = (time.perf_counter() - t0) / reps
        tensors = [torch.as_tensor(a) for a in x]
        t0 = time.perf_counter()
        for _ in range(reps):
            p.inputs(*tensors)
            p.intensity(torch.as_tensor(y))
        t_tf = (time.perf_counter() - t0) / reps
        sample.close()
        print(
            f"one sample: read {1e3 * t_read:.2f} ms, transform {1e3 * t_tf:.2f} ms "
            f"(read / transform {t_read / t_tf:.1f}x)"
        )

    with (
        tempfile.TemporaryDirectory() as tmp,
        dask_client({"workers": 2, "threads_per_worker": 1, "memory_limit": args.memory_limit}) as client,
    ):
        cubes, images = write_files(Path(tmp), args.big_files, args.rotations, args.grid, seed=1)
        gb = args.big_files * args.rotations * args.grid**2 * (3 * args.grid + 7) * 4 / 1e9
        t0 = time.perf_counter()
        stats = global_statistics(client, cubes, images, FLOORS, block_rotations=2)
        t = time.perf_counter() - t0
        print(
            f"larger than memory: {gb:.2f} GB of values, 2 workers x {args.memory_limit}: "
            f"completed in {t:.1f} s "
            f"({gb / t:.3f} GB/s), temperature median {stats['cubes']['temperature']['median']:.3f} K"
        )


if __name__ == "__main__":
    main()
