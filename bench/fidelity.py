"""Fidelity of the training data: each synthetic model's cube file against its analytic cube.

For synthetic models the cube a model should give is known: its analytic wind
averaged over every rotated cell (coemu.geometry.reference). This benchmark
makes the cubes of the default config's models the way the pipeline does,
builds their analytic cubes, renders both with the project's solver and
prints, per model and rotation, the cube errors (median relative error of
the CO density and the temperature, median and 95th percentile |v_z error|)
and the image MaxRel and ZNCC (pipeline image against analytic image); then
the median and 95th percentile over all models and rotations, and the cube
time per rotation. Every regridding method named in --methods is measured
side by side in the same run.

Usage: python bench/fidelity.py [--models 12] [--rotations 4] [--sub 3] [--methods nearest]
       (defaults: the default config's data set and geometry, from the schema)
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch

from coemu import settings
from coemu.evaluation.fidelity import data_fidelity
from coemu.geometry.cube import make_cubes
from coemu.geometry.sphere import global_radius
from coemu.hydro.sources import synthetic_extents
from coemu.hydro.synthetic import draw_parameters, synthetic_model
from coemu.rt.render import RenderSettings

COLUMNS = (
    "maxrel_percent",
    "zncc",
    "density_rel_median",
    "temperature_rel_median",
    "velocity_abs_median",
    "velocity_abs_p95",
)


def main() -> None:
    config = settings.complete({})
    m, c = config["models"], config["cubes"]
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", type=int, default=m["count"], help="synthetic models m00000...")
    p.add_argument("--rotations", type=int, default=c["rotations"])
    p.add_argument("--n-base", type=int, default=m["n_base"])
    p.add_argument("--levels", type=int, default=m["levels"])
    p.add_argument("--sub", type=int, default=3, help="reference: midpoint points per cell axis")
    p.add_argument("--methods", nargs="+", default=["nearest"], help="regridding methods to compare")
    args = p.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    seed = config["seed"]
    radius, _ = global_radius(synthetic_extents(seed, m["count"]))  # the default data set's sphere
    solver = RenderSettings.from_config(config)
    print(
        f"{args.models} models x {args.rotations} rotations, box_cells {c['box_cells']}, grid {c['grid']},"
        f" n_base {args.n_base}, levels {args.levels}, reference sub {args.sub}^3;"
        f" {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    )
    summary = {}
    for method in args.methods:
        rows, seconds, points = [], [], []
        for index in range(args.models):
            model = synthetic_model(seed, index, n_base=args.n_base, levels=args.levels)
            points.append(model.n_points)
            t0 = time.perf_counter()
            cubes = make_cubes(model, radius, seed, args.rotations, c["box_cells"], c["grid"], method=method)
            seconds.append(time.perf_counter() - t0)
            fid = data_fidelity(cubes, draw_parameters(seed, index), solver, sub=args.sub)
            for r in range(args.rotations):
                rows.append([fid[k][r] for k in COLUMNS])
                print(
                    f"{method:>10} {model.name} rot {r}: MaxRel {fid['maxrel_percent'][r]:6.2f} %"
                    f"  ZNCC {fid['zncc'][r]:.4f}  n {100 * fid['density_rel_median'][r]:5.2f} %"
                    f"  T {100 * fid['temperature_rel_median'][r]:5.2f} %"
                    f"  |dv_z| {fid['velocity_abs_median'][r]:6.1f} m/s"
                    f" (p95 {fid['velocity_abs_p95'][r]:6.1f})",
                    flush=True,
                )
        a = np.asarray(rows)
        summary[method] = (a, np.asarray(seconds) / args.rotations, int(np.median(points)))
    print(
        "\n| method | points (median) | MaxRel % median | p95 | ZNCC median | p5 | n rel err median"
        " | T rel err median | |dv_z| m/s median | s per rotation |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for method, (a, per_rot, npts) in summary.items():
        print(
            f"| {method} | {npts} | {np.median(a[:, 0]):.2f} | {np.percentile(a[:, 0], 95):.2f}"
            f" | {np.median(a[:, 1]):.4f} | {np.percentile(a[:, 1], 5):.4f}"
            f" | {100 * np.median(a[:, 2]):.2f} % | {100 * np.median(a[:, 3]):.2f} %"
            f" | {np.median(a[:, 4]):.1f} | {np.median(per_rot):.2f} |"
        )
    if len(summary) > 1:
        base = args.methods[0]
        for method in args.methods[1:]:
            ratio = np.median(summary[method][1]) / np.median(summary[base][1])
            print(f"cube time per rotation, {method} / {base}: {ratio:.2f}x")


if __name__ == "__main__":
    main()
