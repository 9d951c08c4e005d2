"""The differentiable forward model: parameters -> the observation's cube, in its units.

Steps, each a torch operation of the parameters (autograd end to end):

1. the cube frame's cell centres (``grid``^3 cells of ``cell_size``, the
   cube contract's layout: observer on the -z side), optionally
   ``supersample``^3 sub-points per cell, taken into the model frame by the
   transpose of the viewing rotation ``R(i, PA, phi)``;
2. the analytic wind there (:func:`coemu.fit.wind.wind_fields`); with
   sub-points, each cell gets the mean CO density and the CO-density-weighted
   temperature and line-of-sight velocity, as the cube contract defines them;
3. the line images by the solver (:func:`coemu.rt.solver.line_images`,
   autograd through the transfer) or by a trained emulator
   (:meth:`coemu.nn.Emulator.intensities`, when its grid, cell size and
   channels are the observation's);
4. the observation's units: the FITS orientation (:func:`coemu.observe.fits.sky_array`),
   Jy/pixel, the beam (the radio-beam kernel of :mod:`coemu.observe.units`,
   normalised, on the map padded by :func:`coemu.observe.units.pad_width`), and
   Jy/beam or K (Rayleigh-Jeans), as :func:`coemu.observe.fits.observation` does.

The fields are evaluated at the cells, not regridded from a point cloud, so a
cube here differs from the pipeline's cube of the same model by the data's own
regridding error (docs/design.md): fitting the pipeline's observation is
slightly misspecified; fitting a mock made by this model is not.
"""

from __future__ import annotations

import numpy as np
import torch

from coemu.constants import BOLTZMANN, SPEED_OF_LIGHT
from coemu.fit.data import Observation
from coemu.fit.family import Family
from coemu.fit.wind import viewing_matrix, wind_fields
from coemu.io.errors import CoemuInputError
from coemu.rt.lamda import Line
from coemu.rt.solver import background_intensity, line_images
from coemu.rt.spectral import velocity_to_frequency

BACKENDS = ("solver", "emulator")


def beam_kernel(obs: Observation) -> tuple[np.ndarray, float] | tuple[None, None]:
    """The observation's beam as a normalised (sum 1) pixel kernel of odd size and its solid
    angle (sr), the radio-beam kernel :func:`coemu.observe.units.convolve` uses; or (None, None)."""
    if obs.beam is None:
        return None, None
    from astropy import units as u

    from coemu.observe.units import make_beam

    beam = make_beam(*obs.beam, obs.pixel_arcsec)
    k = np.asarray(beam.as_kernel(obs.pixel_arcsec * u.arcsec).array, dtype=np.float64)
    if k.shape[0] % 2 == 0 or k.shape[1] % 2 == 0:
        raise ValueError(f"beam kernel of even size {k.shape}")
    return k / k.sum(), float(beam.sr.to_value(u.sr))


class ForwardModel:
    """Parameters of ``family`` -> the model of ``obs.data`` (F, Y, X) in ``obs.unit``.

    Args:
        obs: the observation (its grid, cell size, channels, unit and beam are reproduced).
        family: the model family (which wind; the viewing angles).
        line: the transition (the observation's rest frequency).
        backend: ``solver`` or ``emulator`` (then ``emulator`` is a loaded Emulator).
        supersample: sub-points per cell and axis (1: the cell centres).
        v_turbulence: m/s. background: ``zero`` or ``cmb``.
        dtype: float64 (the default: gradients checked against finite differences) or float32.
    """

    def __init__(
        self,
        obs: Observation,
        family: Family,
        line: Line,
        backend: str = "solver",
        emulator=None,
        supersample: int = 1,
        v_turbulence: float = 0.0,
        background: str = "zero",
        dtype: torch.dtype = torch.float64,
    ):
        if backend not in BACKENDS:
            raise CoemuInputError(None, "backend", f"'{backend}' is not one of {', '.join(BACKENDS)}")
        if supersample < 1:
            raise CoemuInputError(None, "supersample", f"{supersample}; at least 1 sub-point per axis")
        self.obs, self.family, self.line = obs, family, line
        self.backend, self.emulator, self.dtype = backend, emulator, dtype
        self.supersample, self.v_turbulence = supersample, v_turbulence
        n, dx, s = obs.grid, obs.cell_size, supersample
        sub = (torch.arange(n * s, dtype=dtype) + 0.5) * (dx / s) - n * dx / 2
        points = torch.stack(torch.meshgrid(sub, sub, sub, indexing="ij"), dim=-1)
        # (n, s, n, s, n, s, 3) -> (n, n, n, s^3, 3): the sub-points of each cell together
        self.points = points.view(n, s, n, s, n, s, 3).permute(0, 2, 4, 1, 3, 5, 6).reshape(-1, 3)
        self.frequencies = velocity_to_frequency(obs.offsets, line.frequency)
        self.background = background_intensity(background, self.frequencies)
        kernel, self.beam_sr = beam_kernel(obs)
        self.kernel_spectrum = None
        if kernel is not None:  # the beam as a product of DFTs on the padded map
            size = obs.grid + 2 * obs.pad
            embedded = np.zeros((size, size))
            kh, kw = kernel.shape
            embedded[:kh, :kw] = kernel
            embedded = np.roll(embedded, (-(kh // 2), -(kw // 2)), axis=(0, 1))  # centre at (0, 0)
            self.kernel_spectrum = torch.fft.rfft2(torch.as_tensor(embedded, dtype=dtype))
        if backend == "emulator":
            self._check_emulator()

    def _check_emulator(self) -> None:
        from coemu.emulate import CELL_SIZE_RTOL

        data, name = self.emulator.data, getattr(self.emulator, "source", "the emulator")
        if data is None:
            raise CoemuInputError(name, "data", "no data description (a model file from an older coemu)")
        offsets = self.obs.offsets
        if len(data.channel_velocities) != len(offsets) or not np.allclose(
            data.channel_velocities, offsets, atol=1e-3
        ):
            raise CoemuInputError(
                name,
                "channel_velocities",
                f"the emulator's channels {list(data.channel_velocities)} m/s are not the observation's"
                f" {[round(float(v), 3) for v in offsets]} m/s (relative to VSYS)",
            )
        if (
            data.grid != self.obs.grid
            or abs(self.obs.cell_size - data.cell_size) > CELL_SIZE_RTOL * data.cell_size
        ):
            raise CoemuInputError(
                name,
                "cell_size",
                f"the emulator takes {data.grid}^3 cells of {data.cell_size:.6g} m; the observation holds"
                f" {self.obs.grid}^3 of {self.obs.cell_size:.6g} m",
            )

    def cube(self, params: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(temperature K, CO density m-3, line-of-sight velocity m/s), each (G, G, G) cube frame."""
        if self.family.single:
            matrix = torch.eye(3, dtype=self.dtype)
        else:
            matrix = viewing_matrix(params["inclination"], params["position_angle"], params["azimuth"])
        velocity, temperature, density = wind_fields(self.points @ matrix, params, self.family.single)
        v_z = velocity @ matrix[2]
        g, s3 = self.obs.grid, self.supersample**3
        if s3 > 1:
            density, temperature, v_z = (x.view(-1, s3) for x in (density, temperature, v_z))
            mass = density.sum(dim=1)
            temperature = (density * temperature).sum(dim=1) / mass
            v_z = (density * v_z).sum(dim=1) / mass
            density = mass / s3
        return tuple(x.reshape(g, g, g) for x in (temperature, density, v_z))

    def intensity(self, params: dict[str, torch.Tensor]) -> torch.Tensor:
        """(F, X, Y) W m-2 Hz-1 sr-1 in the cube frame."""
        temperature, density, v_z = self.cube(params)
        if self.backend == "emulator":
            dev = self.emulator.device
            out = self.emulator.intensities(*(x[None].to(dev) for x in (temperature, density, v_z)))
            return out[0].to(self.dtype).cpu()
        images = line_images(
            self.line,
            temperature[None],
            density[None],
            v_z[None],
            self.frequencies,
            self.obs.cell_size,
            v_turbulence=self.v_turbulence,
            background=self.background,
        )
        return images[0].permute(2, 0, 1)

    def __call__(self, params: dict[str, torch.Tensor]) -> torch.Tensor:
        """(F, Y, X) model of the observation in its unit (the FITS array's orientation)."""
        from coemu.observe.units import JANSKY, pixel_solid_angle

        sky = self.intensity(params).transpose(1, 2).flip(2)  # (F, Y, X), RA index to the west
        obs = self.obs
        if obs.unit == "W m-2 Hz-1 sr-1":
            return sky
        pixel_sr = pixel_solid_angle(obs.cell_size, obs.distance)
        data = sky * (pixel_sr / JANSKY)  # Jy/pixel
        if self.kernel_spectrum is not None:
            # periodic convolution of the padded map: exact, the margin holds the kernel's half width
            p = obs.pad
            padded = torch.nn.functional.pad(data, (p, p, p, p))
            spectrum = torch.fft.rfft2(padded) * self.kernel_spectrum
            data = torch.fft.irfft2(spectrum, s=padded.shape[-2:])
            if obs.unit == "Jy/beam":
                data = data * (self.beam_sr / pixel_sr)
            elif obs.unit == "K":  # Rayleigh-Jeans, of the beam-averaged intensity
                data = data * (JANSKY / pixel_sr) * self._rj()
        elif obs.unit == "K":
            data = sky * self._rj()
        return data

    def _rj(self) -> torch.Tensor:
        """(F, 1, 1) K per W m-2 Hz-1 sr-1 on the Rayleigh-Jeans scale."""
        nu = torch.as_tensor(self.frequencies, dtype=self.dtype).view(-1, 1, 1)
        return SPEED_OF_LIGHT**2 / (2.0 * BOLTZMANN * nu**2)
