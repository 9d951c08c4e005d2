"""The Gaussian likelihood of an observed cube given its model, for white or beam-correlated noise.

``white``: independent pixels of rms ``sigma``.

``beam``: the noise of :func:`coemu.observe.fits.observation` with a beam,
white noise convolved (periodically) with the beam's normalised kernel ``k``
and rescaled to the rms ``sigma`` per pixel, as an interferometer's noise is
correlated on the beam's scale. Such noise is stationary with the per-mode
variance ``s_f = sigma^2 |K_f|^2 / sum(k^2)`` (``K`` the DFT of the kernel on
the map), so the exact log-likelihood of each channel's residual ``r`` is

    ln L = -1/2 sum_f |R_f|^2 / (N s_f) - 1/2 sum_f ln(2 pi s_f),

``R`` the unnormalised 2D DFT of ``r`` and ``N`` the pixels per channel. A
floor of 1e-12 max(s_f) keeps the modes the beam all but removes finite.
Treating beam-correlated pixels as independent would count each beam's
information about ``N_beam`` times and give posteriors far too narrow.

Batches: a model (B, F, Y, X) gives ln L (B,), one per cube (a single cube
(F, Y, X) still a 0-d tensor, computed exactly as before).
:class:`BatchedLogLikelihood` is the callable a nested sampler takes: physical
parameter vectors (N, D) -> ln L (N,), through the forward model's batched
path in sub-batches.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch

NOISE_MODELS = ("white", "beam")
#: Relative floor on the per-mode noise variance.
MODE_FLOOR = 1.0e-12
#: ln L of a parameter vector without a model (its cube leaves the solver's temperature range,
#: or its ln L is otherwise not finite): a large negative, finite number, below any real ln L, and
#: not -inf since some nested samplers assert a finite ln L.
LOG_LIKELIHOOD_FLOOR = -1.0e100
#: Memory (bytes, as :func:`bytes_per_vector` estimates it) a sub-batch of
#: :class:`BatchedLogLikelihood` may take by default: 251 vectors at 12^3 cells x 11 channels,
#: 122 at 16^3 x 11, 37 at 24^3 x 15, about where the time per vector stopped falling in
#: bench/likelihood.py (larger batches were no faster on the CPU, and slower at 24^3).
BATCH_MEMORY = 256 << 20
#: The most vectors per sub-batch by default.
MAX_BATCH = 256
#: :func:`bytes_per_vector`'s model: items (of the forward model's dtype) per cell sub-point
#: and per padded image pixel and channel.
BYTES_PER_POINT = 32
BYTES_PER_PIXEL = 4


def _total(x: torch.Tensor) -> torch.Tensor:
    """The sum over the cube's (F, Y, X) axes: 0-d for one cube (``x.sum()``, as always), (B,)
    for a batch (..., F, Y, X)."""
    return x.sum() if x.dim() == 3 else x.sum(dim=(-3, -2, -1))


class GaussianLikelihood:
    """ln L(model) for the observed ``data`` (F, Y, X) with noise rms ``sigma`` per pixel.

    A model (F, Y, X) gives a 0-d tensor, a batch (B, F, Y, X) a (B,) tensor.

    Args:
        kernel: the beam's normalised kernel (2D) for ``beam`` noise; None for white noise.
    """

    @classmethod
    def of(cls, obs, noise_model: str = "auto", dtype=torch.float64) -> GaussianLikelihood:
        """The likelihood of the observation ``obs`` (:class:`coemu.fit.data.Observation`, its
        data and noise rms) for ``noise_model``: ``white``, ``beam``, or ``auto`` (``beam``
        when the observation has a beam, else ``white``).

        Raises:
            CoemuInputError: ``beam`` noise for an observation without a beam.
        """
        from coemu.io.errors import CoemuInputError

        if noise_model == "auto":
            noise_model = "beam" if obs.beam is not None else "white"
        if noise_model not in NOISE_MODELS:
            raise CoemuInputError(
                None, "fit.noise_model", f"'{noise_model}' is not one of auto, {', '.join(NOISE_MODELS)}"
            )
        if noise_model == "beam" and obs.beam is None:
            raise CoemuInputError(
                obs.path, "BMAJ", "fit.noise_model is beam, but the observation has no beam"
            )
        kernel = obs.beam_kernel().kernel if noise_model == "beam" else None
        return cls(obs.data, obs.noise, kernel, dtype)

    def __init__(self, data: np.ndarray, sigma: float, kernel: np.ndarray | None = None, dtype=torch.float64):
        self.data = torch.as_tensor(np.asarray(data), dtype=dtype)
        self.sigma = float(sigma)
        self.noise_model = "white" if kernel is None else "beam"
        n_chan, ny, nx = self.data.shape
        self.pixels = ny * nx
        if kernel is None:
            self.variance = None
            self.norm = -0.5 * self.data.numel() * math.log(2 * math.pi * self.sigma**2)
            return
        kh, kw = kernel.shape
        if kh > ny or kw > nx:
            raise ValueError(f"beam kernel {kernel.shape} larger than the map {(ny, nx)}")
        embedded = np.zeros((ny, nx))
        embedded[:kh, :kw] = kernel  # |DFT|^2 does not depend on where the kernel sits
        power = np.abs(np.fft.fft2(embedded)) ** 2 / float((kernel**2).sum())
        variance = self.sigma**2 * power
        variance = variance + MODE_FLOOR * variance.max()
        self.variance = torch.as_tensor(variance, dtype=dtype)
        self.norm = -0.5 * n_chan * float(np.log(2 * math.pi * variance).sum())

    def chi2(self, model: torch.Tensor, lowpass: float | None = None) -> torch.Tensor:
        """The residual's chi^2 (whitened for beam noise): about the number of pixels at the truth
        (0-d for a model (F, Y, X), (B,) for a batch (B, F, Y, X)).

        Args:
            lowpass: a cut-off (cycles per pixel): each mode weighted by ``exp(-(f / cut)^2)``, a
                smoother objective with fewer local optima for the MAP search's first stages
                (not a likelihood).
        """
        r = self.data - model
        if self.variance is None and lowpass is None:
            return _total(r**2) / self.sigma**2
        spectrum = torch.fft.fft2(r)
        power = spectrum.real**2 + spectrum.imag**2
        variance = self.sigma**2 if self.variance is None else self.variance
        if lowpass is not None:
            fy = torch.fft.fftfreq(r.shape[-2], dtype=r.dtype).view(-1, 1)
            fx = torch.fft.fftfreq(r.shape[-1], dtype=r.dtype).view(1, -1)
            power = power * torch.exp(-(fx**2 + fy**2) / lowpass**2)
        return _total(power / (self.pixels * variance))

    def __call__(self, model: torch.Tensor, lowpass: float | None = None) -> torch.Tensor:
        return -0.5 * self.chi2(model, lowpass) + self.norm


def default_max_batch(forward, memory: int = BATCH_MEMORY) -> int:
    """Vectors per sub-batch of ``forward`` (a :class:`coemu.fit.forward.ForwardModel`) in about
    ``memory`` bytes, at most :data:`MAX_BATCH`: :func:`bytes_per_vector` each."""
    return int(max(1, min(MAX_BATCH, memory // bytes_per_vector(forward))))


def bytes_per_vector(forward) -> int:
    """The peak memory (bytes) one parameter vector adds to a batched evaluation without
    gradients: mostly the wind's temporaries at the cell sub-points, then the images with the
    beam's padding and FFTs. Measured (growth of the peak resident memory over batches of 64 and
    256, CPU, float64, 0.1" beam at 150 pc): 0.5 MB at 12^3 cells x 11 channels, 0.9 MB at 16^3
    x 11, 2.9 MB at 24^3 x 15; with 2^3 sub-points per cell 3.0 MB at 12^3 x 11, 8.1 MB at 16^3
    x 11. The model, :data:`BYTES_PER_POINT` items per sub-point and :data:`BYTES_PER_PIXEL`
    per padded image pixel times a margin of 1.5, is 1.6-2.4 times those."""
    obs, s3 = forward.obs, forward.supersample**3
    item = torch.finfo(forward.dtype).bits // 8
    points = obs.grid**3 * s3
    side = obs.grid + 2 * obs.pad
    images = len(forward.frequencies) * side**2
    return int(1.5 * item * (BYTES_PER_POINT * points + BYTES_PER_PIXEL * images))


class BatchedLogLikelihood:
    """ln L of many parameter vectors at once, for samplers (nested sampling):
    ``theta`` (N, D) -> ln L (N,) float64.

    ``theta``'s columns are the physical values of ``family.free`` in that order, in the units
    of :data:`coemu.fit.family.UNITS` (the values :meth:`coemu.fit.family.Prior.value` gives the
    MAP and NUTS: e.g. the mass-loss rate in Msun/yr, not its log; the inclination and the
    position angle in degrees, the position angle a plain angle east of north, any real, not
    the 2-vector NUTS samples); the family's fixed values fill in the rest. ln L(theta) is the
    single path's ``likelihood(forward(params))`` at the same values (to rounding, ~1e-14).

    Evaluated under ``torch.inference_mode()`` (no gradients) in sub-batches of at most
    ``max_batch`` vectors, one batched forward call each. A vector whose cube leaves the
    solver's temperature range, or whose ln L is otherwise not finite, gets
    :data:`LOG_LIKELIHOOD_FLOOR` (the others in its batch are unaffected; counted in
    ``n_floored``).

    Args:
        family: a :class:`coemu.fit.family.Family`.
        forward: the :class:`coemu.fit.forward.ForwardModel` of ``family``.
        likelihood: a model (B, F, Y, X) -> ln L (B,) (a :class:`GaussianLikelihood`).
        max_batch: vectors per forward call (default: :func:`default_max_batch`, from
            ``memory`` bytes).

    Attributes:
        n_calls: calls so far. n_vectors: vectors evaluated. n_batches: forward calls.
        n_floored: vectors given the floor. seconds: wall time spent in calls.
    """

    def __init__(self, family, forward, likelihood, max_batch: int | None = None, memory: int = BATCH_MEMORY):
        if max_batch is not None and max_batch < 1:
            raise ValueError(f"max_batch {max_batch}: at least 1")
        self.family, self.forward, self.likelihood = family, forward, likelihood
        self.max_batch = default_max_batch(forward, memory) if max_batch is None else int(max_batch)
        self.n_calls = self.n_vectors = self.n_batches = self.n_floored = 0
        self.seconds = 0.0

    @property
    def dimension(self) -> int:
        """D, the free parameters."""
        return len(self.family.free)

    def parameters(self, theta: torch.Tensor) -> dict[str, torch.Tensor]:
        """The forward model's parameters of ``theta`` (B, D): each free one a (B,) tensor, the
        fixed ones 0-d (as :meth:`coemu.fit.family.Family.parameters`)."""
        dtype = self.forward.dtype
        out = {k: torch.tensor(v, dtype=dtype) for k, v in self.family.fixed.items()}
        for j, name in enumerate(self.family.free):
            out[name] = theta[:, j].to(dtype)
        return out

    def __call__(self, theta) -> np.ndarray:
        """ln L (N,) float64 of the parameter vectors ``theta`` (N, D) (see the class)."""
        t0 = time.perf_counter()
        theta = np.asarray(theta, dtype=np.float64)
        if theta.ndim != 2 or theta.shape[1] != self.dimension:
            raise ValueError(
                f"theta of shape {theta.shape}: (N, {self.dimension}) values of {', '.join(self.family.free)}"
            )
        out = np.empty(len(theta), dtype=np.float64)
        with torch.inference_mode():
            for start in range(0, len(theta), self.max_batch):
                chunk = torch.from_numpy(np.ascontiguousarray(theta[start : start + self.max_batch]))
                ln_l = self.likelihood(self.forward(self.parameters(chunk)))
                out[start : start + len(chunk)] = ln_l.to(torch.float64).numpy()
                self.n_batches += 1
        bad = ~np.isfinite(out)
        out[bad] = LOG_LIKELIHOOD_FLOOR
        self.n_floored += int(bad.sum())
        self.n_calls += 1
        self.n_vectors += len(theta)
        self.seconds += time.perf_counter() - t0
        return out
