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


def _pair_optical_depth(a0, a1, b0, b1):
    """Segment optical depths from gathered node values (1D tensors of any length)."""
    erf_diff = _erf_difference(torch.sign(b0), torch.sign(b1), torch.erfc(b0.abs()), torch.erfc(b1.abs()))
    return _segment_dtau(a0, a1, b0, b1, torch.exp(-(b0**2)), torch.exp(-(b1**2)), erf_diff)


def _pair_emission(s0, s1, tau0, tau1, dtau):
    """Segment emission at the observer from gathered node values (1D tensors of any length)."""
    return _segment_emission(s0, s1, torch.exp(-tau0), torch.exp(-tau1), dtau)


@functools.lru_cache(maxsize=1)
def compiled_kernels():
    """The two per-segment kernels fused by ``torch.compile`` (dynamic length: compiled once per process)."""
    return torch.compile(_pair_optical_depth, dynamic=True), torch.compile(_pair_emission, dynamic=True)


def transfer_line_segments(
    a: torch.Tensor, b: torch.Tensor, source: torch.Tensor, background: torch.Tensor, compile: bool = False
):
    """Same result as ``formal_solution(source, segment_optical_depth(a, b), background)``, less work.

    Only segments that see the line are computed: those with a node within
    :data:`WING_CUT` line widths of the line centre or whose two nodes lie on
    either side of it. The others have ``dtau < a exp(-WING_CUT^2)``, below
    2.4e-16 of the segment's optical depth at line centre, and are taken as 0. In the
    synthetic cubes about 80% of (frequency, segment) pairs are in the far
    wings, where the dense version spends most of its exp/erfc calls.

    Args:
        a, source: (R, N); b: (F, R, N); background: (F, 1).
        compile: use the per-segment kernels fused by ``torch.compile``
            (about 2-3x faster on the CPU, after a compilation of a few
            seconds per process).

    Returns:
        (F, R) emergent intensity.
    """
    n_freq, n_rays, n_nodes = b.shape
    n_seg = n_nodes - 1
    near = b.abs() < WING_CUT
    b0, b1 = b[..., :-1], b[..., 1:]
    active = near[..., :-1] | near[..., 1:] | ((b0 > 0) != (b1 > 0))
    seg = active.view(-1).nonzero().squeeze(1)  # flat (f, r, z) segment indices
    ray = seg // n_seg  # flat (f, r)
    node = seg + ray  # flat (f, r, z) node index of the segment's first node
    cell = node % (n_rays * n_nodes)  # flat (r, z) cell index of that node
    flat_b, flat_a, flat_s = b.reshape(-1), a.reshape(-1), source.reshape(-1)
    B0, B1 = flat_b.index_select(0, node), flat_b.index_select(0, node + 1)
    A0, A1 = flat_a.index_select(0, cell), flat_a.index_select(0, cell + 1)
    optical_depth, emission_of = compiled_kernels() if compile else (_pair_optical_depth, _pair_emission)
    dtau_active = optical_depth(A0, A1, B0, B1)
    dtau = torch.zeros(n_freq * n_rays * n_seg, dtype=b.dtype, device=b.device)
    dtau.index_copy_(0, seg, dtau_active)
    tau = torch.zeros((n_freq, n_rays, n_nodes), dtype=b.dtype, device=b.device)
    torch.cumsum(dtau.view(n_freq, n_rays, n_seg), dim=-1, out=tau[..., 1:])  # from the observer to each node
    flat_tau = tau.view(-1)
    s0, s1 = flat_s.index_select(0, cell), flat_s.index_select(0, cell + 1)
    emission = emission_of(
        s0, s1, flat_tau.index_select(0, node), flat_tau.index_select(0, node + 1), dtau_active
    )
    image = torch.zeros(n_freq * n_rays, dtype=b.dtype, device=b.device)
    image.index_add_(0, ray, emission)
    return image.view(n_freq, n_rays) + background * torch.exp(-tau[..., -1])
