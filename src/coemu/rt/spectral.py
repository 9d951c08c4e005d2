"""The spectral axis: channels at velocity offsets from the line centre.

Channel ``k`` sits at velocity ``v_k = (k - (n - 1) / 2) * dv`` (radio
convention: ``nu_k = nu0 (1 - v_k / c)``), so the default 7 channels of
300 m s-1 span -900..900 m s-1 and are 0.000230698 GHz apart at 230.538 GHz
(the paper's bins). Positive velocity = red-shifted = lower frequency.
"""

from __future__ import annotations

import numpy as np

from coemu.constants import BOLTZMANN, PLANCK, SPEED_OF_LIGHT

CMB_TEMPERATURE = 2.72548  # K (Fixsen 2009)


def channel_velocities(n_channels: int = 7, spacing: float = 300.0) -> np.ndarray:
    """(n_channels,) velocity offsets, m s-1, symmetric about 0."""
    if n_channels < 1 or spacing <= 0:
        raise ValueError(f"need n_channels >= 1 and spacing > 0, got {n_channels}, {spacing}")
    return (np.arange(n_channels) - (n_channels - 1) / 2) * spacing


def velocity_to_frequency(velocity, rest_frequency: float) -> np.ndarray:
    """Observed frequencies (Hz, float64) of velocity offsets (m s-1, radio convention)."""
    return rest_frequency * (1.0 - np.asarray(velocity, dtype=np.float64) / SPEED_OF_LIGHT)


def channel_frequencies(rest_frequency: float, n_channels: int = 7, spacing: float = 300.0) -> np.ndarray:
    """(n_channels,) observed frequencies, Hz (float64), for velocity offsets of ``spacing`` m s-1."""
    return velocity_to_frequency(channel_velocities(n_channels, spacing), rest_frequency)


def frequency_to_velocity(frequency: np.ndarray, rest_frequency: float) -> np.ndarray:
    """Velocity offsets (m s-1, radio convention) of observed frequencies (inverse of channel_frequencies)."""
    return (1.0 - np.asarray(frequency) / rest_frequency) * SPEED_OF_LIGHT


def planck(frequency: np.ndarray, temperature: float) -> np.ndarray:
    """Black-body intensity B_nu(T), W m-2 Hz-1 sr-1."""
    x = PLANCK * frequency / (BOLTZMANN * temperature)
    return 2.0 * PLANCK * frequency**3 / SPEED_OF_LIGHT**2 / np.expm1(x)
