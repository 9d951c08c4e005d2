"""FITS spectral cubes that standard tools read without guessing, and their moment maps.

The header (astropy.wcs): ``RA---SIN`` / ``DEC--SIN`` around the given centre
(``CRPIX`` = (N + 1) / 2, 1-based: the centre of an N-pixel axis), the pixel
``cell_size / distance``, RA increasing to the east (``CDELT1`` < 0); a
spectral axis ``VRAD`` (radio velocity, m/s) or ``FREQ`` (Hz) with
``SPECSYS = 'LSRK'`` and ``RESTFRQ`` = the line's rest frequency; ``BUNIT``;
``BMAJ``/``BMIN``/``BPA`` (degrees) after convolution with a beam;
``TBSCALE`` (``PLANCK`` or ``RAYLEIGH-JEANS``) for cubes in K. The viewing
direction, distance and systemic velocity are kept in ``INCLIN``,
``POSANG``, ``AZIMUTH``, ``DISTPC`` and ``VSYS``. The cube-frame image
(x east, y north) is stored as FITS expects: ``data[channel, dec, ra]`` with
the RA pixel index increasing to the west.

Noise, when asked for, is Gaussian with the given rms per channel, seeded; with
a beam it is white noise convolved with the beam and rescaled to that rms
(correlated on the beam's scale, as an interferometer's is).

Moment maps (spectral-cube): moment 0 in ``BUNIT`` km/s, moment 1 (the
intensity-weighted radio velocity) and the line width (the square root of
moment 2, ``linewidth_sigma``) in km/s, optionally only over pixels above
``clip`` times the noise rms.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from astropy import units as u
from astropy.io import fits
from astropy.wcs import WCS

from coemu.constants import SPEED_OF_LIGHT
from coemu.io.atomic import atomic_output
from coemu.io.errors import CoemuInputError
from coemu.observe import units as conv
from coemu.physics.units import convert_intensity
from coemu.rt.spectral import velocity_to_frequency

SPECTRAL_AXES = ("VRAD", "FREQ")


@dataclass(frozen=True)
class ObservationSettings:
    """The ``observations`` config section. Its defaults, ranges and descriptions are the
    schema's (``coemu/config.schema.yaml``); :meth:`validate` is the one validation of these
    settings, which the pipeline's config check runs too (:func:`coemu.settings.check_observations`).

    Attributes:
        distance: pc. v_sys: systemic velocity (radio, LSRK), km/s.
        ra, dec: image centre (ICRS), degrees.
        beam_major, beam_minor, beam_pa: Gaussian beam FWHM (arcsec; minor None = major;
            major None = no beam) and position angle (degrees east of north).
        unit: ``Jy/pixel``, ``Jy/beam`` or ``K``; temperature_scale: ``planck`` or
            ``rayleigh-jeans`` (for K).
        spectral_axis: ``VRAD`` or ``FREQ``.
        noise: rms per channel in ``unit`` (None: no noise); noise_seed.
        clip: moment maps over pixels above ``clip`` x noise only (None: all).
        export: the pipeline writes the test models' images as FITS.
    """

    from coemu.settings import section as _section  # the defaults: the schema's, read once

    _defaults = _section("observations")
    distance: float = _defaults["distance"]
    v_sys: float = _defaults["v_sys"]
    ra: float = _defaults["ra"]
    dec: float = _defaults["dec"]
    beam_major: float | None = _defaults["beam_major"]
    beam_minor: float | None = _defaults["beam_minor"]
    beam_pa: float = _defaults["beam_pa"]
    unit: str = _defaults["unit"]
    temperature_scale: str = _defaults["temperature_scale"]
    spectral_axis: str = _defaults["spectral_axis"]
    noise: float | None = _defaults["noise"]
    noise_seed: int = _defaults["noise_seed"]
    clip: float | None = _defaults["clip"]
    export: bool = _defaults["export"]
    del _section, _defaults

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ObservationSettings:
        """From a completed config: its ``observations`` section."""
        return cls(**config["observations"])

    def validate(self) -> None:
        """Every setting against the schema's ``observations`` section (types and ranges, the
        names of units, temperature scales and spectral axes; finite numbers), then the rules
        between them (Jy/beam needs a beam; the beam's minor axis at most its major; clipping
        needs the noise rms): :func:`coemu.settings.check_observations`, which the pipeline's
        config check runs on the config's section.

        Raises:
            CoemuInputError: naming the setting (``distance``; the pipeline's check names it
                ``observations.distance``).
        """
        from coemu.settings import check_observations

        check_observations(vars(self))

    def check(self, cell_size: float):
        """The beam (radio_beam.Beam, or None without one) after :meth:`validate` and the
        check of the beam against the pixel (``cell_size`` m at ``distance`` pc).

        Raises:
            CoemuInputError: naming the setting: what :meth:`validate` refuses, or a beam whose
                minor axis is smaller than a pixel.
        """
        self.validate()
        if self.beam_major is None:
            return None
        pixel = conv.pixel_arcsec(cell_size, self.distance)
        return conv.make_beam(self.beam_major, self.beam_minor, self.beam_pa, pixel)


def sky_array(intensity: np.ndarray) -> np.ndarray:
    """(F, X, Y) cube-frame image (x east, y north) -> (F, Y, X) FITS array (RA index to the west)."""
    return np.ascontiguousarray(np.flip(np.transpose(intensity, (0, 2, 1)), axis=2))


def observation(
    intensity: np.ndarray,
    velocities: np.ndarray,
    rest_frequency: float,
    cell_size: float,
    settings: ObservationSettings,
    meta: Mapping[str, Any] | None = None,
) -> fits.PrimaryHDU:
    """The FITS cube of a model image.

    Args:
        intensity: (F, X, Y) W m-2 Hz-1 sr-1 in the cube frame (x east, y north).
        velocities: (F,) the channels' radio LSRK velocities, m/s, equally spaced.
        rest_frequency: Hz. cell_size: m.
        meta: header cards to add (name -> value or (value, comment)).
    """
    velocities = np.asarray(velocities, dtype=np.float64)
    if velocities.ndim != 1 or len(velocities) != intensity.shape[0]:
        raise ValueError(f"{len(velocities)} velocities for {intensity.shape[0]} channels")
    steps = np.diff(velocities)
    if len(steps) and not np.allclose(steps, steps[0], rtol=1e-9, atol=1e-9):
        raise CoemuInputError(None, "spacing", "channels are not equally spaced in velocity")
    beam = settings.check(cell_size)
    pixel = conv.pixel_arcsec(cell_size, settings.distance)
    kernel = None if beam is None else conv.BeamKernel.of(beam, pixel)
    frequencies = velocity_to_frequency(velocities, rest_frequency)
    data = convert_intensity(
        torch.from_numpy(sky_array(intensity.astype(np.float64))),
        torch.from_numpy(frequencies),
        settings.unit,
        conv.pixel_solid_angle(cell_size, settings.distance),
        kernel,
        settings.temperature_scale,
    ).numpy()
    if settings.noise:
        data = data + _noise(data.shape, settings, kernel)
    header = _header(data.shape, velocities, frequencies, rest_frequency, pixel, settings, beam)
    for key, value in (meta or {}).items():
        header[key] = value
    return fits.PrimaryHDU(data.astype(np.float32), header)


def _noise(shape, settings: ObservationSettings, beam: conv.BeamKernel | None) -> np.ndarray:
    """Gaussian noise (``shape``, float64) of rms ``settings.noise`` per pixel, seeded by
    ``settings.noise_seed``: white, or white noise convolved periodically with the beam's kernel
    and rescaled to that rms (correlated on the beam's scale, as the fit's likelihood models it)."""
    rng = np.random.default_rng(settings.noise_seed)
    white = rng.standard_normal(shape)
    if beam is None:
        return settings.noise * white
    smooth = beam.convolve_periodic(torch.from_numpy(white)).numpy()
    return settings.noise * smooth / math.sqrt(float((beam.kernel**2).sum()))


def _header(shape, velocities, frequencies, rest_frequency, pixel, settings, beam) -> fits.Header:
    n_chan, ny, nx = shape
    w = WCS(naxis=3)
    w.wcs.ctype = ["RA---SIN", "DEC--SIN", settings.spectral_axis]
    w.wcs.crpix = [(nx + 1) / 2.0, (ny + 1) / 2.0, 1.0]
    step = (velocities[1] - velocities[0]) if n_chan > 1 else 1.0
    if settings.spectral_axis == "VRAD":
        w.wcs.cunit = ["deg", "deg", "m/s"]
        w.wcs.crval = [settings.ra, settings.dec, velocities[0]]
        w.wcs.cdelt = [-pixel / 3600.0, pixel / 3600.0, step]
    else:
        w.wcs.cunit = ["deg", "deg", "Hz"]
        w.wcs.crval = [settings.ra, settings.dec, frequencies[0]]
        w.wcs.cdelt = [-pixel / 3600.0, pixel / 3600.0, -rest_frequency * step / SPEED_OF_LIGHT]
    w.wcs.specsys = "LSRK"
    w.wcs.restfrq = rest_frequency
    w.wcs.radesys = "ICRS"
    header = w.to_header()
    header["BUNIT"] = settings.unit
    header["BTYPE"] = "Intensity" if settings.unit != "K" else "Brightness Temperature"
    if settings.unit == "K":
        header["TBSCALE"] = (settings.temperature_scale.upper(), "brightness temperature: Planck or R-J")
    if beam is not None:
        header["BMAJ"] = (beam.major.to_value(u.deg), "beam FWHM major axis, deg")
        header["BMIN"] = (beam.minor.to_value(u.deg), "beam FWHM minor axis, deg")
        header["BPA"] = (beam.pa.to_value(u.deg), "beam position angle, deg east of north")
    header["DISTPC"] = (settings.distance, "distance of the model, pc")
    header["VSYS"] = (settings.v_sys, "systemic velocity (radio, LSRK), km/s")
    header["NOISE"] = (settings.noise or 0.0, f"rms noise added per channel, {settings.unit}")
    header["ORIGIN"] = "coemu"
    return header


def write_fits(hdu, path: str | Path) -> Path:
    """``hdu`` written to ``path`` atomically (never half-written)."""
    path = Path(path)
    with atomic_output(path, suffix=".fits") as tmp:
        hdu.writeto(tmp, overwrite=True)  # the temporary file exists (empty)
    return path


MOMENTS = {"moment0": "mom0", "moment1": "mom1", "linewidth": "mom2"}


def moment_maps(
    cube_path: str | Path, out_stem: str | Path, settings: ObservationSettings, which=tuple(MOMENTS)
) -> dict[str, Path]:
    """Moment 0, 1 and the line width of a FITS cube written by :func:`observation`, as FITS.

    Pixels without emission get NaN moment 1 and line width (no velocity to weight).

    Returns:
        ``{"moment0": path, "moment1": path, "linewidth": path}`` (those in ``which``),
        ``OUT_STEM.mom0.fits``, ``.mom1.fits``, ``.mom2.fits``.
    """
    from spectral_cube import SpectralCube

    cube = SpectralCube.read(str(cube_path)).with_spectral_unit(u.km / u.s, velocity_convention="radio")
    if settings.clip is not None:
        cube = cube.with_mask(cube > settings.clip * settings.noise * cube.unit)
    compute = {"moment0": cube.moment0, "moment1": cube.moment1, "linewidth": cube.linewidth_sigma}
    out = {}
    for name in which:
        with np.errstate(divide="ignore", invalid="ignore"):  # 0 / 0 where there is no emission
            hdu = compute[name]().hdu
        hdu.header["BTYPE"] = name
        out[name] = write_fits(hdu, f"{out_stem}.{MOMENTS[name]}.fits")
    return out
