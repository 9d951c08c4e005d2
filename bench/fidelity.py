"""Fidelity of the training data: each synthetic model's cube file against its analytic cube.

For synthetic models the cube a model should give is known: its analytic wind
averaged over every rotated cell (coemu.geometry.reference). This benchmark
makes the cubes of a config's models (bench/fidelity.yaml by default) the way the pipeline does,
builds their analytic cubes, renders both with the project's solver and
prints, per model and rotation, the cube errors (median relative error of
the CO density and the temperature, median and 95th percentile |v_z error|)
and the image MaxRel and ZNCC (pipeline image against analytic image); then
the median and 95th percentile over all models and rotations, the time to
generate a model and the cube time per model (all its rotations), and, for
one model, the cube time with the paper's 200 rotations (--timing-rotations).
Every run named in --runs (a regridding method on a point-cloud layout) is
measured side by side in the same run; the default compares the pipeline
before issue 14 (``before``: nearest on its 32 x 4 point layout) with the
default config.

Usage: python bench/fidelity.py [--configfile bench/fidelity.yaml] [--models 12] [--rotations 4]
           [--sub 3] [--runs nearest:32:4 reconstruct] [--timing-rotations 200]
       (defaults: the data set and geometry of the config file over the schema's defaults;
        a run is METHOD[:N_BASE:LEVELS[:FINEST_SPACING_AU[:LAYOUT]]], the rest from the schema;
        LAYOUT random: as many points per level, uniformly random: an unstructured cloud)
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from coemu import settings
from coemu.evaluation.fidelity import data_fidelity
from coemu.geometry.cube import make_cubes
from coemu.geometry.sphere import global_radius
from coemu.hydro.catalog import synthetic_model_id
from coemu.hydro.model import HydroModel
from coemu.hydro.sources import synthetic_extents
from coemu.hydro.synthetic import domain_bounds, draw_parameters, model_at, synthetic_model
from coemu.rt.render import RenderSettings

COLUMNS = (
    "maxrel_percent",
    "zncc",
    "density_rel_median",
    "temperature_rel_median",
    "velocity_abs_median",
    "velocity_abs_p95",
)


def before_model(seed: int, index: int, n_base: int = 32, levels: int = 4) -> HydroModel:
    """A synthetic model on the point layout of the pipeline before issue 14 (commit 6db7fae):
    level ``l`` spans the central ``1 / 2^l`` of the domain with ``n_base`` nodes per axis
    (per-axis spacings), nodes inside the next level dropped; the default was 32 x 4."""
    params = draw_parameters(seed, index)
    _, half = domain_bounds(params)
    chunks = []
    for level in range(levels):
        h = half / 2**level
        grid = np.stack(np.meshgrid(*[np.linspace(-x, x, n_base) for x in h], indexing="ij"), -1).reshape(
            -1, 3
        )
        if level < levels - 1:
            grid = grid[~(np.abs(grid) < h / 2).all(axis=1)]
        chunks.append(grid)
    return model_at(np.concatenate(chunks), params, synthetic_model_id(index))


def make_model(run: str, seed: int, index: int, models: dict) -> HydroModel:
    """The model of ``run``: ``before`` (:func:`before_model`) or the current generator."""
    method, n_base, levels, finest, layout = parse_run(run, models)
    if method == "before":
        return before_model(seed, index)
    return synthetic_model(seed, index, n_base, levels, finest, layout)


def parse_run(text: str, models: dict) -> tuple[str, int, int, float, str]:
    """``METHOD[:N_BASE:LEVELS[:FINEST[:LAYOUT]]]`` -> (method, n_base, levels, finest spacing
    in au, point layout: amr or random)."""
    method, *layout = text.split(":")
    n_base, levels, finest = models["n_base"], models["levels"], models["finest_spacing"]
    if layout:
        n_base, levels = int(layout[0]), int(layout[1])
        finest = float(layout[2]) if len(layout) > 2 else finest
    return method, n_base, levels, finest, layout[3] if len(layout) > 3 else "amr"


#: The config this bench measures by default (the data set of the results in docs/design.md).
CONFIG = Path(__file__).with_name("fidelity.yaml")


def read_config(path: Path) -> dict:
    """The completed config of ``path`` (a YAML config file over the schema's defaults)."""
    return settings.complete(yaml.safe_load(path.read_text()) or {}, str(path))


def main() -> None:
    first = argparse.ArgumentParser(add_help=False)
    first.add_argument("--configfile", type=Path, default=CONFIG)
    config = read_config(first.parse_known_args()[0].configfile)
    m, c = config["models"], config["cubes"]
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], parents=[first])
    p.add_argument("--models", type=int, default=m["count"], help="synthetic models m00000...")
    p.add_argument("--rotations", type=int, default=c["rotations"])
    p.add_argument("--sub", type=int, default=3, help="reference: midpoint points per cell axis")
    p.add_argument(
        "--runs",
        nargs="+",
        default=["before", f"{c['method']}"],
        help="METHOD[:N_BASE:LEVELS[:FINEST_AU]] to compare (the first is the baseline of the ratios);"
        " before: nearest on the point layout before issue 14",
    )
    p.add_argument(
        "--timing-rotations",
        type=int,
        default=200,
        help="cube time of m00000 with this many rotations (0: skip)",
    )
    args = p.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    seed = config["seed"]
    radius, _ = global_radius(synthetic_extents(seed, m["count"]))  # the config's data set's sphere
    solver = RenderSettings.from_config(config)
    print(
        f"{args.models} models x {args.rotations} rotations, box_cells {c['box_cells']}, grid {c['grid']},"
        f" reference sub {args.sub}^3 (12^3 near the star);"
        f" {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    )
    summary = {}
    for run in args.runs:
        method = parse_run(run, m)[0].replace("before", "nearest")
        rows, seconds, generation, points = [], [], [], []
        for index in range(args.models):
            t0 = time.perf_counter()
            model = make_model(run, seed, index, m)
            generation.append(time.perf_counter() - t0)
            points.append(model.n_points)
            t0 = time.perf_counter()
            cubes = make_cubes(model, radius, seed, args.rotations, c["box_cells"], c["grid"], method=method)
            seconds.append(time.perf_counter() - t0)
            fid = data_fidelity(cubes, draw_parameters(seed, index), solver, sub=args.sub)
            for r in range(args.rotations):
                rows.append([fid[k][r] for k in COLUMNS])
                print(
                    f"{run:>16} {model.name} rot {r}: MaxRel {fid['maxrel_percent'][r]:6.2f} %"
                    f"  ZNCC {fid['zncc'][r]:.4f}  n {100 * fid['density_rel_median'][r]:5.2f} %"
                    f"  T {100 * fid['temperature_rel_median'][r]:5.2f} %"
                    f"  |dv_z| {fid['velocity_abs_median'][r]:6.1f} m/s"
                    f" (p95 {fid['velocity_abs_p95'][r]:6.1f})",
                    flush=True,
                )
        long = float("nan")
        if args.timing_rotations:
            model = make_model(run, seed, 0, m)
            t0 = time.perf_counter()
            make_cubes(model, radius, seed, args.timing_rotations, c["box_cells"], c["grid"], method=method)
            long = time.perf_counter() - t0
            print(f"{run:>16} m00000: {args.timing_rotations} rotations in {long:.1f} s", flush=True)
        summary[run] = {
            "rows": np.asarray(rows),
            "cube": float(np.median(seconds)),
            "generate": float(np.median(generation)),
            "points": int(np.median(points)),
            "long": long,
        }
    print(
        f"\n| run | points (median) | MaxRel % median | p95 | ZNCC median | p5 | n rel err median"
        f" | T rel err median | |dv_z| m/s median | generate s/model | cube s/model ({args.rotations} rot)"
        f" | cube s/model ({args.timing_rotations} rot, m00000) |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for run, r in summary.items():
        a = r["rows"]
        print(
            f"| {run} | {r['points']} | {np.median(a[:, 0]):.2f} | {np.percentile(a[:, 0], 95):.2f}"
            f" | {np.median(a[:, 1]):.4f} | {np.percentile(a[:, 1], 5):.4f}"
            f" | {100 * np.median(a[:, 2]):.2f} % | {100 * np.median(a[:, 3]):.2f} %"
            f" | {np.median(a[:, 4]):.1f} | {r['generate']:.2f} | {r['cube']:.2f} | {r['long']:.1f} |"
        )
    base = summary[args.runs[0]]
    for run in args.runs[1:]:
        r = summary[run]
        print(
            f"{run} / {args.runs[0]}: cube time per model {r['cube'] / base['cube']:.2f}x"
            f" ({args.rotations} rotations), {r['long'] / base['long']:.2f}x"
            f" ({args.timing_rotations} rotations);"
            f" with generation {(r['cube'] + r['generate']) / (base['cube'] + base['generate']):.2f}x"
            f" ({args.rotations} rotations)"
        )


if __name__ == "__main__":
    main()
