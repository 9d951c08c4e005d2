"""Regridding by reconstruction: the fields rebuilt once per model on a fine regular grid, then
averaged over every rotated cell (``cubes.method: reconstruct``).

The cube's cells are larger than the finest points of a model and smaller
than its coarsest ones, so neither the mean of the points in a cell nor the
nearest point is the cell's average (:mod:`coemu.geometry.regrid`). Here:

1. **Once per model** (rotation-independent): the point values of
   ``ln n_CO``, ``T`` and the velocity vector are spread onto a regular grid
   of spacing ``h = dx / refine`` in the model's frame, covering the ball every
   rotation of the cube reaches, by trilinear splatting (each point adds its
   value to the 8 nodes around it with trilinear weights; a node's value is
   the weighted mean). Nodes that receive too little weight (points sparser
   than ``h``) take the value of the next coarser grid (spacing 2h, 4h, ...,
   each splatted the same way), interpolated trilinearly: a pyramid, so every
   region is represented at the finest resolution its points support.
2. **Per rotation**: ``sub^3`` midpoint points of every rotated cell are
   mapped back into the model frame and sampled trilinearly on that grid
   (``torch.nn.functional.grid_sample``, CPU or GPU); the cell's values are
   the averages with the weighting of :mod:`coemu.geometry.regrid`: CO
   density arithmetically, temperature and the line-of-sight velocity
   weighted by CO density.

Memory: 5 float32 fields on ``(2m + 1)^3`` nodes, ``m = ceil(reach / h)``
(about 227^3 = 47 MB per field for the paper geometry at refine 2), plus the
sub-points of a slab of cells at a time. The measured error against the
analytic cubes of the synthetic models is printed by ``bench/fidelity.py``.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from coemu.geometry.regrid import CubeGeometry, rotated_cell_means

#: Nodes with less splatted weight than this take the coarser grid's value (higher values
#: smooth more). bench/fidelity.py on the default config's 12 models x 4 rotations: 0.5 gives
#: MaxRel median 5.86 % (p95 13.85 %), ZNCC median 0.9448 (p5 0.8492), density error 4.7 %;
#: 0.1 gives 7.07 % (13.85 %), 0.9702 (0.9128), 2.5 %. 0.1 is kept for its correlation and
#: density; 0.01-2 were tried on m00000 and m00003.
MIN_WEIGHT = 0.1


def _splat(points: np.ndarray, values: np.ndarray, h: float, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Trilinear splat of ``values`` (N, F) at ``points`` (N, 3) onto nodes ``k h``, ``k = -m..m``.

    Returns:
        (F, L^3) weighted sums and (L^3,) weights, ``L = 2m + 1``.
    """
    n_nodes = 2 * m + 1
    u = points / h + m
    inside = ((u >= 0) & (u <= n_nodes - 1)).all(axis=1)
    u, values = u[inside], values[inside]
    i0 = np.minimum(np.floor(u).astype(np.int64), n_nodes - 2)
    f = u - i0
    size = n_nodes**3
    sums = np.zeros((values.shape[1], size))
    weights = np.zeros(size)
    for corner in range(8):
        d = np.array([(corner >> 2) & 1, (corner >> 1) & 1, corner & 1])
        w = np.prod(np.where(d, f, 1.0 - f), axis=1)
        idx = np.ravel_multi_index((i0 + d).T, (n_nodes,) * 3)
        weights += np.bincount(idx, weights=w, minlength=size)
        for k in range(values.shape[1]):
            sums[k] += np.bincount(idx, weights=w * values[:, k], minlength=size)
    return sums, weights


class Reconstruction:
    """The fields of one model on a regular grid in its frame (see the module docstring).

    Args:
        position: (N, 3) m, centred (the model's box centre at the origin), trimmed to the sphere.
        number_density: (N,) CO number density, m-3.
        temperature: (N,) K.
        velocity: (N, 3) m s-1.
        geometry: the cube.
        refine: grid spacing ``dx / refine``.
        device: where the grid lives and the sampling runs.
    """

    def __init__(
        self,
        position: np.ndarray,
        number_density: np.ndarray,
        temperature: np.ndarray,
        velocity: np.ndarray,
        geometry: CubeGeometry,
        refine: int = 2,
        device: str | torch.device = "cpu",
    ):
        self.geometry, self.device = geometry, torch.device(device)
        dx = geometry.cell_size
        self.h = dx / refine
        reach = math.sqrt(3) * geometry.half_width + dx  # the farthest sub-point of any rotation
        levels = max(1, math.ceil(math.log2(max(reach / self.h, 1.0))))
        self.m = 2 ** math.ceil(math.log2(reach / self.h))  # nested grids: m, m/2, ... nodes each side
        tiny = np.finfo(np.float64).tiny
        values = np.column_stack([np.log(np.maximum(number_density, tiny)), temperature, velocity])
        grid = None
        for level in reversed(range(levels)):  # coarsest first
            m = self.m >> level
            sums, weights = _splat(position, values, self.h * 2**level, m)
            fine = np.where(weights >= MIN_WEIGHT, sums / np.maximum(weights, tiny), np.nan)
            fine = fine.reshape(values.shape[1], *(2 * m + 1,) * 3)
            if grid is None:
                empty = np.isnan(fine)
                if empty.any():  # the coarsest grid: what no point reaches keeps the overall mean
                    fine = np.where(empty, np.nanmean(fine, axis=(1, 2, 3), keepdims=True), fine)
            else:
                up = torch.nn.functional.interpolate(
                    torch.as_tensor(grid)[None], size=fine.shape[1:], mode="trilinear", align_corners=True
                )[0].numpy()
                fine = np.where(np.isnan(fine), up, fine)
            grid = fine
        # grid_sample indexes (D, H, W) with coordinates (x -> W, y -> H, z -> D)
        self.grid = torch.as_tensor(grid, dtype=torch.float32, device=self.device).permute(0, 3, 2, 1)[None]

    def sample(self, points: np.ndarray) -> np.ndarray:
        """(5, P) ln n, T, v_x, v_y, v_z at ``points`` (P, 3), m, in the model frame (trilinear)."""
        g = torch.as_tensor(points / (self.m * self.h), dtype=torch.float32, device=self.device)
        out = torch.nn.functional.grid_sample(
            self.grid, g.view(1, 1, 1, -1, 3), mode="bilinear", padding_mode="border", align_corners=True
        )
        return out[0, :, 0, 0].double().cpu().numpy()

    def cell_averages(self, matrix: np.ndarray, sub: int = 2) -> dict[str, np.ndarray]:
        """(grid, grid, grid) cell averages for the rotation ``matrix`` (x' = R x).

        Returns:
            ``number_density_co`` (arithmetic mean), ``temperature`` and ``velocity_z``
            (CO-density-weighted means) over ``sub^3`` midpoint points per cell
            (:func:`coemu.geometry.regrid.rotated_cell_means`).
        """

        def sample(points):
            s = self.sample(points)
            return np.exp(s[0]), s[1], s[2:5].T

        return rotated_cell_means(self.geometry, matrix, sample, sub)
