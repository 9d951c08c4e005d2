"""Cube stage on the CPU: ms per model (all rotations) and per rotation.

Competitors, side by side in one run on the same model and rotations:
  coemu   : coemu.geometry.cube.make_cubes (bincount cell means + k-d tree fill)
  binned  : the same cell means with scipy.stats.binned_statistic_dd, same fill

Usage: python bench/cubes.py [--rotations 20] [--n-base 32] [--levels 5] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np
from scipy.spatial import cKDTree
from scipy.stats import binned_statistic_dd

from coemu.geometry.cube import make_cubes
from coemu.geometry.regrid import CubeGeometry, cell_averages, fill_empty
from coemu.geometry.rotations import rotate, rotation_matrices
from coemu.geometry.sphere import Extent, trim_to_sphere
from coemu.hydro.sources import synthetic_extents
from coemu.hydro.synthetic import synthetic_model


def binned_cubes(model, radius, seed, n_rotations, box_cells, grid):
    """Reference implementation of the regridding with scipy.stats.binned_statistic_dd."""
    extent = Extent.of_points(model.position)
    pos, keep = trim_to_sphere(model.position, extent.centre, radius)
    vel = model.velocity[keep]
    n = model.number_density_co[keep]
    t = model.temperature[keep]
    geometry = CubeGeometry(radius, box_cells, grid)
    edges = [np.linspace(-geometry.half_width, geometry.half_width, grid + 1)] * 3
    tree = cKDTree(pos)
    out = []
    for matrix in rotation_matrices(seed, model.name, n_rotations):
        p = rotate(pos, matrix)
        v_z = vel @ matrix[2]
        stat = binned_statistic_dd(p, [n, n * t, n * v_z, np.ones_like(n)], "sum", bins=edges)
        s_n, s_nt, s_nv, count = stat.statistic
        with np.errstate(invalid="ignore", divide="ignore"):
            fields = {"number_density_co": s_n / count, "temperature": s_nt / s_n, "velocity_z": s_nv / s_n}
        fill_empty(
            fields,
            count,
            geometry,
            tree,
            {"number_density_co": n, "temperature": t, "velocity_z": v_z},
            to_tree_frame=matrix.T,
        )
        out.append(fields)
    return out


def timed(fn, repeat):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rotations", type=int, default=20)
    ap.add_argument("--n-base", type=int, default=32)
    ap.add_argument("--levels", type=int, default=5)
    ap.add_argument("--models", type=int, default=50, help="models the sphere radius is taken over")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    seed = 1234
    radius = min(e.radius for e in synthetic_extents(seed, args.models).values())
    t_gen, model = timed(
        lambda: synthetic_model(seed, 0, n_base=args.n_base, levels=args.levels), args.repeat
    )
    kw = dict(seed=seed, n_rotations=args.rotations, box_cells=128, grid=64)
    t_coemu, ds = timed(lambda: make_cubes(model, radius, **kw), args.repeat)
    t_binned, ref = timed(lambda: binned_cubes(model, radius, **kw), args.repeat)
    # the two must agree before their times mean anything
    for k, fields in enumerate(ref):
        for name, arr in fields.items():
            np.testing.assert_allclose(ds[name][k].values, arr, rtol=2e-6, atol=1e-30)

    print(
        f"# cube stage, CPU ({platform.machine()}, 1 process; k-d tree queries on {os.cpu_count()} threads)"
    )
    print(
        f"model m00000: {model.n_points} points (n_base {args.n_base}, {args.levels} levels), "
        f"generation {1e3 * t_gen:.1f} ms; cube 64^3 from 128^3, {args.rotations} rotations"
    )
    print(f"{'method':8s} {'ms/model':>10s} {'ms/rotation':>12s}")
    for name, t in (("coemu", t_coemu), ("binned", t_binned)):
        print(f"{name:8s} {1e3 * t:10.1f} {1e3 * t / args.rotations:12.1f}")
    print(f"ratio binned/coemu (whole stage): {t_binned / t_coemu:.2f}x")

    # the cell means alone (the part the two implementations do differently)
    extent = Extent.of_points(model.position)
    pos, keep = trim_to_sphere(model.position, extent.centre, radius)
    geometry = CubeGeometry(radius, 128, 64)
    n, t = model.number_density_co[keep], model.temperature[keep]
    p = rotate(pos, rotation_matrices(seed, model.name, 2)[1])
    edges = [np.linspace(-geometry.half_width, geometry.half_width, 65)] * 3
    t_mean_c, (_, count) = timed(lambda: cell_averages(geometry, p, n, {"temperature": t}), 5 * args.repeat)
    t_mean_b, _ = timed(
        lambda: binned_statistic_dd(p, [n, n * t, np.ones_like(n)], "sum", bins=edges), 5 * args.repeat
    )
    tree = cKDTree(pos)
    t_fill, _ = timed(
        lambda: fill_empty({"density": np.zeros((64,) * 3)}, count, geometry, tree, {"density": n}),
        args.repeat,
    )
    print(
        f"cell means per rotation: coemu {1e3 * t_mean_c:.1f} ms, binned {1e3 * t_mean_b:.1f} ms, "
        f"ratio {t_mean_b / t_mean_c:.1f}x; nearest-point fill of {100 * (count == 0).mean():.0f}% "
        f"empty cells {1e3 * t_fill:.1f} ms"
    )
    per_rot = t_coemu / args.rotations
    print(
        f"extrapolated: 200 rotations {200 * per_rot:.1f} s/model; 10,903 models "
        f"{10903 * (200 * per_rot + t_gen) / 3600:.0f} core-hours"
    )


if __name__ == "__main__":
    main()
