"""Batched LTE line images along the last axis (Pomme-equivalent), chunked in memory.

One tensor program for a batch of cubes (rotations), all rays and all
frequencies; the only Python loop is over chunks of rays, sized for the
CPU's caches or to a share of the free memory on CUDA. The transfer itself
computes only the (frequency, segment) pairs that see the line
(:func:`coemu.rt.transfer.transfer_line_segments`).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from coemu.constants import SPEED_OF_LIGHT
from coemu.io.errors import CoemuInputError
from coemu.rt.lamda import Line
from coemu.rt.lte import check_temperature_range, inverse_doppler_width, opacity_and_source
from coemu.rt.spectral import CMB_TEMPERATURE, planck
from coemu.rt.transfer import SQRT_PI, transfer_line_segments

#: Temporaries held at once per (ray node x frequency) element, in item sizes: 21-26 measured
#: on the CPU (peak live memory per operation, float32 and float64), with room for CUDA's
#: allocator rounding; the device check measures it on CUDA.
TEMPORARIES_PER_ELEMENT = 32
#: Ray-node x frequency elements per chunk on the CPU (7 channels x 1024 rays x 64
#: nodes); measured faster than both smaller and larger chunks.
CPU_CHUNK_ELEMENTS = 1 << 19


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` -> CUDA when available, else CPU; anything else is passed to torch.

    Raises:
        CoemuInputError: an unknown device name, or CUDA asked for where there is none.
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as err:
        raise CoemuInputError(None, "device", f"unknown device '{device}' ({err})") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise CoemuInputError(None, "device", f"'{device}' asked for, but no CUDA device is available")
    return resolved


def chunk_elements(device: torch.device, itemsize: int, memory_budget: int | None = None) -> int:
    """(ray node x frequency) elements per chunk: cache-sized on CPU, a quarter of free memory on CUDA."""
    if memory_budget is not None:
        return max(1, memory_budget // (TEMPORARIES_PER_ELEMENT * itemsize))
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        free += torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)  # cached, unused
        return max(1, free // 4 // (TEMPORARIES_PER_ELEMENT * itemsize))
    return CPU_CHUNK_ELEMENTS


def rays_per_chunk(
    device: torch.device, itemsize: int, rays: int, n_z: int, n_freq: int, memory_budget: int | None = None
) -> int:
    """Rays per chunk of :func:`line_images`: a power of 2 (they divide 64^2 rays), at most ``rays``."""
    per_chunk = chunk_elements(device, itemsize, memory_budget) // (n_z * n_freq)
    return max(1, min(rays, 2 ** int(math.log2(max(per_chunk, 1)))))


def background_intensity(kind: str, frequencies: np.ndarray) -> np.ndarray:
    """(F,) intensity entering at the far side: ``zero`` or ``cmb`` (2.72548 K black body)."""
    if kind == "zero":
        return np.zeros_like(frequencies)
    if kind == "cmb":
        return planck(frequencies, CMB_TEMPERATURE)
    raise ValueError(f"unknown background '{kind}' (zero or cmb)")


def line_images(
    line: Line,
    temperature: torch.Tensor,
    number_density: torch.Tensor,
    velocity_z: torch.Tensor,
    frequencies: np.ndarray,
    dx: float,
    v_turbulence: float = 0.0,
    background: np.ndarray | None = None,
    memory_budget: int | None = None,
    compile: bool = False,
) -> torch.Tensor:
    """Synthetic line images of a batch of cubes, rays along the last axis.

    Args:
        line: the transition (see :func:`coemu.rt.lamda.load_line`).
        temperature: (B, X, Y, Z) K, > 0.
        number_density: (B, X, Y, Z) m-3 of the line's molecule.
        velocity_z: (B, X, Y, Z) m s-1, positive away from the observer (who
            is at z index 0).
        frequencies: (F,) observed frequencies, Hz (float64 for precision).
        dx: segment length, m (the cube's cell size).
        v_turbulence: turbulent velocity, m s-1.
        background: (F,) intensity entering at z index Z-1 (default 0).
        memory_budget: bytes for temporaries (default: see :func:`chunk_elements`).
        compile: fuse the per-segment kernels with ``torch.compile`` (see
            :func:`coemu.rt.transfer.transfer_line_segments`).

    Returns:
        (B, X, Y, F) intensity in W m-2 Hz-1 sr-1, dtype and device of ``temperature``.
        Differentiable: where the inputs require grad, gradients flow through the
        transfer (a fit's forward model, :mod:`coemu.fit.forward`; float64 there, as the
        series thresholds are tuned for it); otherwise no graph is recorded.
    """
    dtype, device = temperature.dtype, temperature.device
    if dtype not in (torch.float32, torch.float64):
        raise TypeError(f"dtype must be float32 or float64, got {dtype}")
    shape = temperature.shape
    if len(shape) != 4 or number_density.shape != shape or velocity_z.shape != shape:
        raise ValueError(f"temperature, density, velocity must share a (B, X, Y, Z) shape, got {shape}")
    freqs = np.asarray(frequencies, dtype=np.float64)
    n_freq = len(freqs)
    # nu (1 + v / c) - nu0 = (nu - nu0) + nu v / c: no cancellation in float32
    offset = torch.as_tensor(freqs - line.frequency, dtype=dtype, device=device)
    doppler = torch.as_tensor(freqs / SPEED_OF_LIGHT, dtype=dtype, device=device)
    bdy = torch.as_tensor(
        np.zeros(n_freq) if background is None else np.asarray(background, dtype=np.float64),
        dtype=dtype,
        device=device,
    )

    check_temperature_range(temperature)
    n_z = shape[-1]
    rays = math.prod(shape[:-1])
    ray_chunk = rays_per_chunk(device, temperature.element_size(), rays, n_z, n_freq, memory_budget)
    t_all, n_all, v_all = (x.reshape(rays, n_z) for x in (temperature, number_density, velocity_z))
    bdy = bdy.view(-1, 1)

    out = torch.empty((rays, n_freq), dtype=dtype, device=device)
    for start in range(0, rays, ray_chunk):
        sl = slice(start, start + ray_chunk)
        t = t_all[sl]
        chi, source = opacity_and_source(line, t)
        inv_width = inverse_doppler_width(line, t, v_turbulence)
        a = (dx / SQRT_PI) * inv_width * chi * n_all[sl]
        out[sl] = transfer_line_segments(a, inv_width, v_all[sl], offset, doppler, source, bdy, compile).T
    return out.view(*shape[:-1], n_freq)
