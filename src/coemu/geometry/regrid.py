"""Regridding a (centred, trimmed, rotated) point cloud onto the cube.

Geometry: the sphere's bounding box ``[-R, R]^3`` is divided into
``box_cells^3`` cells of size ``dx = 2 R / box_cells`` and the central
``grid^3`` cells are kept (paper default: 128 and 64, i.e. the cube spans
``[-R/2, R/2]^3``, inside the sphere for any rotation since
``sqrt(3) / 2 < 1``).

Cell values are averages of the points that fall in the cell (the paper used
an octree mean):

* ``number_density_co``: arithmetic mean of the points' densities, i.e. the
  volume average when points sample the cell evenly, which conserves the
  number of CO molecules;
* ``temperature`` and ``velocity_z``: CO-density-weighted means
  ``sum(n T) / sum(n)``, ``sum(n v_z) / sum(n)``, which conserve the thermal
  energy and the momentum of the CO gas and describe the gas that actually
  emits (arithmetic means where a cell's densities are all zero).

This module's ``cell_averages`` and ``fill_empty`` are ``cubes.method:
nearest``; the default, ``reconstruct`` (:mod:`coemu.geometry.reconstruct`),
samples a reconstruction of the fields at sub-points of every cell instead and
shares :func:`weighted_means` and :func:`rotated_cell_means` with the analytic
reference (:mod:`coemu.evaluation.reference`). With ``nearest``, cells that no
point falls in take the values of the nearest point
(nearest-neighbour interpolation through a k-d tree, queried on
``OMP_NUM_THREADS`` threads, all cores when unset), so the cube never
contains NaN. All steps are vectorised (``numpy.bincount``,
``scipy.spatial.cKDTree``); there are no Python loops over points or cells.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree


@dataclass(frozen=True)
class CubeGeometry:
    """Cube geometry for a sphere of radius ``radius`` m.

    Attributes:
        radius: sphere radius R, m; the box is ``[-R, R]^3``.
        box_cells: cells per axis across the box (paper: 128).
        grid: cells per axis kept around the centre (paper: 64).
    """

    radius: float
    box_cells: int = 128
    grid: int = 64

    def __post_init__(self):
        if self.grid > self.box_cells:
            raise ValueError(f"grid ({self.grid}) larger than box_cells ({self.box_cells})")
        if self.radius <= 0:
            raise ValueError(f"sphere radius must be positive, got {self.radius}")

    @property
    def cell_size(self) -> float:
        """dx = 2 R / box_cells, m: the path length per cell the solver must use."""
        return 2.0 * self.radius / self.box_cells

    @property
    def half_width(self) -> float:
        """Half the cube's side, m."""
        return self.grid * self.cell_size / 2

    @property
    def centres(self) -> np.ndarray:
        """Cell-centre coordinates (grid,) along each axis, m."""
        return (np.arange(self.grid) + 0.5) * self.cell_size - self.half_width

    def cell_index(self, position: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Flat cell index of each point (N,) and the mask of points inside the cube."""
        ijk = np.floor((position + self.half_width) / self.cell_size).astype(np.int64)
        inside = ((ijk >= 0) & (ijk < self.grid)).all(axis=1)
        ijk = ijk[inside]
        flat = (ijk[:, 0] * self.grid + ijk[:, 1]) * self.grid + ijk[:, 2]
        return flat, inside


def cell_averages(
    geometry: CubeGeometry,
    position: np.ndarray,
    density: np.ndarray,
    weighted: dict[str, np.ndarray],
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Average point values over the cube's cells.

    Args:
        geometry: the cube.
        position: (N, 3) m, in the cube's frame.
        density: (N,) number density, averaged arithmetically.
        weighted: name -> (N,) values averaged with ``density`` as weight.

    Returns:
        (name -> (grid, grid, grid) float64 averages with NaN in empty cells,
        including ``"density"``; (grid, grid, grid) point counts).
    """
    n_cells = geometry.grid**3
    flat, inside = geometry.cell_index(position)
    dens = density[inside]
    count = np.bincount(flat, minlength=n_cells).astype(np.float64)
    wsum = np.bincount(flat, weights=dens, minlength=n_cells)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = {"density": wsum / count}
        for name, values in weighted.items():
            vals = values[inside]
            w_mean = np.bincount(flat, weights=dens * vals, minlength=n_cells) / wsum
            a_mean = np.bincount(flat, weights=vals, minlength=n_cells) / count
            out[name] = np.where(wsum > 0, w_mean, a_mean)
    shape = (geometry.grid,) * 3
    return {k: v.reshape(shape) for k, v in out.items()}, count.reshape(shape)


def fill_empty(
    fields: dict[str, np.ndarray],
    count: np.ndarray,
    geometry: CubeGeometry,
    tree: cKDTree,
    point_values: dict[str, np.ndarray],
    to_tree_frame: np.ndarray | None = None,
) -> None:
    """Fill cells with ``count == 0`` in place from the nearest point.

    Args:
        fields: name -> (grid, grid, grid) arrays, modified in place.
        count: (grid, grid, grid) points per cell.
        geometry: the cube.
        tree: k-d tree over the points, in its own frame.
        point_values: name -> (N,) values of the tree's points.
        to_tree_frame: (3, 3) matrix taking cube-frame coordinates into the
            tree's frame (``R^T`` when the tree holds unrotated points).
    """
    empty = np.flatnonzero(count.ravel() == 0)
    if empty.size == 0:
        return
    c = geometry.centres
    g = geometry.grid
    i, rest = np.divmod(empty, g * g)
    j, k = np.divmod(rest, g)
    centres = np.stack([c[i], c[j], c[k]], axis=1)
    if to_tree_frame is not None:
        centres = centres @ to_tree_frame.T
    _, nearest = tree.query(centres, workers=int(os.environ.get("OMP_NUM_THREADS", -1)))
    for name, arr in fields.items():
        arr.reshape(-1)[empty] = point_values[name][nearest]


def sub_offsets(sub: int, dx: float) -> np.ndarray:
    """(sub^3, 3) offsets of the midpoint-rule points of a cell of size ``dx`` (m) from its centre."""
    u = ((np.arange(sub) + 0.5) / sub - 0.5) * dx
    return np.stack(np.meshgrid(u, u, u, indexing="ij"), axis=-1).reshape(-1, 3)


def weighted_means(n, t, v_z) -> tuple:
    """Cell values from (K, S) samples of K cells (numpy arrays or torch tensors): this module's
    weighting.

    Returns:
        (K,) CO density (arithmetic mean), temperature and ``v_z`` (CO-density-weighted
        means; arithmetic means in a cell whose densities are all zero).
    """
    xp = np if isinstance(n, np.ndarray) else __import__("torch")
    total = n.sum(1)
    positive = total > 0
    safe = xp.where(positive, total, xp.ones_like(total))
    weighted_t = xp.where(positive, (n * t).sum(1) / safe, t.mean(1))
    weighted_v = xp.where(positive, (n * v_z).sum(1) / safe, v_z.mean(1))
    return total / n.shape[1], weighted_t, weighted_v


def rotated_cell_means(
    geometry: CubeGeometry,
    matrix: np.ndarray,
    sample,
    sub: int | np.ndarray,
    centre: np.ndarray | None = None,
    max_points: int = 2**21,
) -> dict[str, np.ndarray]:
    """Means over ``sub^3`` midpoint points of every cell of the cube rotated by ``matrix``.

    A cube point ``x'`` is the model point ``x = R^T x' + centre``; the line-of-sight
    velocity is ``(R v)_z``. The weighting is :func:`weighted_means`'.

    Args:
        sample: model-frame points (P, 3) m -> (n (P,) m-3, T (P,) K, v (P, 3) m s-1).
        sub: midpoint points per cell axis: one number, or a (grid, grid, grid) integer
            array (cells where the fields vary within the cell can take more).
        max_points: sub-points sampled at once (memory: about 100 bytes each).

    Returns:
        ``number_density_co``, ``temperature``, ``velocity_z``: (grid, grid, grid) float64.
    """
    g, c, dx = geometry.grid, geometry.centres, geometry.cell_size
    centre = np.zeros(3) if centre is None else np.asarray(centre, dtype=np.float64)
    subs = np.broadcast_to(np.asarray(sub, dtype=np.int64), (g, g, g))
    names = ("number_density_co", "temperature", "velocity_z")
    out = {name: np.empty(g**3) for name in names}
    for s in np.unique(subs):
        cells = np.flatnonzero(subs.ravel() == s)
        offsets = sub_offsets(int(s), dx)[None]
        k = offsets.shape[1]
        step = max(1, max_points // k)
        for a in range(0, cells.size, step):
            flat = cells[a : a + step]
            i, rest = np.divmod(flat, g * g)
            j, kk = np.divmod(rest, g)
            points = np.stack([c[i], c[j], c[kk]], axis=1)[:, None] + offsets
            n, t, v = sample(points.reshape(-1, 3) @ matrix + centre)
            means = weighted_means(n.reshape(-1, k), t.reshape(-1, k), (v @ matrix[2]).reshape(-1, k))
            for name, m in zip(names, means, strict=True):
                out[name][flat] = m
    return {name: v.reshape(g, g, g) for name, v in out.items()}


def cell_centres_in_model_frame(geometry: CubeGeometry, matrix: np.ndarray) -> np.ndarray:
    """(grid, grid, grid, 3) model-frame centres ``R^T x'`` of the cells of the rotated cube, m."""
    c = geometry.centres
    cells = np.stack(np.meshgrid(c, c, c, indexing="ij"), axis=-1)
    return cells @ matrix
