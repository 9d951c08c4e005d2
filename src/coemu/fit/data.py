"""The observation a fit reads: a FITS cube (:mod:`coemu.observe.fits`) or an image netCDF.

Everything the forward model must reproduce is read from the header and
checked before any work, each problem naming its header keyword: three axes
(``NAXIS``), RA/Dec (``CTYPE1``, ``CTYPE2``) with square pixels (``CDELT2``)
on a square map (``NAXIS2``), a radio-velocity or frequency axis
(``CTYPE3``, ``CUNIT3``) with equally spaced channels, the line's rest
frequency (``RESTFRQ``), a linear unit (``BUNIT``: Jy/beam, Jy/pixel, or K
on the Rayleigh-Jeans scale, ``TBSCALE``; the Planck scale is not linear in
the intensity, so the Gaussian noise of a K cube on it is not Gaussian in the
intensity), a beam (``BMAJ``, ``BMIN``, ``BPA``) for Jy/beam and the
distance (``DISTPC``, or given). The map must hold the model's cube at its
centre with, after a beam, the margin :attr:`coemu.physics.units.BeamKernel.pad`
on each side, as ``coemu observe`` and the pipeline's export write them.

An image netCDF (the image contract) is fitted in its own unit, W m-2 Hz-1
sr-1, without a beam, on the cube frame's cell size.

The noise rms per pixel: given, else the header's ``NOISE`` when > 0, else
estimated from line-free channels (the first and last ``line_free``
channels: the rms of their pixels).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from coemu.io.errors import CoemuInputError
from coemu.physics import units as conv

#: Units a fit reproduces: those of an observation cube (K on the Rayleigh-Jeans scale only:
#: the Planck brightness temperature is not linear in the intensity) and an image netCDF's.
LINEAR_UNITS = (*conv.UNITS, conv.INTENSITY_UNIT)


@dataclass
class Observation:
    """An observed cube and what the forward model needs to reproduce it.

    Attributes:
        data: (F, Y, X) float64, the FITS array (north up, RA index increasing to the west).
        offsets: (F,) channel velocities relative to the systemic velocity (the line centre), m/s.
        rest_frequency: Hz. cell_size: m per pixel at the distance. distance: pc.
        unit: one of :data:`LINEAR_UNITS`. beam: (major, minor, pa) arcsec, arcsec, deg, or None.
        pad: pixels of margin around the model's cube on each side (the beam's).
        grid: the model cube's cells per axis. noise: rms per pixel in ``unit``.
        noise_source: ``given``, ``header NOISE`` or ``line-free channels``.
    """

    path: str
    data: np.ndarray
    offsets: np.ndarray
    rest_frequency: float
    cell_size: float
    distance: float
    unit: str
    beam: tuple[float, float, float] | None
    pad: int
    grid: int
    noise: float
    noise_source: str
    header: dict

    @property
    def pixel_arcsec(self) -> float:
        return conv.pixel_arcsec(self.cell_size, self.distance)

    def beam_kernel(self) -> conv.BeamKernel | None:
        """The beam on the observation's pixels (None without a beam)."""
        return None if self.beam is None else conv.BeamKernel.make(*self.beam, self.pixel_arcsec)


def header_card(header, key: str, path, what: str):
    """``header[key]``, or a CoemuInputError naming the missing keyword (``what`` it holds)."""
    if key not in header:
        raise CoemuInputError(path, key, f"missing header keyword ({what})", kind="header keyword")
    return header[key]


def _header_error(path, key: str, problem: str) -> CoemuInputError:
    """The error naming header keyword ``key`` of ``path``."""
    return CoemuInputError(path, key, problem, kind="header keyword")


def read_observation(
    path: str | Path,
    rest_frequency: float,
    noise: float | None = None,
    distance: float | None = None,
    v_sys: float | None = None,
    line_free: int = 1,
    rotation: int = 0,
) -> Observation:
    """Read and check an observation for a fit of the line at ``rest_frequency`` (Hz).

    Args:
        noise: rms per pixel in the observation's unit (default: header NOISE, else estimated).
        distance: pc (default: the header's DISTPC). v_sys: km/s (default: VSYS, else 0).
        line_free: channels at each end of the band that hold no line, for the noise estimate.
        rotation: which rotation of an image netCDF.

    Raises:
        CoemuInputError: naming the header keyword (or variable) that does not fit.
    """
    path = Path(path)
    if not path.exists():
        raise CoemuInputError(path, None, "file not found")
    if path.suffix == ".nc":
        obs = _read_image_netcdf(path, rest_frequency, rotation)
    else:
        obs = _read_fits(path, rest_frequency, distance, v_sys)
    if not np.isfinite(obs.data).all():
        raise CoemuInputError(path, "data", f"{int((~np.isfinite(obs.data)).sum())} NaN or inf pixels")
    obs.noise, obs.noise_source = _noise_rms(path, obs, noise, line_free)
    return obs


def _noise_rms(path, obs: Observation, noise: float | None, line_free: int) -> tuple[float, str]:
    if noise is not None:
        if not (math.isfinite(noise) and noise > 0):
            raise CoemuInputError(path, "noise", f"{noise}: the noise rms must be > 0")
        return float(noise), "given"
    if float(obs.header.get("NOISE", 0.0) or 0.0) > 0:
        return float(obs.header["NOISE"]), "header NOISE"
    n = obs.data.shape[0]
    if line_free < 1 or 2 * line_free >= n:
        raise CoemuInputError(
            path, "noise", f"no noise rms given or in the header, and {n} channels leave no line-free ones"
        )
    edges = np.concatenate([obs.data[:line_free], obs.data[n - line_free :]])
    rms = float(np.sqrt(np.mean(edges**2)))
    if rms == 0.0:
        raise CoemuInputError(
            path,
            "noise",
            "the line-free channels are exactly 0 (an observation without noise): give the noise rms",
        )
    return rms, "line-free channels"


def _read_fits(path: Path, rest_frequency: float, distance, v_sys) -> Observation:
    """The FITS cube at ``path`` after every header check (see the module docstring)."""
    header, data = _open_fits(path)
    if header.get("NAXIS") != 3 or data is None:
        raise _header_error(
            path, "NAXIS", f"{header.get('NAXIS')} axes; a fit needs a (RA, Dec, spectral) cube"
        )
    pixel = _check_sky_axes(path, header)
    rest, velocities = _spectral_axis(path, header, rest_frequency)
    if distance is None:
        distance = float(header_card(header, "DISTPC", path, "the source's distance, pc; or give --distance"))
    if not (math.isfinite(distance) and distance > 0):
        raise _header_error(path, "DISTPC", f"{distance} pc; the distance must be > 0")
    v_sys = float(header.get("VSYS", 0.0)) if v_sys is None else float(v_sys)
    unit = _linear_unit(path, header)
    beam, pad = _beam(path, header, pixel, unit)
    grid = header["NAXIS1"] - 2 * pad
    if grid < 4:
        raise _header_error(
            path,
            "NAXIS1",
            f"{header['NAXIS1']} pixels leave {grid} for the model's cube inside the beam's margin",
        )
    return Observation(
        path=str(path),
        data=data,
        offsets=velocities - 1e3 * v_sys,
        rest_frequency=rest,
        cell_size=math.radians(pixel / 3600.0) * (distance * conv.PARSEC),
        distance=distance,
        unit=unit,
        beam=beam,
        pad=pad,
        grid=grid,
        noise=0.0,
        noise_source="",
        header=dict(header),
    )


def _open_fits(path: Path):
    """(header, data (float64) or None) of the primary HDU."""
    from astropy.io import fits

    try:
        with fits.open(path) as hdul:
            header, data = hdul[0].header.copy(), hdul[0].data
            return header, None if data is None else np.asarray(data, dtype=np.float64)
    except OSError as err:
        raise CoemuInputError(path, None, f"not a readable FITS file ({err})") from None


def _check_sky_axes(path: Path, header) -> float:
    """The pixel's side, arcsec, after checking RA and Dec axes of square pixels on a square map."""
    if not str(header.get("CTYPE1", "")).startswith("RA--"):
        raise _header_error(path, "CTYPE1", f"'{header.get('CTYPE1')}' is not a right ascension axis")
    if not str(header.get("CTYPE2", "")).startswith("DEC-"):
        raise _header_error(path, "CTYPE2", f"'{header.get('CTYPE2')}' is not a declination axis")
    nx, ny = header["NAXIS1"], header["NAXIS2"]
    if nx != ny:
        raise _header_error(path, "NAXIS2", f"a {nx} x {ny} map; the model's cube is square")
    cdelt1 = float(header_card(header, "CDELT1", path, "pixel"))
    cdelt2 = float(header_card(header, "CDELT2", path, "pixel"))
    if not math.isclose(abs(cdelt1), abs(cdelt2), rel_tol=1e-6):
        raise _header_error(path, "CDELT2", f"pixels of {abs(cdelt1)} x {abs(cdelt2)} deg are not square")
    return abs(cdelt2) * 3600.0


def _spectral_axis(path: Path, header, rest_frequency: float) -> tuple[float, np.ndarray]:
    """(the header's rest frequency, Hz; the channels' radio velocities (F,), m/s) after
    checking ``RESTFRQ`` against ``rest_frequency`` and a VRAD or FREQ axis."""
    from astropy import units as u

    from coemu.constants import SPEED_OF_LIGHT

    rest = float(header_card(header, "RESTFRQ", path, "the line's rest frequency, Hz"))
    if not math.isclose(rest, rest_frequency, rel_tol=1e-7):
        raise _header_error(
            path, "RESTFRQ", f"{rest:.9g} Hz, but the line fitted is at {rest_frequency:.9g} Hz"
        )
    ctype3 = str(header.get("CTYPE3", "")).strip()
    crval3, cdelt3 = float(header.get("CRVAL3", 0.0)), float(header.get("CDELT3", 0.0))
    crpix3 = float(header.get("CRPIX3", 1.0))
    axis = crval3 + (np.arange(header["NAXIS3"]) + 1 - crpix3) * cdelt3
    try:
        unit3 = u.Unit(str(header.get("CUNIT3", "m/s" if ctype3 == "VRAD" else "Hz")).strip())
    except ValueError:
        raise _header_error(path, "CUNIT3", f"'{header.get('CUNIT3')}' is not a unit") from None
    if ctype3 == "VRAD":
        if not unit3.is_equivalent(u.m / u.s):
            raise _header_error(path, "CUNIT3", f"'{unit3}' for a VRAD axis (a velocity)")
        velocities = axis * unit3.to(u.m / u.s)
    elif ctype3 == "FREQ":
        if not unit3.is_equivalent(u.Hz):
            raise _header_error(path, "CUNIT3", f"'{unit3}' for a FREQ axis (a frequency)")
        velocities = SPEED_OF_LIGHT * (1.0 - axis * unit3.to(u.Hz) / rest)  # radio convention
    else:
        raise _header_error(path, "CTYPE3", f"'{ctype3}': a fit needs a VRAD or FREQ spectral axis")
    if header["NAXIS3"] < 1 or cdelt3 == 0:
        raise _header_error(path, "CDELT3", "no channel spacing")
    return rest, velocities


def _linear_unit(path: Path, header) -> str:
    """``BUNIT``, after checking it is one of :data:`coemu.physics.units.UNITS` and, for K,
    on the Rayleigh-Jeans scale (``TBSCALE``)."""
    unit = str(header_card(header, "BUNIT", path, "the data's unit")).strip()
    if unit not in conv.UNITS:
        raise _header_error(path, "BUNIT", f"'{unit}'; a fit reads {', '.join(conv.UNITS)}")
    if unit == "K" and str(header.get("TBSCALE", "PLANCK")).upper() != "RAYLEIGH-JEANS":
        raise _header_error(
            path,
            "TBSCALE",
            f"'{header.get('TBSCALE', 'PLANCK')}': a K cube on the Planck scale is not linear in the"
            " intensity (its noise is not Gaussian there); write it in Jy/beam or on the"
            " Rayleigh-Jeans scale",
        )
    return unit


def _beam(path: Path, header, pixel: float, unit: str) -> tuple[tuple[float, float, float] | None, int]:
    """(the beam (major, minor arcsec, PA degrees) or None, its margin in pixels) of the header
    (``BMAJ``, ``BMIN``, ``BPA``) on pixels ``pixel`` arcsec; a Jy/beam cube must have one."""
    if "BMAJ" not in header:
        if unit == "Jy/beam":
            raise _header_error(path, "BMAJ", "a Jy/beam cube without its beam (BMAJ, BMIN, BPA)")
        return None, 0
    major = float(header["BMAJ"]) * 3600.0
    minor = float(header_card(header, "BMIN", path, "beam minor axis, deg")) * 3600.0
    pa = float(header.get("BPA", 0.0))
    try:
        kernel = conv.BeamKernel.make(major, minor, pa, pixel)
    except CoemuInputError as err:
        keyword = "BMIN" if err.variable == "beam_minor" else "BMAJ"
        raise _header_error(path, keyword, err.problem) from None
    return (major, minor, pa), kernel.pad


def _read_image_netcdf(path: Path, rest_frequency: float, rotation: int) -> Observation:
    import xarray as xr

    from coemu.observe.fits import sky_array

    try:
        ds = xr.open_dataset(path).load()
    except (OSError, ValueError) as err:
        raise CoemuInputError(path, None, f"corrupt or unreadable netCDF file ({err})") from None
    if "intensity" not in ds:
        raise CoemuInputError(path, "intensity", "missing variable (not an image file)")
    rest = float(ds.attrs.get("rest_frequency", math.nan))
    if not math.isclose(rest, rest_frequency, rel_tol=1e-7):
        raise CoemuInputError(
            path, "rest_frequency", f"{rest:.9g} Hz, but the line is at {rest_frequency:.9g} Hz"
        )
    if not 0 <= rotation < ds.sizes["rotation"]:
        raise CoemuInputError(path, "rotation", f"{rotation} of {ds.sizes['rotation']} rotations")
    intensity = ds["intensity"].isel(rotation=rotation).values.astype(np.float64)
    return Observation(
        path=str(path),
        data=sky_array(intensity),
        offsets=ds["velocity"].values.astype(np.float64),
        rest_frequency=rest,
        cell_size=float(ds.attrs["cell_size"]),
        distance=1.0,
        unit=conv.INTENSITY_UNIT,
        beam=None,
        pad=0,
        grid=intensity.shape[-1],
        noise=0.0,
        noise_source="",
        header={"OBJECT": ds.attrs.get("model", "")},
    )
