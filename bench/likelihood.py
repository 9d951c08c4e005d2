"""Seconds per likelihood evaluation: single calls (as NUTS makes them) against batched ones.

For each cube size (``--sizes``, default 12^3 x 11 channels, 16^3 x 11 and
24^3 x 15; channels spanning the whole line of a 5-20 km/s wind, as in
bench/fit.py: 11 x 4 km/s, 15 x 3 km/s) and each thread count (``--threads``,
default 1 and 2, ``torch.set_num_threads``), on a binary-family mock made by
the fit's own forward model (bench/fit.py's: 100 au / grid cells, 150 pc, a
0.1" beam, Jy/beam, beam-correlated noise):

* ``single + grad``: one forward call and ln L per vector, then its gradient
  (what NUTS and the MAP search pay per step);
* ``single, no grad``: one call per vector under ``torch.inference_mode``;
* ``batched B``: :class:`coemu.fit.likelihood.BatchedLogLikelihood` with
  ``max_batch`` = B, one call of B vectors (B = ``--batches``, default 1, 16,
  64, 128, 256).

Vectors are drawn about the mock's truth, each with its own viewing angles.
Each entry is the minimum over ``--repeats`` timed runs (after a warm-up) of
the seconds per vector; ratios are against ``single, no grad``. The machine's
other load shows in the numbers (a shared machine is noisy): compare within
one run.

    python bench/likelihood.py                       # the whole table
    python bench/likelihood.py --sizes 12:11:4000 --threads 1 --batches 1 16
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import platform
import sys
import time

import numpy as np
import torch

from coemu.constants import ASTRONOMICAL_UNIT as AU
from coemu.fit.family import Family, truth_values
from coemu.fit.forward import ForwardModel
from coemu.fit.likelihood import BatchedLogLikelihood, GaussianLikelihood
from coemu.fit.mock import template
from coemu.hydro.synthetic import PARAMETER_RANGES
from coemu.observe.fits import ObservationSettings, observation
from coemu.rt.lamda import load_line

BENCH_SEED = 2026


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sizes",
        nargs="+",
        default=["12:11:4000", "16:11:4000", "24:15:3000"],
        help="grid:channels:spacing (m/s) of each mock",
    )
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 16, 64, 128, 256])
    parser.add_argument("--single", type=int, default=8, help="vectors per single-call timing")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per entry (the minimum kept)")
    return parser.parse_args(argv)


def mock(grid: int, channels: int, spacing: float, line):
    """(family, forward model, likelihood, truth) of a binary mock on ``grid``^3 cells."""
    truth = truth_values(BENCH_SEED, "m00000")
    truth.update(inclination=60.0, position_angle=130.0)
    settings = ObservationSettings(distance=150.0, beam_major=0.1, unit="Jy/beam")
    tmpl = template(grid, 100 * AU / grid, channels, spacing, settings, line)
    family = Family.make("binary", fixed=truth)
    forward = ForwardModel(tmpl, family, line)
    params = {k: torch.tensor(truth[k], dtype=torch.float64) for k in (*family.fixed, *family.free)}
    with torch.no_grad():
        intensity = forward.intensity(params).numpy()
    clean = observation(intensity, tmpl.offsets, line.frequency, tmpl.cell_size, settings)
    rms = float(np.max(clean.data)) / 20.0
    noisy = observation(
        intensity,
        tmpl.offsets,
        line.frequency,
        tmpl.cell_size,
        dataclasses.replace(settings, noise=rms, noise_seed=1),
    )
    obs = dataclasses.replace(tmpl, data=noisy.data.astype(np.float64), noise=rms)
    forward = ForwardModel(obs, family, line)
    return family, forward, GaussianLikelihood.of(obs), truth


def vectors(family: Family, truth: dict, n: int, seed: int = 0) -> np.ndarray:
    """(n, D) physical values about the truth (within the priors), viewing angles at random."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        row = []
        for name in family.free:
            if name == "inclination":
                row.append(math.degrees(math.acos(rng.uniform(-1, 1))))
            elif name == "position_angle":
                row.append(rng.uniform(0, 360))
            else:
                lo, hi, _ = PARAMETER_RANGES[name]
                row.append(float(np.clip(truth[name] * math.exp(0.1 * rng.normal()), lo, hi)))
        rows.append(row)
    return np.array(rows)


def time_single(family, forward, like, theta: np.ndarray, grad: bool) -> float:
    """Seconds per vector of one call per vector (with its gradient when ``grad``)."""
    fixed = {k: torch.tensor(v, dtype=torch.float64) for k, v in family.fixed.items()}
    t0 = time.perf_counter()
    for row in theta:
        free = {
            k: torch.tensor(float(v), dtype=torch.float64, requires_grad=grad)
            for k, v in zip(family.free, row, strict=True)
        }
        if grad:
            like(forward({**fixed, **free})).backward()
        else:
            with torch.inference_mode():
                float(like(forward({**fixed, **free})))
    return (time.perf_counter() - t0) / len(theta)


def time_batched(family, forward, like, theta: np.ndarray) -> float:
    batched = BatchedLogLikelihood(family, forward, like, max_batch=len(theta))
    batched(theta)
    assert batched.n_batches == 1 and batched.n_floored == 0
    return batched.seconds / len(theta)


def best(repeats: int, run, *args) -> float:
    """The minimum of ``repeats`` values of ``run(*args)``."""
    return min(run(*args) for _ in range(repeats))


def main(argv=None) -> int:
    args = parse_args(argv)
    line = load_line("CO", 1, None)
    print(
        f"# Likelihood evaluations, single vs batched ({time.strftime('%Y-%m-%d %H:%M')}, CPU:"
        f" {platform.processor() or platform.machine()}, torch {torch.__version__}, float64,"
        f' binary family, 6 free parameters, 0.1" beam, beam-correlated noise)'
    )
    print(f"seconds per vector = min over {args.repeats} runs; ratio = single-no-grad / this")
    rows = []
    for size in args.sizes:
        grid, channels, spacing = (
            int(size.split(":")[0]),
            int(size.split(":")[1]),
            float(size.split(":")[2]),
        )
        spacing_kms = spacing / 1e3
        family, forward, like, truth = mock(grid, channels, spacing, line)
        theta_all = vectors(family, truth, max(max(args.batches), args.single))
        for threads in args.threads:
            torch.set_num_threads(threads)
            label = f"{grid}^3 x {channels} ch ({spacing_kms:g} km/s), {torch.get_num_threads()} thr"
            single = theta_all[: args.single]
            time_single(family, forward, like, single[:2], True)  # warm-up
            model = (family, forward, like)
            entries = {
                "single + grad": best(args.repeats, time_single, *model, single, True),
                "single, no grad": best(args.repeats, time_single, *model, single, False),
            }
            for b in args.batches:
                time_batched(*model, theta_all[: min(b, 4)])  # warm-up
                entries[f"batched B={b}"] = best(args.repeats, time_batched, *model, theta_all[:b])
            rows.append((label, entries))
            base = entries["single, no grad"]
            print(
                f"\n## {label}  (max_batch default {BatchedLogLikelihood(family, forward, like).max_batch})"
            )
            print(f"| {'mode':<16} | {'ms / vector':>11} | {'vs single no grad':>17} |")
            print(f"|{'-' * 18}|{'-' * 13}|{'-' * 19}|")
            for name, t in entries.items():
                print(f"| {name:<16} | {t * 1e3:11.2f} | {base / t:16.2f}x |")
            sys.stdout.flush()
    print("\n## Summary: ms per vector")
    names = list(rows[0][1])
    print("| size, threads | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for label, entries in rows:
        print(f"| {label} | " + " | ".join(f"{entries[n] * 1e3:.2f}" for n in names) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
