"""From specific intensity to what an observer measures: Jy/pixel, Jy/beam, brightness temperature.

* Jy/pixel = I (W m-2 Hz-1 sr-1) x the pixel's solid angle (sr) x 1e26, with
  the pixel ``cell_size / distance`` radians on a side (small angles).
* Jy/beam: each channel of the Jy/pixel map convolved with the Gaussian
  beam's kernel (radio-beam, normalised to a sum of 1, so the flux density
  summed over pixels is kept), times the beam's solid angle over the pixel's.
  The map is first padded with empty sky by the kernel's half width on every
  side, so that no flux is lost at the edges: a beam-convolved cube is
  larger than the model's cube by that margin.
* K: the brightness temperature of the intensity per pixel (no beam) or per
  beam, Planck (``T = (h nu / k) / ln(1 + 2 h nu^3 / (c^2 I))``, exact) or
  Rayleigh-Jeans (``T = c^2 I / (2 k nu^2)``), each with its inverse.
"""

from __future__ import annotations

import math

import numpy as np
from astropy import units as u
from astropy.convolution import convolve_fft
from radio_beam import Beam

from coemu.constants import BOLTZMANN, PLANCK, SPEED_OF_LIGHT
from coemu.io.errors import CoemuInputError
from coemu.rt.spectral import planck

JANSKY = 1.0e-26  # W m-2 Hz-1
UNITS = ("Jy/pixel", "Jy/beam", "K")
TEMPERATURE_SCALES = ("planck", "rayleigh-jeans")


def pixel_solid_angle(cell_size: float, distance_pc: float) -> float:
    """sr of a pixel ``cell_size`` (m) on a side at ``distance_pc``."""
    return (cell_size / (distance_pc * u.pc).to_value(u.m)) ** 2


def pixel_arcsec(cell_size: float, distance_pc: float) -> float:
    """The pixel's side in arcsec."""
    return math.degrees(cell_size / (distance_pc * u.pc).to_value(u.m)) * 3600.0


def make_beam(major: float, minor: float | None, pa: float, pixel: float) -> Beam:
    """The Gaussian beam (FWHM in arcsec, PA in degrees east of north).

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


def pad_width(kernel) -> int:
    """Pixels of empty sky added on each side before convolution: the kernel's half width."""
    return max(kernel.shape) // 2 + 1


def convolve(jy_per_pixel: np.ndarray, beam: Beam, pixel: float) -> np.ndarray:
    """(F, Y, X) Jy/pixel (north up, east left: the FITS array) convolved with ``beam``, padded.

    Returns:
        (F, Y + 2p, X + 2p) Jy/beam, ``p`` = :func:`pad_width`.
    """
    kernel = beam.as_kernel(pixel * u.arcsec)
    p = pad_width(kernel)
    padded = np.pad(jy_per_pixel.astype(np.float64), ((0, 0), (p, p), (p, p)))
    out = np.stack(
        [convolve_fft(ch, kernel, normalize_kernel=True, boundary="fill", fill_value=0.0) for ch in padded]
    )
    return out * (beam.sr.to_value(u.sr) / (pixel * u.arcsec).to_value(u.rad) ** 2)


def brightness_temperature(intensity: np.ndarray, frequency: np.ndarray, scale: str) -> np.ndarray:
    """K of ``intensity`` (W m-2 Hz-1 sr-1, channels on axis 0) at ``frequency`` (Hz, (F,))."""
    nu = np.asarray(frequency, dtype=np.float64).reshape(-1, *([1] * (np.ndim(intensity) - 1)))
    i = np.asarray(intensity, dtype=np.float64)
    if scale == "rayleigh-jeans":
        return SPEED_OF_LIGHT**2 * i / (2.0 * BOLTZMANN * nu**2)
    if scale == "planck":
        with np.errstate(divide="ignore"):
            x = 2.0 * PLANCK * nu**3 / (SPEED_OF_LIGHT**2 * np.maximum(i, 0.0))
            return np.where(i > 0, PLANCK * nu / BOLTZMANN / np.log1p(x), 0.0)
    raise CoemuInputError(
        None, "temperature_scale", f"'{scale}' is not one of {', '.join(TEMPERATURE_SCALES)}"
    )


def intensity_of_temperature(temperature: np.ndarray, frequency: np.ndarray, scale: str) -> np.ndarray:
    """The inverse of :func:`brightness_temperature`: W m-2 Hz-1 sr-1 of ``temperature`` (K)."""
    nu = np.asarray(frequency, dtype=np.float64).reshape(-1, *([1] * (np.ndim(temperature) - 1)))
    t = np.asarray(temperature, dtype=np.float64)
    if scale == "rayleigh-jeans":
        return 2.0 * BOLTZMANN * nu**2 * t / SPEED_OF_LIGHT**2
    if scale == "planck":
        with np.errstate(divide="ignore", over="ignore"):
            return np.where(t > 0, planck(nu, np.where(t > 0, t, 1.0)), 0.0)
    raise CoemuInputError(
        None, "temperature_scale", f"'{scale}' is not one of {', '.join(TEMPERATURE_SCALES)}"
    )


def jy_per_beam_to_kelvin(
    jy_per_beam: np.ndarray, frequency: np.ndarray, beam: Beam, scale: str
) -> np.ndarray:
    """K of a Jy/beam cube (the beam-averaged intensity)."""
    return brightness_temperature(jy_per_beam * JANSKY / beam.sr.to_value(u.sr), frequency, scale)


def kelvin_to_jy_per_beam(kelvin: np.ndarray, frequency: np.ndarray, beam: Beam, scale: str) -> np.ndarray:
    """Jy/beam of a brightness-temperature cube (K)."""
    return intensity_of_temperature(kelvin, frequency, scale) * beam.sr.to_value(u.sr) / JANSKY
