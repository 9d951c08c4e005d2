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
"""

from __future__ import annotations

import math

import numpy as np
import torch

NOISE_MODELS = ("white", "beam")
#: Relative floor on the per-mode noise variance.
MODE_FLOOR = 1.0e-12


class GaussianLikelihood:
    """ln L(model) for the observed ``data`` (F, Y, X) with noise rms ``sigma`` per pixel.

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
        """The residual's chi^2 (whitened for beam noise): about the number of pixels at the truth.

        Args:
            lowpass: a cut-off (cycles per pixel): each mode weighted by ``exp(-(f / cut)^2)``, a
                smoother objective with fewer local optima for the MAP search's first stages
                (not a likelihood).
        """
        r = self.data - model
        if self.variance is None and lowpass is None:
            return (r**2).sum() / self.sigma**2
        spectrum = torch.fft.fft2(r)
        power = spectrum.real**2 + spectrum.imag**2
        variance = self.sigma**2 if self.variance is None else self.variance
        if lowpass is not None:
            fy = torch.fft.fftfreq(r.shape[-2], dtype=r.dtype).view(-1, 1)
            fx = torch.fft.fftfreq(r.shape[-1], dtype=r.dtype).view(1, -1)
            power = power * torch.exp(-(fx**2 + fy**2) / lowpass**2)
        return (power / (self.pixels * variance)).sum()

    def __call__(self, model: torch.Tensor, lowpass: float | None = None) -> torch.Tensor:
        return -0.5 * self.chi2(model, lowpass) + self.norm
