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

Batches (a nested sampler's parameter vectors): free parameters given as (B,)
tensors (the fixed ones numbers or 0-d tensors) make every step batched, one
solver call for the B cubes: :meth:`ForwardModel.cube` gives (B, G, G, G),
:meth:`ForwardModel.intensity` (B, F, X, Y), the call (B, F, Y, X). A cube
whose temperatures leave the solver's range does not fail the batch: its
images are NaN (no model; :class:`coemu.fit.likelihood.BatchedLogLikelihood`
gives it a floor ln L), where one model's call raises ValueError as before.
With 0-d parameters (MAP, NUTS) every operation is the one it always was.

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
from coemu.rt.lte import TABLE_RANGE
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


def batch_size(params: dict[str, torch.Tensor]) -> int | None:
    """B of a batch of parameters (the length of its (B,) tensors), None for one model (every
    value a number or a 0-d tensor).

    Raises:
        ValueError: tensors of more than one axis, or of unequal lengths.
    """
    shapes = {tuple(v.shape) for v in params.values() if isinstance(v, torch.Tensor) and v.dim()}
    if not shapes:
        return None
    if len(shapes) > 1 or len(next(iter(shapes))) != 1:
        raise ValueError(f"batched parameters must all be (B,) tensors of one length, got {sorted(shapes)}")
    return next(iter(shapes))[0]


def in_solver_range(temperature: torch.Tensor) -> torch.Tensor:
    """(B,) bool: whether every temperature of each cube (B, ...) K lies in the solver's
    tabulated range (:data:`coemu.rt.lte.TABLE_RANGE`; NaN does not)."""
    t = temperature.detach().reshape(temperature.shape[0], -1)
    return ((t >= TABLE_RANGE[0]) & (t <= TABLE_RANGE[1])).all(dim=1)


class ForwardModel:
    """Parameters of ``family`` -> the model of ``obs.data`` (F, Y, X) in ``obs.unit``.

    Parameters are a dict of every parameter the family uses: numbers or 0-d tensors (one
    model), or with the free ones (B,) tensors (a batch of B models, outputs with a leading B
    axis; see the module docstring).

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
        """(temperature K, CO density m-3, line-of-sight velocity m/s), each (G, G, G) cube frame
        ((B, G, G, G) for a batch)."""
        batch = batch_size(params)
        if batch is not None:
            return self._cubes(params, batch)
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

    def _cubes(self, params: dict[str, torch.Tensor], batch: int) -> tuple[torch.Tensor, ...]:
        """:meth:`cube` of a batch of ``batch`` models: each field (B, G, G, G)."""
        if self.family.single:
            matrix = torch.eye(3, dtype=self.dtype)
        else:  # (B, 3, 3), or (3, 3) when no angle is batched
            matrix = viewing_matrix(
                params["inclination"], params["position_angle"], params["azimuth"], dtype=self.dtype
            )
        # (P, 3) @ (3, 3) -> (P, 3), shared by the batch; (P, 3) @ (B, 3, 3) -> (B, P, 3)
        fields = wind_fields(self.points @ matrix, params, self.family.single)
        density, temperature, velocity = fields.number_density_co, fields.temperature, fields.velocity
        # the line of sight is the cube frame's z: row 2 of R (v_cube = R v_model)
        v_z = (
            velocity @ matrix[2] if matrix.dim() == 2 else torch.einsum("bpk,bk->bp", velocity, matrix[:, 2])
        )
        # a field no batched parameter touches (e.g. the temperature when only the abundance
        # is free) is still (P,): every field to (B, P)
        density, temperature, v_z = (x.expand(batch, -1) for x in (density, temperature, v_z))
        g, s3 = self.obs.grid, self.supersample**3
        if s3 > 1:
            density, temperature, v_z = (x.reshape(batch, -1, s3) for x in (density, temperature, v_z))
            mass = density.sum(dim=-1)
            temperature = (density * temperature).sum(dim=-1) / mass
            v_z = (density * v_z).sum(dim=-1) / mass
            density = mass / s3
        return tuple(x.reshape(batch, g, g, g) for x in (temperature, density, v_z))

    def intensity(self, params: dict[str, torch.Tensor]) -> torch.Tensor:
        """(F, X, Y) W m-2 Hz-1 sr-1 in the cube frame; (B, F, X, Y) for a batch, NaN for each
        cube whose temperatures leave the solver's range (:func:`in_solver_range`; one model's
        call raises ValueError there)."""
        if batch_size(params) is not None:
            return self._intensities(params)
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

    def _intensities(self, params: dict[str, torch.Tensor]) -> torch.Tensor:
        """:meth:`intensity` of a batch: (B, F, X, Y), one solver (or emulator) call for the
        cubes in the solver's range, NaN images for the others."""
        temperature, density, v_z = self.cube(params)
        if self.backend == "emulator":
            dev = self.emulator.device
            out = self.emulator.intensities(*(x.to(dev) for x in (temperature, density, v_z)))
            return out.to(self.dtype).cpu()
        ok = in_solver_range(temperature)
        if bool(ok.all()):
            images = self._solve(temperature, density, v_z)
        else:
            g, n_freq = self.obs.grid, len(self.frequencies)
            images = torch.full((len(ok), g, g, n_freq), float("nan"), dtype=temperature.dtype)
            if bool(ok.any()):  # out of place: gradients flow to the solved cubes' images
                images = images.index_put((ok,), self._solve(temperature[ok], density[ok], v_z[ok]))
        return images.permute(0, 3, 1, 2)  # (B, X, Y, F) -> (B, F, X, Y)

    def _solve(self, temperature, density, v_z) -> torch.Tensor:
        """(B, X, Y, F) W m-2 Hz-1 sr-1: the solver's images of cubes (B, G, G, G) K, m-3, m/s."""
        return line_images(
            self.line,
            temperature,
            density,
            v_z,
            self.frequencies,
            self.obs.cell_size,
            v_turbulence=self.v_turbulence,
            background=self.background,
        )

    def __call__(self, params: dict[str, torch.Tensor]) -> torch.Tensor:
        """(F, Y, X) model of the observation in its unit (the FITS array's orientation; K on
        the Rayleigh-Jeans scale, the only one a fit reads); (B, F, Y, X) for a batch."""
        # (..., F, Y, X), RA index to the west
        sky = self.intensity(params).transpose(-2, -1).flip(-1)
        frequencies = torch.as_tensor(self.frequencies, dtype=sky.dtype)
        return convert_intensity(sky, frequencies, self.obs.unit, self.pixel_sr, self.beam, "rayleigh-jeans")
