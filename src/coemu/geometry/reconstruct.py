"""Regridding by reconstruction (``cubes.method: reconstruct``): the fields rebuilt once per model
on a hierarchy of regular grids in the model's frame, then averaged over sub-points of every
rotated cell.

The cube's cells are larger than the finest points of a model and smaller
than its coarsest ones, so neither the mean of the points in a cell nor the
nearest point is the cell's average (:mod:`coemu.geometry.regrid`). Here:

1. **Once per model** (rotation-independent). Levels of spacing
   ``h_l = h_0 2^l`` with nodes at integer multiples of ``h_l`` from the
   model's centre; ``h_0`` is the points' own spacing where they are densest
   (:func:`point_spacing`), doubled while it is below ``dx / 8``. The coarsest
   levels cover the whole ball that any rotation of the cube reaches (at most
   ``FULL_NODES`` nodes per axis); each finer level covers the box where the
   next coarser level finds points at least that dense, so memory follows the
   points. On each level the point values (``ln n_CO``, ``T``, the velocity
   vector) are spread to the 8 nodes around each point with trilinear weights
   (a node's value: the weighted mean; a point on a node gives it its value
   exactly, so the nested lattices of the synthetic models and of block AMR
   codes are taken as they are). A node whose 3^3 neighbourhood has at least
   ``MIN_WEIGHT`` of weight everywhere holds data; its value is sharpened by
   ``(1 - Delta_x / 12)(1 - Delta_y / 12)(1 - Delta_z / 12)`` (second
   differences of the neighbours), which makes the average of the trilinear
   interpolant over a cell equal the cell average of a smooth field to second
   order (without it trilinear sampling smooths by ``h^2 f'' / 12``). Other
   nodes take the next coarser level's value, interpolated trilinearly.
2. **Per rotation**: ``sub^3`` midpoint points of every rotated cell, mapped
   back into the model frame, are sampled trilinearly on the finest level that
   contains them (``torch.nn.functional.grid_sample``, CPU or GPU) and averaged
   with the weighting of :mod:`coemu.geometry.regrid` (CO density
   arithmetically, temperature and line-of-sight velocity CO-density-weighted).
   ``sub = ceil(dx / h)`` for the finest level at the cell's centre, at least 2
   and at most 8: cells where the points resolve structure finer than the cell
   (the star's) are averaged over as many sub-points as the points support.

Measured against the analytic cubes of the default config's synthetic models
(``bench/fidelity.py``; figures in docs/design.md): exact analytic values on
the default synthetic layout's nodes give image MaxRel median 0.59 %, ZNCC
0.9999; without the sharpening 1.5 %; with the same points on nodes shifted by
a fraction of the spacing 1.0-1.6 %, which is why the levels are aligned with
the points when the points lie on a lattice. Memory: float64 sums of 6
quantities per node, at most ``MAX_NODES`` nodes per level (about 400 MB), plus
the sub-points of ``2^21`` at a time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.spatial import cKDTree

from coemu.geometry.regrid import CubeGeometry, cell_centres_in_model_frame, sub_offsets, weighted_means

#: A node holds data when every node of its 3^3 neighbourhood has at least this splatted weight.
#: Lattices give their nodes 0 or at least 1; for unstructured clouds a low threshold with the
#: first-moment correction of ``_set_values`` beats falling back to the coarser level (default
#: models on random points, m00000 and m00002, 2 rotations: MaxRel 3.2-4.3 % at 0.02,
#: 3.9-4.7 % at 0.1, 5.4-6.7 % at 0.25).
MIN_WEIGHT = 0.02
#: Sharpening: node values ``(1 - SHARPEN Delta)`` per axis (second differences, see the module).
SHARPEN = 1.0 / 12.0
#: Nodes per axis of the coarsest levels, which cover the whole reach of the cube.
FULL_NODES = 129
#: Nodes of a finer level (its box); a level that needs more is not built.
MAX_NODES = 2**23
#: Finest level spacing as a fraction of the cube's cell size (and the most sub-points per axis).
FINEST = 8
#: Coarse levels added above the full-reach one to fill nodes no point reaches.
MAX_COARSE = 8


def point_spacing(position: np.ndarray, per_bin: int = 64, quantile: float = 5.0) -> float:
    """The spacing of the points where they are densest, m: the ``quantile`` (per cent) of the
    distances to the nearest other point, over the points of the fullest bin of a count over
    the bounding box in bins that hold ``per_bin`` points on average (at most 64 per axis).

    For nested lattices this is the finest lattice's spacing as long as its points are a few
    per cent of the bin's, wherever the bin's edges cut it. Duplicate points are ignored.

    Args:
        position: (N, 3) m, N >= 2.
    """
    bins = int(np.clip(round((len(position) / per_bin) ** (1 / 3)), 1, 64))
    lower, upper = position.min(axis=0), position.max(axis=0)
    size = np.maximum(upper - lower, np.finfo(np.float64).tiny) / bins
    ijk = np.minimum(((position - lower) / size).astype(np.int64), bins - 1)
    flat = np.ravel_multi_index(ijk.T, (bins,) * 3)
    points = position[flat == np.bincount(flat, minlength=bins**3).argmax()]
    if len(points) < 2:
        points = position
    distance, _ = cKDTree(points).query(points, k=2)
    distance = distance[:, 1][distance[:, 1] > 0]  # duplicate points are not a spacing
    return float(np.percentile(distance, quantile)) if distance.size else float(size.min())


@dataclass
class Level:
    """One regular grid: node ``i`` per axis at ``(lo + i) h`` from the model's centre.

    Attributes:
        h: spacing, m.
        lo: (3,) integer index of the first node.
        shape: (3,) nodes per axis.
        weight: (n_x, n_y, n_z) splatted weights (float64).
        values: (5, n_x, n_y, n_z) ``ln n_CO``, ``T``, ``v_x``, ``v_y``, ``v_z`` (float64).
    """

    h: float
    lo: np.ndarray
    shape: tuple[int, int, int]
    weight: torch.Tensor | None = None
    values: torch.Tensor | None = None

    def inside(self, points: torch.Tensor) -> torch.Tensor:
        """(P,) mask of points (P, 3) in m within the box of nodes."""
        u = points / self.h - torch.as_tensor(self.lo, dtype=points.dtype, device=points.device)
        top = torch.as_tensor(self.shape, dtype=points.dtype, device=points.device) - 1
        return ((u >= 0) & (u <= top)).all(dim=1)

    def normalised(self, points: torch.Tensor, unit: float = 1.0) -> torch.Tensor:
        """grid_sample coordinates in [-1, 1] of points (P, 3) given in units of ``unit`` m."""
        lo = torch.as_tensor(self.lo, dtype=points.dtype, device=points.device)
        top = torch.as_tensor(self.shape, dtype=points.dtype, device=points.device) - 1
        return 2.0 * (points * (unit / self.h) - lo) / top - 1.0

    def node_positions(self, device) -> torch.Tensor:
        """(n_nodes, 3) node positions in m, x slowest."""
        axes = [
            (self.lo[a] + torch.arange(self.shape[a], device=device, dtype=torch.float64)) * self.h
            for a in range(3)
        ]
        return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, 3)


def _splat(level: Level, points: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Trilinear splat of ``values`` (N, F) at ``points`` (N, 3) m onto ``level``.

    Returns:
        (F + 4, n_x, n_y, n_z) float64 sums: the weights, the weighted values, and the weighted
        offsets of the points from the node (x, y, z, m): the first moments that
        :func:`_set_values` uses to correct for points placed unevenly around a node.
    """
    keep = level.inside(points)
    u = points[keep] / level.h - torch.as_tensor(level.lo, dtype=points.dtype, device=points.device)
    ones = torch.ones(len(u), 1, dtype=values.dtype, device=values.device)
    # weight, values and positions (node units) splatted together; sum w (x - X_node) is then
    # h (sum w u - i_node sum w), formed on the grid
    vals = torch.cat([ones, values[keep], u], dim=1)
    shape = torch.as_tensor(level.shape, device=points.device)
    i0 = torch.minimum(torch.floor(u).long(), (shape - 2).clamp_min(0))
    f = u - i0
    nx, ny, nz = level.shape
    base = (i0[:, 0] * ny + i0[:, 1]) * nz + i0[:, 2]
    sums = torch.zeros(nx * ny * nz, vals.shape[1], dtype=torch.float64, device=points.device)
    wx, wy, wz = ((1.0 - f[:, a], f[:, a]) for a in range(3))
    for dx_ in (0, 1):
        for dy in (0, 1):
            wxy = wx[dx_] * wy[dy]
            for dz in (0, 1):
                w = wxy * wz[dz]
                sums.index_add_(0, base + ((dx_ * ny + dy) * nz + dz), vals * w[:, None])
    sums = sums.T.reshape(-1, *level.shape)
    index = torch.meshgrid(
        *(torch.arange(n, dtype=sums.dtype, device=sums.device) for n in level.shape), indexing="ij"
    )
    for a in range(3):
        sums[-3 + a] = (sums[-3 + a] - index[a] * sums[0]) * level.h
    return sums


def _set_values(level: Level, sums: torch.Tensor) -> None:
    """The level's weights and node values from its splatted sums (F + 4, n_x, n_y, n_z).

    A node's value: the weighted mean of its points, less the field's gradient (central
    differences of the means) times the points' weighted mean offset from the node, which
    makes the value exact for linear fields however the points lie around the node (a point
    on a node, or a symmetric lattice, has no offset: the mean is kept).
    """
    weight = sums[:1].clamp_min(torch.finfo(torch.float64).tiny)
    mean, offset = sums[1:-3] / weight, sums[-3:] / weight
    corrected = mean.clone()
    for axis in range(3):
        n = mean.shape[1 + axis]
        if n < 3:
            continue
        gradient = (mean.narrow(1 + axis, 2, n - 2) - mean.narrow(1 + axis, 0, n - 2)) / (2 * level.h)
        corrected.narrow(1 + axis, 1, n - 2).sub_(gradient * offset[axis].narrow(axis, 1, n - 2))
    level.weight, level.values = sums[0], corrected


def _sharpened(values: torch.Tensor) -> torch.Tensor:
    """``prod_axes (1 - SHARPEN Delta_axis)`` applied to (F, n_x, n_y, n_z); edges unchanged."""
    out = values.clone()
    for axis in (1, 2, 3):
        n = out.shape[axis]
        if n < 3:
            continue
        laplacian = out.narrow(axis, 0, n - 2) + out.narrow(axis, 2, n - 2) - 2 * out.narrow(axis, 1, n - 2)
        out.narrow(axis, 1, n - 2).sub_(SHARPEN * laplacian)
    return out


def _restrict(fine: Level, sums: torch.Tensor, coarse: Level) -> torch.Tensor:
    """Splatted sums (F + 4, n_x, n_y, n_z) on ``coarse`` (spacing 2h) from those of ``fine`` (h).

    Exact: the trilinear hat of spacing 2h is the hat of spacing h convolved with (1/2, 1, 1/2),
    so restricting the sums with that kernel (stride 2) is splatting the points at 2h; the
    offsets from a coarse node add the fine node's own offset times its weight (kernel
    h (-1/2, 0, 1/2) along the offset's axis). Coarse node ``J`` gathers fine nodes
    ``2J - 1, 2J, 2J + 1`` (global indices).
    """
    hat = (0.5, 1.0, 0.5)
    moment = tuple(fine.h * k for k in (-0.5, 0.0, 0.5))
    out = _restrict_with(fine, sums[:, None], coarse, (hat, hat, hat))[:, 0]
    for axis in range(3):
        kernels = tuple(moment if a == axis else hat for a in range(3))
        out[-3 + axis] += _restrict_with(fine, sums[:1, None], coarse, kernels)[0, 0]
    return out


def _restrict_with(fine: Level, x: torch.Tensor, coarse: Level, kernels) -> torch.Tensor:
    """(C, 1, n_x, n_y, n_z) on ``fine`` -> on ``coarse``: per axis, the 3-tap ``kernels[axis]``
    at fine nodes ``2J - 1, 2J, 2J + 1``, zero outside the fine grid."""
    for axis in range(3):
        dim = 2 + axis
        before = int(fine.lo[axis] - (2 * coarse.lo[axis] - 1))
        end = fine.lo[axis] + fine.shape[axis] - 1
        after = int(2 * (coarse.lo[axis] + coarse.shape[axis] - 1) + 1 - end)
        if before < 0:
            x, before = x.narrow(dim, -before, x.shape[dim] + before), 0
        if after < 0:
            x, after = x.narrow(dim, 0, x.shape[dim] + after), 0
        pad = [0] * 6
        pad[2 * (2 - axis)], pad[2 * (2 - axis) + 1] = before, after
        x = torch.nn.functional.pad(x, pad)
        shape, stride = [1, 1, 1, 1, 1], [1, 1, 1]
        shape[dim], stride[axis] = 3, 2
        kernel = torch.tensor(kernels[axis], dtype=x.dtype, device=x.device)
        x = torch.nn.functional.conv3d(x, kernel.view(shape), stride=stride)
    return x


def _with_data(weight: torch.Tensor) -> torch.Tensor:
    """Nodes whose 3^3 neighbourhood (within the grid) all has weight >= MIN_WEIGHT."""
    padded = torch.nn.functional.pad((-weight)[None, None], (1, 1, 1, 1, 1, 1), value=-math.inf)
    return (-torch.nn.functional.max_pool3d(padded, 3, stride=1))[0, 0] >= MIN_WEIGHT


def _sample_grid(level: Level, grid: torch.Tensor, points: torch.Tensor, unit: float = 1.0) -> torch.Tensor:
    """(F, P) trilinear values of ``grid`` (1, F, n_z, n_y, n_x) at points (P, 3) inside ``level``,
    given in units of ``unit`` m."""
    g = level.normalised(points, unit).to(grid.dtype).view(1, 1, 1, -1, 3)
    return torch.nn.functional.grid_sample(
        grid, g, mode="bilinear", padding_mode="border", align_corners=True
    )[0, :, 0, 0]


class Reconstruction:
    """The fields of one model on nested regular grids in its frame (see the module docstring).

    Args:
        position: (N, 3) m, centred (the model's box centre at the origin), trimmed to the sphere.
        number_density: (N,) CO number density, m-3.
        temperature: (N,) K.
        velocity: (N, 3) m s-1.
        geometry: the cube.
        device: where the grids live and the sampling runs.

    Attributes:
        levels: finest first; ``levels[k].grid``: (1, 5, n_z, n_y, n_x) float32 for ``grid_sample``.
    """

    def __init__(
        self,
        position: np.ndarray,
        number_density: np.ndarray,
        temperature: np.ndarray,
        velocity: np.ndarray,
        geometry: CubeGeometry,
        device: str | torch.device = "cpu",
    ):
        self.geometry, self.device = geometry, torch.device(device)
        dx = geometry.cell_size
        h0 = point_spacing(position)
        while h0 < dx / FINEST:
            h0 *= 2.0
        self.h0 = h0
        reach = math.sqrt(3) * geometry.half_width + dx  # the farthest sub-point of any rotation
        top = 0
        while 2 * math.ceil(reach / (h0 * 2**top)) + 1 > FULL_NODES:
            top += 1
        tiny = np.finfo(np.float64).tiny
        values = np.column_stack([np.log(np.maximum(number_density, tiny)), temperature, velocity])
        pts = torch.as_tensor(position, dtype=torch.float64, device=self.device)
        vals = torch.as_tensor(values, dtype=torch.float64, device=self.device)

        def full(level: int) -> Level:
            m = math.ceil(reach / (h0 * 2**level))
            return Level(h0 * 2**level, np.full(3, -m), (2 * m + 1,) * 3)

        coarse = [full(top)]  # the full-reach levels, finest first
        sums = _splat(coarse[0], pts, vals)
        _set_values(coarse[0], sums)

        def filled(level: Level) -> bool:  # every node within the reach has weight
            radius = level.node_positions(self.device).norm(dim=1).reshape(level.shape)
            return bool((level.weight[radius <= reach + math.sqrt(3) * level.h] >= MIN_WEIGHT).all())

        while not filled(coarse[-1]) and len(coarse) <= MAX_COARSE:
            coarse.append(full(top + len(coarse)))
            sums = _restrict(coarse[-2], sums, coarse[-1])
            _set_values(coarse[-1], sums)
        del sums
        fine = []  # boxed levels, coarsest first
        parent = coarse[0]
        for _ in range(top):
            dense = torch.nonzero(parent.weight >= 4.0)
            if dense.numel() == 0:
                break
            lo = 2 * (parent.lo + dense.min(dim=0).values.cpu().numpy()) - 2
            hi = 2 * (parent.lo + dense.max(dim=0).values.cpu().numpy()) + 2
            lo, hi = (
                np.maximum(lo, 2 * parent.lo),
                np.minimum(hi, 2 * (parent.lo + np.array(parent.shape) - 1)),
            )
            shape = tuple(int(n) for n in hi - lo + 1)
            if np.prod(shape) > MAX_NODES or min(shape) < 2:
                break
            level = Level(parent.h / 2, lo, shape)
            _set_values(level, _splat(level, pts, vals))
            fine.append(level)
            parent = level
        # values from the coarsest level down: nodes without data take the coarser level's
        ordered = list(reversed(coarse)) + fine
        grid = None
        for k, level in enumerate(ordered):
            data = _with_data(level.weight)
            sharp = _sharpened(level.values)
            if grid is None:
                mean = (sharp * data).sum(dim=(1, 2, 3), keepdim=True) / data.sum().clamp_min(1)
                final = torch.where(data, sharp, mean)
            else:
                previous = ordered[k - 1]
                up = _sample_grid(previous, grid, level.node_positions(self.device)).reshape(-1, *level.shape)
                final = torch.where(data, sharp, up.to(torch.float64))
            grid = final.permute(0, 3, 2, 1)[None].to(torch.float32).contiguous()
            level.grid = grid
            level.weight = level.values = None
        # sampling needs the boxed levels and the finest full-reach one (the coarser ones are
        # supersets of it, needed above only to fill its nodes)
        self.levels = list(reversed(fine)) + [coarse[0]]

    def _grid_values(self, level: Level, q: torch.Tensor) -> torch.Tensor:
        """(5, P) trilinear values on ``level`` at points ``q`` (P, 3) in units of the finest spacing."""
        return _sample_grid(level, level.grid, q, self.h0)

    def _box(self, level: Level, dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
        """(lower, upper) corners of the level's nodes in units of the finest spacing."""
        scale = level.h / self.h0
        lo = torch.as_tensor(level.lo * scale, dtype=dtype, device=self.device)
        hi = torch.as_tensor((level.lo + np.array(level.shape) - 1) * scale, dtype=dtype, device=self.device)
        return lo, hi

    def sample(self, points: np.ndarray) -> np.ndarray:
        """(5, P) ln n, T, v_x, v_y, v_z at ``points`` (P, 3), m, in the model frame: trilinear on
        the finest level whose box holds the point. Coordinates are float32 in units of the
        finest spacing (a few thousand at most: float32 resolves 1e-3 of them)."""
        q = torch.as_tensor(points / self.h0, dtype=torch.float32, device=self.device)
        out = torch.empty(5, len(q), dtype=torch.float32, device=self.device)
        todo = torch.ones(len(q), dtype=torch.bool, device=self.device)
        for k, level in enumerate(self.levels):
            lo, hi = self._box(level)
            sel = todo & ((q >= lo) & (q <= hi)).all(dim=1) if k < len(self.levels) - 1 else todo
            idx = torch.nonzero(sel)[:, 0]
            if idx.numel():
                out[:, idx] = self._grid_values(level, q[idx])
                todo[idx] = False
        return out.double().cpu().numpy()

    def cell_levels(self, matrix: np.ndarray) -> np.ndarray:
        """(grid, grid, grid) index into :attr:`levels` of each rotated cell: the finest level
        whose box holds the whole cell (its circumscribed sphere)."""
        g = self.geometry.grid
        centres = torch.as_tensor(
            cell_centres_in_model_frame(self.geometry, matrix).reshape(-1, 3) / self.h0,
            dtype=torch.float32,
            device=self.device,
        )
        radius = math.sqrt(3) / 2 * self.geometry.cell_size / self.h0
        which = torch.full((g**3,), len(self.levels) - 1, dtype=torch.int64, device=self.device)
        free = torch.ones(g**3, dtype=torch.bool, device=self.device)
        for k, level in enumerate(self.levels[:-1]):
            lo, hi = self._box(level)
            sel = free & ((centres - radius >= lo) & (centres + radius <= hi)).all(dim=1)
            which[sel] = k
            free &= ~sel
        return which.reshape(g, g, g).cpu().numpy()

    def sub_points(self, level: Level) -> int:
        """Midpoint points per cell axis for cells on ``level``: ``ceil(dx / h)``, in [2, FINEST]."""
        return min(FINEST, max(2, math.ceil(self.geometry.cell_size / level.h - 1e-9)))

    def cell_averages(self, matrix: np.ndarray, max_points: int = 2**21) -> dict[str, np.ndarray]:
        """(grid, grid, grid) float64 cell averages for the rotation ``matrix`` (x' = R x).

        Every cell is sampled at :meth:`sub_points` ^3 midpoint points on its level
        (:meth:`cell_levels`) and averaged with :func:`coemu.geometry.regrid.weighted_means`.

        Returns:
            ``number_density_co`` (arithmetic mean), ``temperature`` and ``velocity_z``
            (CO-density-weighted means).
        """
        geometry, g = self.geometry, self.geometry.grid
        centres = torch.as_tensor(
            cell_centres_in_model_frame(geometry, matrix).reshape(-1, 3) / self.h0,
            dtype=torch.float32,
            device=self.device,
        )
        which = torch.as_tensor(self.cell_levels(matrix).ravel(), device=self.device)
        los = torch.as_tensor(matrix[2], dtype=torch.float32, device=self.device)
        out = torch.empty(3, g**3, dtype=torch.float32, device=self.device)
        for k, level in enumerate(self.levels):
            cells = torch.nonzero(which == k)[:, 0]
            if cells.numel() == 0:
                continue
            sub = self.sub_points(level)
            offsets = torch.as_tensor(
                sub_offsets(sub, geometry.cell_size) @ matrix / self.h0,
                dtype=torch.float32,
                device=self.device,
            )
            per = offsets.shape[0]
            for a in range(0, cells.numel(), max(1, max_points // per)):
                batch = cells[a : a + max(1, max_points // per)]
                q = (centres[batch][:, None] + offsets[None]).reshape(-1, 3)
                v = self._grid_values(level, q)
                n = torch.exp(v[0]).view(-1, per)
                v_z = (v[2:5] * los[:, None]).sum(dim=0).view(-1, per)
                means = weighted_means(n, v[1].view(-1, per), v_z)
                for row, m in enumerate(means):
                    out[row, batch] = m
        names = ("number_density_co", "temperature", "velocity_z")
        return {name: out[k].double().cpu().numpy().reshape(g, g, g) for k, name in enumerate(names)}
