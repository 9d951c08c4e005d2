"""The cube a synthetic model should give: its analytic fields averaged over each rotated cell.

A synthetic model (:mod:`coemu.hydro.synthetic`) is known everywhere, not only
at its points, so the ideal cube is known: in every cell of every rotated
cube, the average of the wind over the cell, with the weighting the
regridder documents (:mod:`coemu.geometry.regrid`): CO number density
arithmetically, temperature and line-of-sight velocity CO-density-weighted.
The averages are midpoint sums over ``sub^3`` points per cell (``sub = 3``:
27 points; ``bench/fidelity.py --sub`` shows the figures do not move from 2 to 4).

Frames: a point ``x'`` of the rotated cube is ``x' = R (x - c)`` for the model
point ``x`` (``c``: the centre of the model's box, 0 for synthetic models), so
``x = R^T x' + c``; the line-of-sight velocity is ``(R v)_z``.
"""

from __future__ import annotations

import numpy as np

from coemu.geometry.regrid import CubeGeometry
from coemu.hydro.synthetic import WindParameters, wind_fields


def sub_offsets(sub: int, dx: float) -> np.ndarray:
    """(sub^3, 3) offsets of the midpoint-rule points of a cell of size ``dx`` (m) from its centre."""
    u = ((np.arange(sub) + 0.5) / sub - 0.5) * dx
    return np.stack(np.meshgrid(u, u, u, indexing="ij"), axis=-1).reshape(-1, 3)


def analytic_cubes(
    params: WindParameters,
    geometry: CubeGeometry,
    matrices: np.ndarray,
    sub: int = 3,
    centre: np.ndarray | None = None,
    slab: int = 4,
) -> dict[str, np.ndarray]:
    """Cell averages of the analytic wind for each rotation.

    Args:
        params: the synthetic model's parameters.
        geometry: the cube (radius, box_cells, grid).
        matrices: (n_rot, 3, 3) rotations, as in the cube file.
        sub: midpoint-rule points per cell axis.
        centre: the model's box centre, m (default 0, as for synthetic models).
        slab: x-planes of cells evaluated at once (memory: slab x grid^2 x sub^3 points).

    Returns:
        ``temperature`` (K), ``number_density_co`` (m-3), ``velocity_z`` (m s-1):
        (n_rot, grid, grid, grid) float64.
    """
    g = geometry.grid
    c = geometry.centres
    offsets = sub_offsets(sub, geometry.cell_size)
    centre = np.zeros(3) if centre is None else np.asarray(centre, dtype=np.float64)
    shape = (matrices.shape[0], g, g, g)
    out = {k: np.empty(shape) for k in ("temperature", "number_density_co", "velocity_z")}
    for r, matrix in enumerate(matrices):
        for i0 in range(0, g, slab):
            xs = c[i0 : i0 + slab]
            cells = np.stack(np.meshgrid(xs, c, c, indexing="ij"), axis=-1).reshape(-1, 1, 3)
            points = (cells + offsets[None]).reshape(-1, 3)  # cube frame
            fields = wind_fields(points @ matrix + centre, params)  # x = R^T x' + c
            n = fields["number_density_co"].reshape(-1, len(offsets))
            t = fields["temperature"].reshape(-1, len(offsets))
            v = (fields["velocity"] @ matrix[2]).reshape(-1, len(offsets))
            total = n.sum(axis=1)
            with np.errstate(invalid="ignore", divide="ignore"):
                weighted_t = np.where(total > 0, (n * t).sum(axis=1) / total, t.mean(axis=1))
                weighted_v = np.where(total > 0, (n * v).sum(axis=1) / total, v.mean(axis=1))
            block = (len(xs), g, g)
            out["number_density_co"][r, i0 : i0 + slab] = (total / len(offsets)).reshape(block)
            out["temperature"][r, i0 : i0 + slab] = weighted_t.reshape(block)
            out["velocity_z"][r, i0 : i0 + slab] = weighted_v.reshape(block)
    return out
