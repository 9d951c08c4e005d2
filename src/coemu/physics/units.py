"""From specific intensity to what an observer measures: Jy/pixel, Jy/beam, brightness temperature.

* Jy/pixel = I (W m-2 Hz-1 sr-1) x the pixel's solid angle (sr) / 1e-26, with
  the pixel ``cell_size / distance`` radians on a side (small angles).
* The beam: the Gaussian beam's radio-beam kernel on the pixel grid,
  normalised to a sum of 1 (so the flux density summed over pixels is kept),
  of odd size (:class:`BeamKernel`). Each channel of the Jy/pixel map is first
  padded with empty sky by :attr:`BeamKernel.pad` pixels on every side (more
  than the kernel's half width: no flux is lost at the edges, so a
  beam-convolved cube is larger than the model's cube by that margin), then
  convolved as a product of DFTs: periodic on the padded map, which is the
  linear convolution exactly since the margin is empty.
* Jy/beam: the convolved Jy/pixel map times the beam's solid angle over the
  pixel's.
* K: the brightness temperature of the intensity per pixel (no beam) or of the
  beam-averaged intensity, Planck (``T = (h nu / k) / ln(1 + 2 h nu^3 / (c^2
  I))``, exact) or Rayleigh-Jeans (``T = c^2 I / (2 k nu^2)``), each with its
  inverse.

:func:`convert_intensity` is the whole chain, used by the observation writer
(:func:`coemu.observe.fits.observation`) and by the fit's forward model
(:class:`coemu.fit.forward.ForwardModel`). Arrays are torch tensors (CPU or
CUDA, autograd kept); images are (..., Y, X) and spectral cubes (F, Y, X),
channels first; :func:`convert_intensity` also takes a batch of cubes (..., F, Y, X)
(channels third from last, its ``frequency`` (F,) broadcast as (F, 1, 1)).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from astropy import units as u
from radio_beam import Beam

from coemu.constants import BOLTZMANN, PLANCK, SPEED_OF_LIGHT
from coemu.io.errors import CoemuInputError

JANSKY = 1.0e-26  # W m-2 Hz-1
#: The units of an observation cube.
UNITS = ("Jy/pixel", "Jy/beam", "K")
#: The unit of the specific intensity (the image files'), no conversion.
INTENSITY_UNIT = "W m-2 Hz-1 sr-1"
TEMPERATURE_SCALES = ("planck", "rayleigh-jeans")
PARSEC = (1.0 * u.pc).to_value(u.m)


def pixel_solid_angle(cell_size: float, distance_pc: float) -> float:
    """sr of a pixel ``cell_size`` (m) on a side at ``distance_pc`` (pc)."""
    return (cell_size / (distance_pc * PARSEC)) ** 2


def pixel_arcsec(cell_size: float, distance_pc: float) -> float:
    """The side (arcsec) of a pixel ``cell_size`` (m) on a side at ``distance_pc`` (pc)."""
    return math.degrees(cell_size / (distance_pc * PARSEC)) * 3600.0


def make_beam(major: float, minor: float | None, pa: float, pixel: float) -> Beam:
    """The Gaussian beam (FWHM in arcsec, minor None = major; PA in degrees east of north).

    Raises:
        CoemuInputError: a beam axis that is not positive, a minor axis larger than the major,
            or a beam whose minor axis is smaller than a pixel (``pixel``, arcsec: it would be
            sampled by less than one pixel).
    """
    minor = major if minor is None else minor
    if not (major > 0 and minor > 0):
        raise CoemuInputError(None, "beam_major", f"beam axes {major}, {minor} arcsec must be > 0")
    if minor > major:
        raise CoemuInputError(None, "beam_minor", f"{minor} arcsec is larger than beam_major {major}")
    if minor < pixel:
        raise CoemuInputError(
            None,
            "beam_minor",
            f"{minor} arcsec is smaller than a pixel ({pixel:.4g} arcsec at this distance)",
        )
    return Beam(major=major * u.arcsec, minor=minor * u.arcsec, pa=pa * u.deg)


@dataclass(frozen=True, eq=False)
class BeamKernel:
    """A Gaussian beam on the pixel grid.

    Attributes:
        kernel: (KY, KX) float64, odd sizes, sum 1 (north up, east left: the FITS array's
            orientation, as radio-beam draws it).
        solid_angle: the beam's, sr.
    """

    kernel: np.ndarray
    solid_angle: float
    _spectra: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def of(cls, beam: Beam, pixel: float) -> BeamKernel:
        """The kernel of a radio-beam ``beam`` on pixels ``pixel`` arcsec on a side."""
        kernel = np.asarray(beam.as_kernel(pixel * u.arcsec).array, dtype=np.float64)
        if kernel.shape[0] % 2 == 0 or kernel.shape[1] % 2 == 0:
            raise ValueError(f"beam kernel of even size {kernel.shape}")
        return cls(kernel / kernel.sum(), float(beam.sr.to_value(u.sr)))

    @classmethod
    def make(cls, major: float, minor: float | None, pa: float, pixel: float) -> BeamKernel:
        """:func:`make_beam` (arcsec, arcsec, degrees; checked) on pixels ``pixel`` arcsec."""
        return cls.of(make_beam(major, minor, pa, pixel), pixel)

    @property
    def pad(self) -> int:
        """Pixels of empty sky added on each side before convolution: over the half width."""
        return max(self.kernel.shape) // 2 + 1

    def spectrum(self, shape: tuple[int, int], dtype=torch.float64, device=None) -> torch.Tensor:
        """The real DFT (``rfft2``) of the kernel centred on pixel (0, 0) of a (Y, X) ``shape``
        map (cached per shape, dtype and device)."""
        key = (tuple(shape), dtype, str(device))
        if key not in self._spectra:
            ky, kx = self.kernel.shape
            if ky > shape[0] or kx > shape[1]:
                raise ValueError(f"beam kernel {self.kernel.shape} larger than the map {tuple(shape)}")
            embedded = np.zeros(shape)
            embedded[:ky, :kx] = self.kernel
            embedded = np.roll(embedded, (-(ky // 2), -(kx // 2)), axis=(0, 1))
            self._spectra[key] = torch.fft.rfft2(torch.as_tensor(embedded, dtype=dtype, device=device))
        return self._spectra[key]

    def convolve_periodic(self, maps: torch.Tensor) -> torch.Tensor:
        """``maps`` (..., Y, X) convolved with the kernel, periodically (same shape)."""
        shape = tuple(maps.shape[-2:])
        spectrum = self.spectrum(shape, maps.dtype, maps.device)
        return torch.fft.irfft2(torch.fft.rfft2(maps) * spectrum, s=shape)

    def convolve(self, maps: torch.Tensor) -> torch.Tensor:
        """``maps`` (..., Y, X) padded by :attr:`pad` empty pixels on each side and convolved:
        (..., Y + 2 pad, X + 2 pad), the linear convolution (nothing wraps round)."""
        p = self.pad
        return self.convolve_periodic(torch.nn.functional.pad(maps, (p, p, p, p)))


def _check_scale(scale: str) -> None:
    if scale not in TEMPERATURE_SCALES:
        raise CoemuInputError(
            None, "temperature_scale", f"'{scale}' is not one of {', '.join(TEMPERATURE_SCALES)}"
        )


def _channels(frequency, like: torch.Tensor, channel_axis: int = 0) -> torch.Tensor:
    """The (F,) frequencies (Hz) shaped to broadcast over ``like``: (F, 1, ..., 1) for channels
    first (``channel_axis`` 0, ``like`` (F, ...)); for a negative ``channel_axis`` -k, (F, 1 x
    (k - 1)), e.g. (F, 1, 1) against a batch of cubes (..., F, Y, X) for -3 (a (F, 1, 1, 1)
    shape there would broadcast against the batch axis, silently when B == F)."""
    nu = torch.as_tensor(frequency, dtype=like.dtype, device=like.device)
    if channel_axis < 0:
        return nu.reshape(-1, *([1] * (-channel_axis - 1)))
    if channel_axis != 0:
        raise ValueError(f"channel_axis {channel_axis}: 0 (channels first) or negative")
    return nu.reshape(-1, *([1] * (like.dim() - 1)))


def brightness_temperature(
    intensity: torch.Tensor, frequency, scale: str, channel_axis: int = 0
) -> torch.Tensor:
    """K of ``intensity`` (W m-2 Hz-1 sr-1, (F, ...), channels first; or with the channels on
    a negative ``channel_axis``, e.g. -3 for (..., F, Y, X)) at ``frequency`` (Hz, (F,)); 0 K
    where the intensity is not positive on the Planck scale."""
    _check_scale(scale)
    nu = _channels(frequency, intensity, channel_axis)
    if scale == "rayleigh-jeans":
        return SPEED_OF_LIGHT**2 * intensity / (2.0 * BOLTZMANN * nu**2)
    positive = intensity > 0
    safe = torch.where(positive, intensity, torch.ones_like(intensity))
    x = 2.0 * PLANCK * nu**3 / (SPEED_OF_LIGHT**2 * safe)
    return torch.where(positive, PLANCK * nu / BOLTZMANN / torch.log1p(x), torch.zeros_like(intensity))


def intensity_of_temperature(
    temperature: torch.Tensor, frequency, scale: str, channel_axis: int = 0
) -> torch.Tensor:
    """The inverse of :func:`brightness_temperature`: W m-2 Hz-1 sr-1 of ``temperature`` (K,
    (F, ...), or channels on ``channel_axis`` as there) at ``frequency`` (Hz, (F,)); 0 where
    the temperature is not positive (Planck)."""
    _check_scale(scale)
    nu = _channels(frequency, temperature, channel_axis)
    if scale == "rayleigh-jeans":
        return 2.0 * BOLTZMANN * nu**2 * temperature / SPEED_OF_LIGHT**2
    positive = temperature > 0
    safe = torch.where(positive, temperature, torch.ones_like(temperature))
    planck = 2.0 * PLANCK * nu**3 / SPEED_OF_LIGHT**2 / torch.expm1(PLANCK * nu / (BOLTZMANN * safe))
    return torch.where(positive, planck, torch.zeros_like(temperature))


def convert_intensity(
    intensity: torch.Tensor,
    frequency,
    unit: str,
    pixel_sr: float,
    beam: BeamKernel | None = None,
    scale: str = "planck",
) -> torch.Tensor:
    """A sky cube of specific intensity in an observation's ``unit``.

    Args:
        intensity: (F, Y, X) W m-2 Hz-1 sr-1 (the FITS array's orientation); or a batch
            (..., F, Y, X) (the result then (..., F, Y', X')).
        frequency: (F,) the channels' frequencies, Hz (for K).
        unit: :data:`UNITS` or :data:`INTENSITY_UNIT` (returned as it is, no beam).
        pixel_sr: the pixel's solid angle, sr (:func:`pixel_solid_angle`).
        beam: convolve with it (then the result is (F, Y + 2p, X + 2p), ``p`` =
            :attr:`BeamKernel.pad`); None: no beam (not for Jy/beam).
        scale: the brightness temperature's, :data:`TEMPERATURE_SCALES` (for K).

    Raises:
        CoemuInputError: an unknown unit or scale, Jy/beam without a beam, or a beam on the
            intensity.
    """
    if unit == INTENSITY_UNIT and beam is None:
        return intensity
    if unit not in UNITS:
        raise CoemuInputError(None, "unit", f"'{unit}' is not one of {', '.join(UNITS)}")
    if unit == "Jy/beam" and beam is None:
        raise CoemuInputError(None, "beam_major", "unit Jy/beam needs a beam")
    jy_per_pixel = intensity * (pixel_sr / JANSKY)
    if beam is not None:
        jy_per_pixel = beam.convolve(jy_per_pixel)  # still Jy/pixel, of the beam-smoothed sky
    if unit == "Jy/pixel":
        return jy_per_pixel
    if unit == "Jy/beam":
        return jy_per_pixel * (beam.solid_angle / pixel_sr)
    return brightness_temperature(jy_per_pixel * (JANSKY / pixel_sr), frequency, scale, channel_axis=-3)
