"""Optical depth of the Gaussian line along a ray and the formal solution (paper eq. 2-6).

Rays run along the last axis; node 0 faces the observer, the background enters
at node N-1; N nodes, N-1 segments of length ``dx``. Quantities are linear
in position along each segment, as in pomme 0.2.1 (``pomme.lines`` and
``pomme.forward``), whose formulas these are, with two deliberate
differences that do not change the result beyond rounding:

* where a closed form loses precision to cancellation, a Taylor series takes
  over; the thresholds are larger in float32 than in float64 (pomme uses
  1e-4 for both), and the series have more terms, so that float32 stays
  within 1e-3 of float64;
* pomme's small-``dtau`` series of the formal solution swaps the signs of
  the second- and third-order terms between the two nodes; the series here
  is the expansion of the closed form. The difference is of order
  ``dtau^2 < 1e-8`` per segment.
"""

from __future__ import annotations

import functools
import math

import torch

SQRT_PI = math.sqrt(math.pi)

#: |b1 - b0| below which the optical depth uses its Taylor series.
PROFILE_THRESHOLD = {torch.float64: 1.0e-4, torch.float32: 3.0e-2}
#: dtau below which the formal solution uses its Taylor series.
TAU_THRESHOLD = {torch.float64: 1.0e-4, torch.float32: 1.0e-2}


#: |b| beyond which a node lies in the far line wing: exp(-b^2) < 2.4e-16 of the line's peak.
WING_CUT = 6.0


def _erf_difference(sign0, sign1, tail0, tail1):
    """erf(b0) - erf(b1) from sign(b) and erfc(|b|), without cancellation in the line wings.

    For |b| of a few, erf(b) rounds to +-1 and the plain difference loses all
    its digits (in float32 from |b| ~ 3); for two values of the same sign s,
    erf(b0) - erf(b1) = s (erfc|b1| - erfc|b0|) is a difference of small numbers.
    """
    plain = sign0 * (1.0 - tail0) - sign1 * (1.0 - tail1)
    return torch.where(sign0 == sign1, sign0 * (tail1 - tail0), plain)


def _segment_dtau(a0, a1, b0, b1, expb0, expb1, erf_diff):
    """``dx int_0^1 a(s) exp(-b(s)^2) ds`` for a, b linear along the segment (closed form or series)."""
    db = b1 - b0
    closed = (a1 - a0) * (expb0 - expb1) + SQRT_PI * (a1 * b0 - a0 * b1) * erf_diff
    closed = closed * (0.5 / (db**2 + 1.0e-30))
    series = expb0 * (
        0.5 * (a0 + a1)
        - (1.0 / 3.0) * (a0 + 2.0 * a1) * b0 * db
        + (1.0 / 12.0) * (a0 + 3.0 * a1) * (2.0 * b0**2 - 1.0) * db**2
        - (1.0 / 30.0) * (a0 + 4.0 * a1) * b0 * (2.0 * b0**2 - 3.0) * db**3
    )
    return torch.where(db.abs() < PROFILE_THRESHOLD[b0.dtype], series, closed)


def _segment_emission(s0, s1, emt0, emt1, dtau):
    """Intensity a segment adds at the observer, source linear in optical depth (closed form or series)."""
    closed = (s0 * (emt1 - emt0 * (1.0 - dtau)) + s1 * (emt0 - emt1 * (1.0 + dtau))) / (dtau + 1.0e-30)
    d2 = dtau * dtau
    lin, quad, cub = 0.5 * dtau, d2 / 6.0, d2 * dtau / 24.0
    series = s0 * emt0 * (lin - quad + cub) + s1 * emt1 * (lin + quad + cub)
    return torch.where(dtau < TAU_THRESHOLD[dtau.dtype], series, closed)


def segment_optical_depth(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Optical depth of each segment, with ``a`` and ``b`` linear along it (dense reference).

    The solver uses :func:`transfer_line_segments`, which computes the same
    thing for the segments that see the line only; this dense version is the
    reference it is tested against.

    ``dtau = dx int_0^1 a(s) exp(-b(s)^2) ds`` with ``a = chi n / (sqrt(pi)
    delta nu)`` and ``b = (nu_comoving - nu0) / delta nu`` interpolated
    linearly between the nodes, integrated analytically (erf and exp).

    Args:
        a: (..., N) nodes' ``dx chi n / (sqrt(pi) delta nu)`` (dx absorbed).
        b: (F, ..., N) nodes' shifted, scaled frequency for each of F frequencies.

    Returns:
        (F, ..., N-1) segment optical depths.
    """
    expb = torch.exp(-(b**2))
    tail = torch.erfc(b.abs())
    sign = torch.sign(b)
    erf_diff = _erf_difference(sign[..., :-1], sign[..., 1:], tail[..., :-1], tail[..., 1:])
    return _segment_dtau(
        a[..., :-1], a[..., 1:], b[..., :-1], b[..., 1:], expb[..., :-1], expb[..., 1:], erf_diff
    )


def formal_solution(source: torch.Tensor, dtau: torch.Tensor, background: torch.Tensor | float = 0.0):
    """Intensity leaving node 0, with the source function linear in optical depth (dense reference).

    Args:
        source: (..., N) source function at the nodes, W m-2 Hz-1 sr-1.
        dtau: (F, ..., N-1) segment optical depths.
        background: intensity entering at node N-1, broadcastable to (F, ...).

    Returns:
        (F, ...) emergent intensity, W m-2 Hz-1 sr-1.
    """
    tau = torch.cumsum(dtau, dim=-1)
    emt = torch.exp(-tau)  # exp(-tau) at nodes 1..N-1
    emt0 = torch.cat([torch.ones_like(emt[..., :1]), emt[..., :-1]], dim=-1)
    segments = _segment_emission(source[..., :-1], source[..., 1:], emt0, emt, dtau)
    return background * emt[..., -1] + segments.sum(dim=-1)


def _node_terms(b):
    """sign(b), erfc(|b|) and exp(-b^2) per node (eager: ATen's vectorised erfc beats the fused one)."""
    return torch.sign(b), torch.erfc(b.abs()), torch.exp(-(b * b))


def _run_optical_depth(a, b, sign, tail, expb):
    """Optical depths between consecutive entries of 1D node arrays (length M -> M-1)."""
    erf_diff = _erf_difference(sign[:-1], sign[1:], tail[:-1], tail[1:])
    return _segment_dtau(a[:-1], a[1:], b[:-1], b[1:], expb[:-1], expb[1:], erf_diff)


def _run_emission(source, tau, dtau):
    """Emission at the observer of the segments between consecutive entries of 1D node arrays."""
    emt = torch.exp(-tau)
    return _segment_emission(source[:-1], source[1:], emt[:-1], emt[1:], dtau)


#: Relative widening of the velocity windows, so that rounding never drops a segment.
WINDOW_MARGIN = 1.0 + 1.0e-3


def _line_nodes(inv_width, velocity, offset, doppler):
    """Masks (F, R, N) of the segments that see the line (at their first node) and of their nodes.

    ``b = inv_width (offset + doppler v)`` is ``inv_width doppler (v - w)``
    with ``w = -offset / doppler`` the velocity at which a channel sees the
    line centre, so a node is within :data:`WING_CUT` widths of the line
    where ``|v - w| < WING_CUT / (inv_width doppler)``. A segment sees the
    line if either node does or ``v - w`` changes sign along it: ``w`` is in
    the union of the nodes' windows and the interval between their
    velocities, one interval per segment. The masks are found by comparing
    the channels' ``w`` with those intervals (a few percent wider, so a
    superset: extra segments are computed exactly and add nothing), without
    building ``b`` on the full (F, R, N) grid.
    """
    half = (WING_CUT * WINDOW_MARGIN) / (inv_width * doppler.min())
    lo, hi = velocity - half, velocity + half
    seg_lo = torch.nn.functional.pad(torch.minimum(lo[..., :-1], lo[..., 1:]), (0, 1), value=math.inf)
    seg_hi = torch.maximum(hi[..., :-1], hi[..., 1:])
    w = (-offset / doppler).view(-1, 1, 1)
    starts = (w >= seg_lo) & (w <= torch.nn.functional.pad(seg_hi, (0, 1), value=-math.inf))
    nodes = starts | torch.nn.functional.pad(starts[..., :-1], (1, 0))
    return starts, nodes


#: The per-segment kernels; ``torch.compile`` fuses them well (the masks and erfc it does not).
KERNELS = (_run_optical_depth, _run_emission)


@functools.lru_cache(maxsize=1)
def compiled_kernels():
    """:data:`KERNELS` fused by ``torch.compile`` (dynamic shapes: compiled once per process)."""
    return tuple(torch.compile(kernel, dynamic=True) for kernel in KERNELS)


def transfer_line_segments(
    a: torch.Tensor,
    inv_width: torch.Tensor,
    velocity: torch.Tensor,
    offset: torch.Tensor,
    doppler: torch.Tensor,
    source: torch.Tensor,
    background: torch.Tensor,
    compile: bool = False,
):
    """Same result as ``formal_solution(source, segment_optical_depth(a, b), background)``, less work.

    Here ``b = inv_width (offset + doppler velocity)`` on the (F, R, N) grid.
    Only segments that see the line are computed: those with a node within
    :data:`WING_CUT` line widths of the line centre or whose two nodes lie on
    either side of it (found by :func:`_line_nodes`). The others have
    ``dtau < a exp(-WING_CUT^2)``, below 2.4e-16 of the segment's optical
    depth at line centre, and are taken as 0. In the synthetic cubes about
    75% of (frequency, segment) pairs are in the far wings, where the dense
    version spends most of its exp/erfc calls.

    The nodes of those segments are packed into one 1D array in (frequency,
    ray, node) order, so that each segment is a pair of consecutive entries;
    pairs that are not a segment (a gap in a ray, the step to the next ray)
    get ``dtau = 0``. sign, erfc and exp are computed once per packed node.
    The optical depth from the observer is a cumulative sum along each ray
    of the full (F, R, N) grid, so that results do not depend on the chunking.

    Args:
        a: (R, N) nodes' ``dx chi n / (sqrt(pi) delta nu)``.
        inv_width: (R, N) 1 / delta nu, Hz-1.
        velocity: (R, N) line-of-sight velocity, m s-1.
        offset: (F,) observed frequency minus line frequency, Hz.
        doppler: (F,) observed frequency / c, Hz s m-1.
        source: (R, N) source function, W m-2 Hz-1 sr-1.
        background: (F, 1) intensity entering at node N-1.
        compile: use the per-segment kernels fused by ``torch.compile``
            (faster on the CPU, after a compilation of a few seconds per process).

    Returns:
        (F, R) emergent intensity.
    """
    (n_rays, n_nodes), n_freq = a.shape, offset.numel()
    optical_depth, emission_of = compiled_kernels() if compile else KERNELS
    starts, nodes = _line_nodes(inv_width, velocity, offset, doppler)
    node = nodes.view(-1).nonzero().squeeze(1)  # packed -> flat (f, r, z)
    ray = node // n_nodes  # flat (f, r)
    channel, cell = node // (n_rays * n_nodes), node % (n_rays * n_nodes)  # f, flat (r, z)
    packed_b = inv_width.reshape(-1).index_select(0, cell) * (
        offset.index_select(0, channel)
        + doppler.index_select(0, channel) * velocity.reshape(-1).index_select(0, cell)
    )
    packed_a = a.reshape(-1).index_select(0, cell)
    packed_s = source.reshape(-1).index_select(0, cell)
    is_segment = starts.view(-1).index_select(0, node)[:-1]
    dtau = optical_depth(packed_a, packed_b, *_node_terms(packed_b))
    dtau = torch.where(is_segment, dtau, 0.0)
    along = torch.zeros((n_freq * n_rays, n_nodes), dtype=a.dtype, device=a.device)
    along.view(-1).index_add_(0, node[:-1] + 1, dtau)  # a non-segment pair adds 0
    along = torch.cumsum(along, dim=-1)  # optical depth from the observer to each node
    tau = along.view(-1).index_select(0, node)
    emission = torch.where(is_segment, emission_of(packed_s, tau, dtau), 0.0)
    image = torch.zeros(n_freq * n_rays, dtype=a.dtype, device=a.device)
    image.index_add_(0, ray[:-1], emission)
    return image.view(n_freq, n_rays) + background * torch.exp(-along[:, -1].view(n_freq, n_rays))
