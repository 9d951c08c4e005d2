"""Synthetic observations: viewing angles, FITS cubes that astropy and spectral-cube read, units, beams."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import xarray as xr
from astropy import units as u
from astropy.io import fits
from astropy.wcs import WCS
from conftest import run_cli

from coemu.io.errors import CoemuInputError
from coemu.observe import units as conv
from coemu.observe.fits import ObservationSettings, moment_maps, observation, sky_array, write_fits
from coemu.observe.viewing import viewing_matrix
from coemu.rt.spectral import velocity_to_frequency

REST = 230.538e9
CELL = 1.5 * 1.495978707e11  # 1.5 au
VELOCITIES = np.array([-600.0, -300.0, 0.0, 300.0, 600.0]) + 2500.0  # m/s, v_sys 2.5 km/s


def _blob(n=24, channels=5, centre=(9, 13), width=2.0):
    """(F, X, Y) a Gaussian source, channel-dependent, well inside the field (W m-2 Hz-1 sr-1)."""
    x, y = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    blob = np.exp(-((x - centre[0]) ** 2 + (y - centre[1]) ** 2) / (2 * width**2))
    return np.stack([1e-14 * (1.0 + 0.3 * k) * blob for k in range(channels)])


def _settings(**kw):
    return ObservationSettings(**{"distance": 150.0, "ra": 150.25, "dec": -23.5, "v_sys": 2.5, **kw})


# --- viewing ---


def test_viewing_angles_are_rotations_with_the_documented_senses():
    assert np.array_equal(viewing_matrix(0.0, 0.0, 0.0), np.eye(3))  # the cubes' rotation 0
    for angles in [(30, 40, 50), (90, 0, 0), (150, -20, 300)]:
        r = viewing_matrix(*angles)
        assert np.allclose(r @ r.T, np.eye(3)) and np.isclose(np.linalg.det(r), 1.0)
    z = np.array([0.0, 0.0, 1.0])  # the orbital axis
    assert np.allclose(viewing_matrix(90, 0, 0) @ z, [0, 1, 0])  # edge-on: on the sky, north
    assert np.allclose(viewing_matrix(90, 90, 0) @ z, [1, 0, 0])  # PA 90: north turned to east
    i = 35.0
    assert np.isclose((viewing_matrix(i, 0, 0) @ z)[2], np.cos(np.radians(i)))  # receding half
    assert np.allclose(viewing_matrix(0, 0, 90) @ [1.0, 0, 0], [0, 1, 0])  # azimuth: counter-clockwise
    with pytest.raises(CoemuInputError, match="inclination"):
        viewing_matrix(190.0)


@pytest.mark.slow  # about 15-35 s on 2 cores
def test_inclination_zero_is_the_cubes_rotation_zero(tmp_path):
    """coemu observe at i = 0 (Jy/pixel, no beam) = the pipeline's cube and image of rotation 0."""
    common = ["--seed", "5", "--n-base", "16", "--levels", "4", "--box-cells", "32", "--grid", "16"]
    common += ["--channels", "3"]
    run_cli("sphere", tmp_path / "sphere.json", "--count", "4", "--seed", "5")
    sphere = tmp_path / "sphere.json"
    run_cli("cubes", tmp_path / "cube.nc", "--synthetic", "--model", "m00001", "--sphere", sphere,
            "--rotations", "1", *common[:-2])  # fmt: skip
    run_cli("render", tmp_path / "cube.nc", tmp_path / "image.nc", "--channels", "3")
    out = tmp_path / "obs.fits"
    run_cli("observe", out, "--model", "m00001", "--sphere", tmp_path / "sphere.json", *common,
            "--unit", "Jy/pixel", "--beam-major", "null", "--distance", "200")  # fmt: skip
    with xr.open_dataset(tmp_path / "image.nc") as image:
        intensity = image["intensity"].values[0].astype(np.float64)
        dx = float(image.attrs["cell_size"])
    with fits.open(out) as hdul:
        data, header = hdul[0].data.astype(np.float64), hdul[0].header
    expected = sky_array(intensity) * conv.pixel_solid_angle(dx, 200.0) * 1e26
    assert header["INCLIN"] == 0.0 and header["BUNIT"] == "Jy/pixel" and "BMAJ" not in header
    assert np.allclose(data, expected, rtol=1e-5, atol=1e-6 * expected.max())


# --- the FITS cube ---


@pytest.mark.parametrize("axis", ["VRAD", "FREQ"])
def test_astropy_wcs_maps_the_centre_and_every_channel(tmp_path, axis):
    settings = _settings(spectral_axis=axis)
    hdu = observation(_blob(), VELOCITIES, REST, CELL, settings)
    path = write_fits(hdu, tmp_path / "cube.fits")
    header = fits.getheader(path)
    w = WCS(header)
    ny, nx = header["NAXIS2"], header["NAXIS1"]
    assert header["CRPIX1"] == (nx + 1) / 2 and header["RESTFRQ"] == REST and header["SPECSYS"] == "LSRK"
    sky, spectral = w.pixel_to_world((nx - 1) / 2, (ny - 1) / 2, np.arange(len(VELOCITIES)))
    assert np.allclose(sky.ra.deg, 150.25, atol=1e-9) and np.allclose(sky.dec.deg, -23.5, atol=1e-9)
    velocity = spectral.to(u.m / u.s, doppler_convention="radio", doppler_rest=REST * u.Hz).value
    assert np.allclose(velocity, VELOCITIES, atol=1e-6 * 300.0)
    # RA grows to the east: the pixel to the left of the centre is further east
    east = w.pixel_to_world((nx - 1) / 2 - 1, (ny - 1) / 2, 0)[0]
    assert east.ra.deg > 150.25


def test_spectral_cube_opens_the_cube_without_a_warning_and_reads_the_radio_velocities(tmp_path):
    from spectral_cube import SpectralCube

    for axis in ("VRAD", "FREQ"):
        path = write_fits(
            observation(_blob(), VELOCITIES, REST, CELL, _settings(spectral_axis=axis)),
            tmp_path / f"{axis}.fits",
        )
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            cube = SpectralCube.read(str(path)).with_spectral_unit(u.km / u.s, velocity_convention="radio")
        assert np.allclose(cube.spectral_axis.to_value(u.km / u.s), VELOCITIES / 1e3, atol=1e-9)
        assert cube.unit == u.Jy / u.beam
        assert np.isclose(cube.beam.major.to_value(u.arcsec), 0.1)


def test_jy_per_pixel_is_intensity_times_the_pixel_solid_angle():
    image = _blob()
    hdu = observation(image, VELOCITIES, REST, CELL, _settings(unit="Jy/pixel", beam_major=None))
    omega = (CELL / (150 * u.pc).to_value(u.m)) ** 2
    assert np.allclose(hdu.data, sky_array(image) * omega * 1e26, rtol=1e-6)
    assert hdu.header["BUNIT"] == "Jy/pixel"


def test_a_beam_keeps_the_total_flux_density():
    image = _blob()
    pixel = conv.pixel_arcsec(CELL, 150.0)
    for major, minor, pa in [(0.1, 0.1, 0.0), (0.15, 0.07, 35.0)]:
        s = _settings(beam_major=major, beam_minor=minor, beam_pa=pa)
        hdu = observation(image, VELOCITIES, REST, CELL, s)
        beam = conv.make_beam(major, minor, pa, pixel)
        per_pixel = (
            hdu.data.astype(np.float64) * (pixel * u.arcsec).to_value(u.rad) ** 2 / beam.sr.to_value(u.sr)
        )
        total = observation(image, VELOCITIES, REST, CELL, _settings(unit="Jy/pixel", beam_major=None)).data
        assert np.allclose(per_pixel.sum(axis=(1, 2)), total.sum(axis=(1, 2)), rtol=1e-3)
        assert hdu.header["BMAJ"] == pytest.approx(major / 3600) and hdu.header["BPA"] == pytest.approx(pa)


@pytest.mark.parametrize("major,minor,pa", [(0.1, 0.1, 0.0), (0.15, 0.07, 35.0)])
def test_beam_convolution_is_astropys(major, minor, pa):
    """coemu.physics.units' DFT convolution against astropy's convolve_fft: padded and linear
    (the writer's beam, boundary fill) and periodic (its correlated noise, boundary wrap)."""
    import torch
    from astropy.convolution import convolve_fft

    pixel = conv.pixel_arcsec(CELL, 150.0)
    beam = conv.make_beam(major, minor, pa, pixel)
    kernel = conv.BeamKernel.of(beam, pixel)
    assert kernel.kernel.sum() == pytest.approx(1.0, rel=1e-12) and kernel.kernel.shape[0] % 2 == 1
    maps = np.random.default_rng(0).uniform(size=(2, 12, 9))
    p = kernel.pad
    padded = np.pad(maps, ((0, 0), (p, p), (p, p)))
    expected = np.stack([convolve_fft(m, kernel.kernel, boundary="fill", fill_value=0.0) for m in padded])
    got = kernel.convolve(torch.from_numpy(maps)).numpy()
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12 * expected.max())
    white = np.random.default_rng(1).standard_normal(padded.shape)
    expected = np.stack(
        [convolve_fft(m, kernel.kernel, normalize_kernel=False, boundary="wrap") for m in white]
    )
    got = kernel.convolve_periodic(torch.from_numpy(white)).numpy()
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12 * np.abs(expected).max())


@pytest.mark.parametrize("scale", ["planck", "rayleigh-jeans"])
def test_kelvin_to_jy_per_beam_and_back(scale):
    beam = conv.make_beam(0.1, 0.1, 0.0, 0.01)
    kelvin = np.array([[0.5, 3.0, 40.0, 200.0]])
    freq = np.array([REST])
    jy = conv.kelvin_to_jy_per_beam(kelvin, freq, beam, scale)
    assert np.allclose(conv.jy_per_beam_to_kelvin(jy, freq, beam, scale), kelvin, rtol=1e-10)
    if scale == "rayleigh-jeans":  # astropy's equivalency is the Rayleigh-Jeans one
        expected = (kelvin * u.K).to(u.Jy, u.brightness_temperature(REST * u.Hz, beam.sr)).value
        assert np.allclose(jy, expected, rtol=1e-9)
    else:  # below the Rayleigh-Jeans value at h nu / k T not small
        assert (jy < conv.kelvin_to_jy_per_beam(kelvin, freq, beam, "rayleigh-jeans")).all()


def test_a_cube_in_kelvin_says_which_temperature_and_matches_the_jy_per_beam_cube():
    image = _blob()
    jy = observation(image, VELOCITIES, REST, CELL, _settings())
    k = observation(image, VELOCITIES, REST, CELL, _settings(unit="K", temperature_scale="rayleigh-jeans"))
    assert k.header["BUNIT"] == "K" and k.header["TBSCALE"] == "RAYLEIGH-JEANS"
    beam = conv.make_beam(0.1, None, 0.0, conv.pixel_arcsec(CELL, 150.0))
    freq = velocity_to_frequency(VELOCITIES, REST)
    expected = conv.jy_per_beam_to_kelvin(jy.data.astype(np.float64), freq, beam, "rayleigh-jeans")
    assert np.allclose(k.data, expected, rtol=1e-5, atol=1e-6 * expected.max())


def test_noise_has_the_rms_asked_for_and_is_seeded():
    image = np.zeros((3, 64, 64))
    for beam in (None, 0.1):
        a = observation(
            image, VELOCITIES[:3], REST, CELL, _settings(unit="Jy/pixel", beam_major=beam, noise=0.01)
        )
        b = observation(
            image, VELOCITIES[:3], REST, CELL, _settings(unit="Jy/pixel", beam_major=beam, noise=0.01)
        )
        assert np.array_equal(a.data, b.data)
        assert np.allclose(a.data.std(axis=(1, 2)), 0.01, rtol=0.1)
        assert a.header["NOISE"] == 0.01


def test_moment_maps_equal_a_direct_computation(tmp_path):
    settings = _settings()
    path = write_fits(observation(_blob(), VELOCITIES, REST, CELL, settings), tmp_path / "cube.fits")
    maps = moment_maps(path, tmp_path / "cube", settings)
    data = fits.getdata(path).astype(np.float64)
    v = (VELOCITIES / 1e3)[:, None, None]  # km/s
    m0 = (data * 0.3).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        m1 = (data * v).sum(axis=0) / data.sum(axis=0)
        sigma = np.sqrt((data * (v - m1) ** 2).sum(axis=0) / data.sum(axis=0))
    got = {k: fits.getdata(p).astype(np.float64) for k, p in maps.items()}
    assert fits.getheader(maps["moment0"])["BUNIT"] in (
        "Jy km / (beam s)",
        "Jy km beam-1 s-1",
        "beam-1 Jy km s-1",
    )
    assert fits.getheader(maps["moment1"])["BUNIT"] in ("km / s", "km s-1")
    bright = data.sum(axis=0) > 1e-3 * data.sum(axis=0).max()
    assert np.allclose(got["moment0"], m0, rtol=1e-5, atol=1e-7 * m0.max())
    assert np.allclose(got["moment1"][bright], m1[bright], rtol=1e-5, atol=1e-6)
    assert np.allclose(got["linewidth"][bright], sigma[bright], rtol=1e-4, atol=1e-6)


def test_clipped_moments_leave_out_the_noise(tmp_path):
    settings = _settings(noise=1e-4, clip=5.0)
    path = write_fits(observation(_blob(), VELOCITIES, REST, CELL, settings), tmp_path / "cube.fits")
    m0 = fits.getdata(moment_maps(path, tmp_path / "cube", settings)["moment0"])
    data = fits.getdata(path).astype(np.float64)
    expected = np.where(data > 5e-4, data, 0.0).sum(axis=0) * 0.3
    assert np.allclose(np.nan_to_num(m0), expected, rtol=1e-5, atol=1e-7 * expected.max())


# --- bad input ---


@pytest.mark.parametrize(
    "options, key",
    [
        (["--distance", "0"], "observations.distance"),
        (["--beam-major", "0.001"], "beam_minor"),
        (["--spacing", "5e8"], "spacing"),
    ],
)
def test_bad_observations_are_clear_errors_and_write_nothing(tmp_path, options, key):
    out = tmp_path / "obs.fits"
    proc = run_cli("observe", out, "--model", "m00001", "--n-base", "16", "--levels", "3", "--grid", "16",
                   "--box-cells", "32", *options, check=False)  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert key in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_wrong_unit_name_is_refused_by_the_command_and_the_library(tmp_path):
    proc = run_cli("observe", tmp_path / "o.fits", "--model", "m00001", "--unit", "mJy", check=False)
    assert proc.returncode == 2 and "invalid choice: 'mJy'" in proc.stderr
    with pytest.raises(CoemuInputError, match="'mJy' is not one of Jy/pixel, Jy/beam, K"):
        observation(_blob(), VELOCITIES, REST, CELL, _settings(unit="mJy"))
    with pytest.raises(CoemuInputError, match="distance"):
        observation(_blob(), VELOCITIES, REST, CELL, _settings(distance=-1.0))
    assert list(tmp_path.iterdir()) == []
