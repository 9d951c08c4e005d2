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
from coemu.physics.units import BeamKernel, pixel_arcsec
from coemu.rt.lamda import Line
from coemu.rt.spectral import channel_velocities


def template(grid: int, cell_size: float, channels: int, spacing: float, settings: ObservationSettings, line):
    """An :class:`Observation` with no data yet: the geometry, channels, unit and beam a mock has.

    Args:
        grid: the model cube's cells per axis. cell_size: m. channels: how many, ``spacing``
            m/s apart, centred on the line. settings: the observation's (distance, unit, beam).
    """
    from astropy import units as u

    beam = settings.check(cell_size)
    pad, beam_axes = 0, None
    if beam is not None:
        pad = BeamKernel.of(beam, pixel_arcsec(cell_size, settings.distance)).pad
        beam_axes = (beam.major.to_value(u.arcsec), beam.minor.to_value(u.arcsec), beam.pa.to_value(u.deg))
    return Observation(
        path="<mock>",
        data=np.zeros((channels, grid + 2 * pad, grid + 2 * pad)),
        offsets=channel_velocities(channels, spacing),
        rest_frequency=line.frequency,
        cell_size=cell_size,
        distance=settings.distance,
        unit=settings.unit,
        beam=beam_axes,
        pad=pad,
        grid=grid,
        noise=1.0,
        noise_source="given",
        header={},
    )


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
