"""Mock observations: a family's model at known parameters, through the observation's FITS writer.

The model's intensity (:meth:`coemu.fit.forward.ForwardModel.intensity`, the
same forward model a fit uses) goes through
:func:`coemu.observe.fits.observation`, which applies the units, the beam
and the noise exactly as for any synthetic observation; the noise rms is the
peak of the noise-free cube over ``snr``. A fit of such a mock is well
specified: what it tests is the sampler, the likelihood and the evidence.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from coemu.fit.data import Observation
from coemu.fit.family import Family
from coemu.fit.forward import ForwardModel
from coemu.observe.fits import ObservationSettings, observation, write_fits
from coemu.rt.lamda import Line
from coemu.rt.spectral import channel_velocities


def template(grid: int, cell_size: float, channels: int, spacing: float, settings: ObservationSettings, line):
    """An :class:`Observation` with no data yet: the geometry, channels, unit and beam a mock has."""
    from astropy import units as u

    from coemu.observe.units import pad_width

    beam = settings.check(cell_size)
    pad = 0 if beam is None else pad_width(beam.as_kernel(_pixel(cell_size, settings) * u.arcsec))
    beam_tuple = None
    if beam is not None:
        beam_tuple = (beam.major.to_value(u.arcsec), beam.minor.to_value(u.arcsec), beam.pa.to_value(u.deg))
    return Observation(
        "<mock>",
        np.zeros((channels, grid + 2 * pad, grid + 2 * pad)),
        channel_velocities(channels, spacing),
        line.frequency,
        cell_size,
        settings.distance,
        settings.unit,
        beam_tuple,
        pad,
        grid,
        1.0,
        "given",
        {},
    )


def _pixel(cell_size: float, settings: ObservationSettings) -> float:
    from coemu.observe.units import pixel_arcsec

    return pixel_arcsec(cell_size, settings.distance)


def write_mock(
    path: str | Path,
    family: Family,
    values: dict[str, float],
    line: Line,
    obs: Observation,
    settings: ObservationSettings,
    snr: float,
    seed: int,
    supersample: int = 1,
) -> float:
    """Write the mock FITS cube of ``family`` at ``values``; return the noise rms (peak / ``snr``)."""
    forward = ForwardModel(obs, family, line, supersample=supersample)
    params = {k: torch.tensor(float(values[k]), dtype=torch.float64) for k in (*family.fixed, *family.free)}
    with torch.no_grad():
        intensity = forward.intensity(params).numpy()
    velocities = obs.offsets + 1e3 * settings.v_sys
    clean = observation(intensity, velocities, line.frequency, obs.cell_size, replace(settings, noise=None))
    rms = float(np.max(clean.data)) / snr
    noisy = observation(
        intensity,
        velocities,
        line.frequency,
        obs.cell_size,
        replace(settings, noise=rms, noise_seed=seed),
        meta={"OBJECT": f"mock {family.name}", "SNR": (snr, "peak / noise rms")},
    )
    write_fits(noisy, path)
    return rms
