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

Cells that no point falls in take the values of the nearest point
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


def rotated_cell_means(
    geometry: CubeGeometry,
    matrix: np.ndarray,
    sample,
    sub: int,
    centre: np.ndarray | None = None,
    slab: int = 8,
) -> dict[str, np.ndarray]:
    """Means over ``sub^3`` midpoint points of every cell of the cube rotated by ``matrix``.

    A cube point ``x'`` is the model point ``x = R^T x' + centre``; the line-of-sight
    velocity is ``(R v)_z``. The weighting is this module's: CO density arithmetically,
    temperature and ``v_z`` CO-density-weighted (arithmetic means in a cell whose
    densities are all zero).

    Args:
        sample: model-frame points (P, 3) m -> (n (P,) m-3, T (P,) K, v (P, 3) m s-1).
        slab: x-planes of cells sampled at once (memory: slab x grid^2 x sub^3 points).

    Returns:
        ``number_density_co``, ``temperature``, ``velocity_z``: (grid, grid, grid) float64.
    """
    g, c = geometry.grid, geometry.centres
    offsets = sub_offsets(sub, geometry.cell_size)[None]
    k = offsets.shape[1]
    centre = np.zeros(3) if centre is None else np.asarray(centre, dtype=np.float64)
    out = {name: np.empty((g, g, g)) for name in ("number_density_co", "temperature", "velocity_z")}
    for i0 in range(0, g, slab):
        xs = c[i0 : i0 + slab]
        cells = np.stack(np.meshgrid(xs, c, c, indexing="ij"), axis=-1).reshape(-1, 1, 3)
        n, t, v = sample((cells + offsets).reshape(-1, 3) @ matrix + centre)
        n, t, v_z = n.reshape(-1, k), t.reshape(-1, k), (v @ matrix[2]).reshape(-1, k)
        total = n.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            weighted_t = np.where(total > 0, (n * t).sum(axis=1) / total, t.mean(axis=1))
            weighted_v = np.where(total > 0, (n * v_z).sum(axis=1) / total, v_z.mean(axis=1))
        block = (len(xs), g, g)
        out["number_density_co"][i0 : i0 + slab] = (total / k).reshape(block)
        out["temperature"][i0 : i0 + slab] = weighted_t.reshape(block)
        out["velocity_z"][i0 : i0 + slab] = weighted_v.reshape(block)
    return out
