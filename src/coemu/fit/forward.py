"""The differentiable forward model: parameters -> the observation's cube, in its units.

Steps, each a torch operation of the parameters (autograd end to end):

1. the cube frame's cell centres (``grid``^3 cells of ``cell_size``, the
   cube contract's layout: observer on the -z side), optionally
   ``supersample``^3 sub-points per cell, taken into the model frame by the
   transpose of the viewing rotation ``R(i, PA, phi)``;
2. the analytic wind there (:func:`coemu.physics.wind.wind_fields`, the
   synthetic data set's own); with
   sub-points, each cell gets the mean CO density and the CO-density-weighted
   temperature and line-of-sight velocity, as the cube contract defines them;
3. the line images by the solver (:func:`coemu.rt.solver.line_images`,
   autograd through the transfer) or by a trained emulator
   (:meth:`coemu.nn.Emulator.intensities`, when its grid, cell size and
   channels are the observation's);
4. the observation's units: the FITS orientation (:func:`coemu.observe.fits.sky_array`),
   then :func:`coemu.physics.units.convert_intensity` (Jy/pixel, the beam, Jy/beam or K
   on the Rayleigh-Jeans scale), the function :func:`coemu.observe.fits.observation`
   calls.

The fields are evaluated at the cells, not regridded from a point cloud, so a
cube here differs from the pipeline's cube of the same model by the data's own
regridding error (docs/design.md): fitting the pipeline's observation is
slightly misspecified; fitting a mock made by this model is not.
"""

from __future__ import annotations

import numpy as np
import torch

from coemu.fit.data import Observation
from coemu.fit.family import Family
from coemu.io.errors import CoemuInputError
from coemu.physics.units import convert_intensity, pixel_solid_angle
from coemu.physics.viewing import viewing_matrix
from coemu.physics.wind import wind_fields
from coemu.rt.lamda import Line
from coemu.rt.solver import background_intensity, line_images
from coemu.rt.spectral import velocity_to_frequency

BACKENDS = ("solver", "emulator")


def cell_points(grid: int, cell_size: float, supersample: int, dtype: torch.dtype) -> torch.Tensor:
    """(grid^3 supersample^3, 3) m: the sub-points of the cube frame's cells, each cell's
    ``supersample^3`` together, cells in (x, y, z) C order (the cube contract's layout)."""
    n, s = grid, supersample
    sub = (torch.arange(n * s, dtype=dtype) + 0.5) * (cell_size / s) - n * cell_size / 2
    points = torch.stack(torch.meshgrid(sub, sub, sub, indexing="ij"), dim=-1)
    # (n, s, n, s, n, s, 3) -> (n, n, n, s^3, 3): the sub-points of each cell together
    return points.view(n, s, n, s, n, s, 3).permute(0, 2, 4, 1, 3, 5, 6).reshape(-1, 3)


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
        self.points = cell_points(obs.grid, obs.cell_size, supersample, dtype)
        self.frequencies = velocity_to_frequency(obs.offsets, line.frequency)
        self.background = background_intensity(background, self.frequencies)
        self.beam = obs.beam_kernel()
        self.pixel_sr = pixel_solid_angle(obs.cell_size, obs.distance)
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
            matrix = viewing_matrix(
                params["inclination"], params["position_angle"], params["azimuth"], dtype=self.dtype
            )
        fields = wind_fields(self.points @ matrix, params, self.family.single)
        density, temperature = fields.number_density_co, fields.temperature
        v_z = fields.velocity @ matrix[2]
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
        """(F, Y, X) model of the observation in its unit (the FITS array's orientation; K on
        the Rayleigh-Jeans scale, the only one a fit reads)."""
        sky = self.intensity(params).transpose(1, 2).flip(2)  # (F, Y, X), RA index to the west
        frequencies = torch.as_tensor(self.frequencies, dtype=sky.dtype)
        return convert_intensity(sky, frequencies, self.obs.unit, self.pixel_sr, self.beam, "rayleigh-jeans")
