"""The LTE line solver on the CPU: pomme 0.2.1 and coemu side by side on the same cubes.

ms per image (64^3 cube, rays along z) for 7 channels and 1 channel, float64
and float32, 1 and 2 threads; pomme always computes in float64 (it sets
torch's default dtype), so its float64 figures are the reference for both.
Agreement (max |I - I_pomme| / max I_pomme) is checked before the timings
are printed. Medians are printed, and the ratio of the best times, which a
shared machine disturbs least. With --gpu, also images per second for a batch of 200 rotations
on CUDA.

Usage: python bench/solver.py [--models 2] [--rotations 2] [--repeat 3] [--gpu]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import torch

from coemu.geometry.cube import make_cubes
from coemu.hydro.sources import synthetic_extents
from coemu.hydro.synthetic import synthetic_model
from coemu.rt.lamda import load_line
from coemu.rt.reference import run_reference, solver_arrays
from coemu.rt.solver import line_images
from coemu.rt.spectral import channel_frequencies


def synthetic_inputs(n_models: int, rotations: int, seed: int = 1234):
    radius = min(e.radius for e in synthetic_extents(seed, max(n_models, 8)).values())
    cubes = [make_cubes(synthetic_model(seed, i, 32, 5), radius, seed, rotations) for i in range(n_models)]
    arrays = solver_arrays(cubes)
    return arrays, float(cubes[0].attrs["cell_size"])


def run_pomme(arrays, freqs, dx, threads, repeat):
    images, seconds = run_reference(arrays, freqs, dx, np.zeros(len(freqs)), threads=threads, repeat=repeat)
    return images, list((seconds[1:] if repeat > 1 else seconds).ravel())  # first round: warm-up


def run_coemu(line, arrays, freqs, dx, dtype, repeat, device="cpu", compile=False):
    inputs = [
        torch.as_tensor(arrays[k], dtype=dtype, device=device)
        for k in ("temperature", "number_density", "velocity_z")
    ]
    line_images(line, *(x[:1] for x in inputs), freqs, dx, compile=compile)  # warm-up, compilation
    times = []
    for _ in range(repeat):
        for i in range(inputs[0].shape[0]):  # one cube per call, as pomme is timed
            if device != "cpu":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            line_images(line, *(x[i : i + 1] for x in inputs), freqs, dx, compile=compile)
            if device != "cpu":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
    full = line_images(line, *inputs, freqs, dx, compile=compile).double().cpu().numpy()
    return full, times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", type=int, default=2)
    ap.add_argument("--rotations", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--gpu", action="store_true")
    args = ap.parse_args()

    line = load_line()
    arrays, dx = synthetic_inputs(args.models, args.rotations)
    n_img = arrays["temperature"].shape[0]
    print(f"# LTE solver, CPU ({os.cpu_count()} cores), {n_img} synthetic 64^3 cubes, median ms per image")
    print(
        f"{'channels':>8s} {'threads':>7s} {'pomme f64':>10s} {'coemu':>17s} {'ms':>7s} {'pomme/coemu':>11s} "
        f"{'best/best':>9s} {'max err':>9s}"
    )
    for n_ch in (7, 1):
        freqs = channel_frequencies(line.frequency, n_ch, 300.0)
        for threads in (int(t) for t in args.threads.split(",")):
            torch.set_num_threads(threads)
            ref, t_pomme = run_pomme(arrays, freqs, dx, threads, args.repeat)
            scale = np.abs(ref).max()
            for dtype in (torch.float64, torch.float32):
                for compile in (False, True):
                    img, t = run_coemu(line, arrays, freqs, dx, dtype, args.repeat, compile=compile)
                    err = np.abs(img - ref).max() / scale
                    tol = 1e-4 if dtype == torch.float64 else 1e-3
                    assert err <= tol, f"disagreement {err:.2e} > {tol}"
                    name = f"{str(dtype)[6:]}{' compiled' if compile else ''}"
                    med_p, med_c = statistics.median(t_pomme), statistics.median(t)
                    print(
                        f"{n_ch:8d} {threads:7d} {1e3 * med_p:10.1f} {name:>17s} {1e3 * med_c:7.1f} "
                        f"{med_p / med_c:10.1f}x {min(t_pomme) / min(t):8.1f}x {err:9.1e}"
                    )
    if args.gpu and torch.cuda.is_available():
        big = {k: np.repeat(v[:1], 200, axis=0) for k, v in arrays.items()}
        for n_ch in (7, 1):
            freqs = channel_frequencies(line.frequency, n_ch, 300.0)
            for dtype in (torch.float32, torch.float64):
                inputs = [
                    torch.as_tensor(big[k], dtype=dtype, device="cuda")
                    for k in ("temperature", "number_density", "velocity_z")
                ]
                line_images(line, *inputs, freqs, dx)
                torch.cuda.synchronize()
                t0 = time.perf_counter()
                for _ in range(args.repeat):
                    line_images(line, *inputs, freqs, dx)
                torch.cuda.synchronize()
                t = (time.perf_counter() - t0) / args.repeat
                print(
                    f"GPU {torch.cuda.get_device_name()}: batch 200, {n_ch} ch, {str(dtype)[6:]}: "
                    f"{200 / t:.0f} images/s ({1e3 * t / 200:.2f} ms per image)"
                )


if __name__ == "__main__":
    main()
