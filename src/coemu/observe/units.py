"""The unit conversions of :mod:`coemu.physics.units` for numpy arrays (the FITS writer's edge).

The conversions themselves (Jy/pixel, Jy/beam, K on the Planck or
Rayleigh-Jeans scale, the beam's kernel) are written once, in torch, in
:mod:`coemu.physics.units`; the names here take and return numpy arrays
(float64) and radio-beam :class:`~radio_beam.Beam` objects.
"""

from __future__ import annotations

import numpy as np
import torch
from astropy import units as u
from radio_beam import Beam

from coemu.physics import units as physics
from coemu.physics.units import (
    INTENSITY_UNIT,
    JANSKY,
    TEMPERATURE_SCALES,
    UNITS,
    BeamKernel,
    make_beam,
    pixel_arcsec,
    pixel_solid_angle,
)

__all__ = [
    "INTENSITY_UNIT",
    "JANSKY",
    "TEMPERATURE_SCALES",
    "UNITS",
    "BeamKernel",
    "brightness_temperature",
    "intensity_of_temperature",
    "jy_per_beam_to_kelvin",
    "kelvin_to_jy_per_beam",
    "make_beam",
    "pixel_arcsec",
    "pixel_solid_angle",
]


def _tensor(values) -> torch.Tensor:
    return torch.from_numpy(np.array(values, dtype=np.float64))


def brightness_temperature(intensity: np.ndarray, frequency: np.ndarray, scale: str) -> np.ndarray:
    """K of ``intensity`` (W m-2 Hz-1 sr-1, channels on axis 0) at ``frequency`` (Hz, (F,))."""
    return physics.brightness_temperature(_tensor(intensity), _tensor(frequency), scale).numpy()


def intensity_of_temperature(temperature: np.ndarray, frequency: np.ndarray, scale: str) -> np.ndarray:
    """The inverse of :func:`brightness_temperature`: W m-2 Hz-1 sr-1 of ``temperature`` (K)."""
    return physics.intensity_of_temperature(_tensor(temperature), _tensor(frequency), scale).numpy()


def jy_per_beam_to_kelvin(
    jy_per_beam: np.ndarray, frequency: np.ndarray, beam: Beam, scale: str
) -> np.ndarray:
    """K of a Jy/beam cube (the beam-averaged intensity; channels on axis 0, ``frequency`` Hz)."""
    return brightness_temperature(np.asarray(jy_per_beam) * JANSKY / beam.sr.to_value(u.sr), frequency, scale)


def kelvin_to_jy_per_beam(kelvin: np.ndarray, frequency: np.ndarray, beam: Beam, scale: str) -> np.ndarray:
    """Jy/beam of a brightness-temperature cube (K; channels on axis 0, ``frequency`` Hz)."""
    return intensity_of_temperature(kelvin, frequency, scale) * beam.sr.to_value(u.sr) / JANSKY
