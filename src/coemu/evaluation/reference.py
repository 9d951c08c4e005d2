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

from coemu.geometry.regrid import CubeGeometry, rotated_cell_means
from coemu.hydro.synthetic import WindParameters, wind_fields


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

    def sample(points):
        fields = wind_fields(points, params)
        return fields["number_density_co"], fields["temperature"], fields["velocity"]

    per_rotation = [rotated_cell_means(geometry, m, sample, sub, centre, slab) for m in matrices]
    return {name: np.stack([r[name] for r in per_rotation]) for name in per_rotation[0]}
