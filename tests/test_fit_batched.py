"""The forward model's batched path and the batched likelihood (issue 29): a batch of B parameter
vectors gives what a loop of single calls gives, float64, to 1e-12 relative."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from coemu.constants import ASTRONOMICAL_UNIT as AU
from coemu.fit.family import Family, site_value, truth_values
from coemu.fit.forward import ForwardModel
from coemu.fit.likelihood import LOG_LIKELIHOOD_FLOOR, BatchedLogLikelihood, GaussianLikelihood
from coemu.fit.mock import template
from coemu.hydro.synthetic import PARAMETER_RANGES
from coemu.observe.fits import ObservationSettings
from coemu.physics import units, viewing, wind
from coemu.rt.lamda import load_line

LINE = load_line("CO", 1, None)
F64 = torch.float64
CHANNELS = 5
RTOL = 1e-12


def _truth():
    t = truth_values(1234, "m00003")
    t.update(inclination=55.0, position_angle=130.0)
    return t


def _setup(kind: str, beam: float | None, free=None, grid=8):
    """(family, forward model, likelihood) of a mock of ``kind`` (noise-free model x 1.05) on a
    ``grid``^3 cube, :data:`CHANNELS` channels across the line; Jy/beam with ``beam`` (arcsec,
    beam-correlated noise) or K without (white noise)."""
    settings = ObservationSettings(distance=150.0, beam_major=beam, unit="K" if beam is None else "Jy/beam")
    obs = template(grid, 100 * AU / grid, CHANNELS, 8000.0, settings, LINE)
    family = Family.make(kind, free=free, fixed=_truth())
    forward = ForwardModel(obs, family, LINE)
    truth = _truth()
    with torch.no_grad():
        clean = forward(_single(family, [truth[k] for k in family.free]))
    obs = dataclasses.replace(obs, data=1.05 * clean.numpy(), noise=0.05 * float(clean.abs().max()))
    return family, forward, GaussianLikelihood.of(obs)


def _single(family: Family, values) -> dict[str, torch.Tensor]:
    """One model's parameters (0-d tensors), the free ones at ``values``."""
    out = {k: torch.tensor(v, dtype=F64) for k, v in family.fixed.items()}
    out.update({k: torch.tensor(float(v), dtype=F64) for k, v in zip(family.free, values, strict=True)})
    return out


def _theta(family: Family, n: int, seed: int = 0) -> np.ndarray:
    """(n, D) physical values about the truth, inside the priors' ranges: every vector its own
    viewing angles (position angles beyond [0, 360) too: a plain angle)."""
    rng = np.random.default_rng(seed)
    truth = _truth()
    rows = []
    for _ in range(n):
        row = []
        for name in family.free:
            if name == "inclination":
                row.append(rng.uniform(5.0, 175.0))
            elif name == "position_angle":
                row.append(rng.uniform(-200.0, 560.0))
            else:
                lo, hi, _ = PARAMETER_RANGES[name]
                row.append(float(np.clip(truth[name] * math.exp(0.15 * rng.normal()), lo, hi)))
        rows.append(row)
    return np.array(rows)


def _close(got: np.ndarray, expected: np.ndarray, rtol: float = RTOL) -> None:
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=rtol * float(np.abs(expected).max()))


@pytest.mark.parametrize("beam", [0.15, None], ids=["beam", "no-beam"])
@pytest.mark.parametrize("kind", ["binary", "single"])
@pytest.mark.parametrize("batch", [3, CHANNELS], ids=["B=3", "B=channels"])
def test_batched_likelihood_and_images_are_a_loop_of_single_calls(kind, beam, batch):
    """B = 3 (the orbit's (B,) x (3,) broadcast) and B = the channels (the units' (F, 1, 1, 1)
    broadcast): both would be silently wrong, not fail, were the batch axis mishandled."""
    family, forward, like = _setup(kind, beam)
    theta = _theta(family, batch)
    batched = BatchedLogLikelihood(family, forward, like)
    got = batched(theta)
    assert got.shape == (batch,) and got.dtype == np.float64
    params = batched.parameters(torch.from_numpy(theta))
    with torch.no_grad():
        images = forward(params).numpy()
        cubes = [x.numpy() for x in forward.cube(params)]
        singles = [forward(_single(family, row)) for row in theta]
        expected = np.array([float(like(m)) for m in singles])
        single_cubes = [forward.cube(_single(family, row)) for row in theta]
    assert images.shape == (batch, *like.data.shape)
    _close(got, expected)
    for b in range(batch):
        _close(images[b], singles[b].numpy())
        for field, single_field in zip(cubes, single_cubes[b], strict=True):
            _close(field[b], single_field.numpy())
    assert len(set(np.round(got, 6))) == batch  # the vectors differ: a broadcast mix-up would show
    assert (batched.n_calls, batched.n_vectors, batched.n_batches, batched.n_floored) == (1, batch, 1, 0)


def test_batched_likelihood_is_the_samplers_at_the_same_physical_values():
    """ln L(theta) is the NUTS path's (:class:`coemu.fit.sample.Posterior` maps sites to values
    through the priors; the position angle there a 2-vector) at the same physical values."""
    from coemu.fit.sample import Posterior

    family, forward, like = _setup("binary", 0.15)
    posterior = Posterior(family, forward, like)
    theta = _theta(family, 4, seed=3)
    got = BatchedLogLikelihood(family, forward, like)(theta)
    for row, value in zip(theta, got, strict=True):
        sites = {p.site: site_value(p, float(v)) for p, v in zip(family.priors, row, strict=True)}
        with torch.no_grad():
            expected = float(posterior.log_likelihood_at(posterior.unconstrained(sites)))
        assert value == pytest.approx(expected, rel=1e-10)


def test_sub_batches_and_counters():
    family, forward, like = _setup("binary", 0.15)
    theta = _theta(family, 5, seed=1)
    whole = BatchedLogLikelihood(family, forward, like, max_batch=5)
    parts = BatchedLogLikelihood(family, forward, like, max_batch=2)
    _close(parts(theta), whole(theta))
    parts(theta[:1])
    assert (parts.n_calls, parts.n_vectors, parts.n_batches) == (2, 6, 4)
    assert parts.seconds > 0
    assert BatchedLogLikelihood(family, forward, like).max_batch >= 16  # the memory default
    with pytest.raises(ValueError, match="theta of shape"):
        whole(theta[:, :-1])
    with pytest.raises(ValueError, match="max_batch"):
        BatchedLogLikelihood(family, forward, like, max_batch=0)


def test_a_cube_outside_the_solvers_range_gets_the_floor_alone():
    """A stellar temperature of 1e7 K (its cells above the solver's table, 2e5 K): the single
    call raises, the batch gives that vector :data:`LOG_LIKELIHOOD_FLOOR` (finite) and the
    others their own ln L."""
    free = ("mass_loss_rate", "stellar_temperature", "inclination", "position_angle")
    family, forward, like = _setup("binary", 0.15, free=free)
    theta = _theta(family, CHANNELS, seed=2)
    theta[2, 1] = 1.0e7
    with pytest.raises(ValueError, match="outside the solver's range"), torch.no_grad():
        forward(_single(family, theta[2]))
    batched = BatchedLogLikelihood(family, forward, like)
    got = batched(theta)
    assert got[2] == LOG_LIKELIHOOD_FLOOR and np.isfinite(got).all()
    assert batched.n_floored == 1
    with torch.no_grad():
        expected = [float(like(forward(_single(family, row)))) for i, row in enumerate(theta) if i != 2]
    _close(np.delete(got, 2), np.array(expected))
    with torch.no_grad():  # the forward model: NaN images for that cube only
        images = forward(batched.parameters(torch.from_numpy(theta)))
    assert torch.isnan(images[2]).all() and np.isfinite(np.delete(images.numpy(), 2, axis=0)).all()
    theta[:, 1] = 1.0e7  # every cube out of range: no solver call at all
    assert (batched(theta) == LOG_LIKELIHOOD_FLOOR).all()


def test_gradients_flow_through_the_batch_as_through_single_calls():
    """The single path's gradients are checked against finite differences in test_fit.py; the
    batched path's equal them (a vector out of range included, its gradient 0)."""
    free = ("mass_loss_rate", "stellar_temperature", "inclination", "position_angle")
    family, forward, like = _setup("binary", 0.15, free=free)
    theta = _theta(family, 3, seed=4)
    theta[1, 1] = 1.0e7
    tensor = torch.tensor(theta, requires_grad=True)
    params = BatchedLogLikelihood(family, forward, like).parameters(tensor)
    ln_l = like(forward(params))
    ln_l[[0, 2]].sum().backward()
    for b in (0, 2):
        single = {
            k: torch.tensor(float(v), dtype=F64, requires_grad=True)
            for k, v in zip(free, theta[b], strict=True)
        }
        like(forward({**_single(family, theta[b]), **single})).backward()
        _close(tensor.grad[b].numpy(), np.array([float(single[k].grad) for k in free]), rtol=1e-10)
    assert (tensor.grad[1] == 0).all()


def test_batched_emulator_forward_model():
    from coemu.data.description import DataDescription
    from coemu.data.transform import Preprocessing
    from coemu.nn import emulator_kinds

    family, solver, _ = _setup("binary", 0.15)
    obs = solver.obs
    prep = Preprocessing(0.0, 5e3, math.log(10.0), 6.0, 0.0, 30.0, -40.0, -25.0)
    data = DataDescription(
        "CO",
        1,
        "",
        LINE.frequency,
        LINE.mass,
        list(obs.offsets),
        0.0,
        "zero",
        [0.0] * CHANNELS,
        obs.grid,
        obs.cell_size,
        prep.to_dict(),
    )
    emulator = emulator_kinds()["column"].from_data(data, hidden=8, layers=1).eval()
    emulator.data = data
    forward = ForwardModel(obs, family, LINE, "emulator", emulator)
    theta = _theta(family, 3)
    with torch.no_grad():
        images = forward(BatchedLogLikelihood(family, forward, None).parameters(torch.from_numpy(theta)))
        for b, row in enumerate(theta):
            _close(images[b].numpy(), forward(_single(family, row)).numpy(), rtol=1e-6)


@pytest.mark.parametrize("batch", [3, 4])
def test_wind_and_rotations_batched(batch):
    """(B,) parameters and (B, N, 3) points: each model's fields are its own single call's."""
    truth = _truth()
    rng = np.random.default_rng(batch)
    angles = [torch.tensor(rng.uniform(0, 360, batch)) for _ in range(3)]
    matrices = viewing.viewing_matrix(*angles)
    assert matrices.shape == (batch, 3, 3)
    for b in range(batch):
        _close(matrices[b].numpy(), viewing.viewing_matrix(*(float(a[b]) for a in angles)).numpy())
    names = ("separation", "orbital_phase", "eccentricity", "mass_loss_rate", "companion_mass")
    values = {k: truth[k] * (1 + 0.2 * rng.uniform(-1, 1, batch)) for k in names}
    params = {**{k: torch.tensor(v, dtype=F64) for k, v in truth.items()}}
    params.update({k: torch.tensor(v) for k, v in values.items()})
    points = torch.tensor(rng.uniform(-40, 40, (batch, 200, 3)) * AU)
    for single in (False, True):
        fields = wind.wind_fields(points, params, single)
        stars = wind.orbit(params)
        assert stars.agb.shape == (batch, 3) and stars.period.shape == (batch,)
        for b in range(batch):
            one = {**params, **{k: torch.tensor(float(v[b]), dtype=F64) for k, v in values.items()}}
            expected = wind.wind_fields(points[b], one, single)
            for got, want in zip(fields, expected, strict=True):
                _close(got[b].numpy(), want.numpy())
            if not single:
                _close(stars.agb[b].numpy(), wind.orbit(one).agb.numpy())


def test_convert_intensity_of_a_batch_with_as_many_cubes_as_channels():
    """(B, F, Y, X) with B == F: the frequencies broadcast over the channel axis, not the batch's."""
    rng = np.random.default_rng(0)
    nu = torch.tensor(LINE.frequency * (1 + 1e-5 * np.arange(CHANNELS)))
    sky = torch.tensor(rng.uniform(0, 1e-16, (CHANNELS, CHANNELS, 6, 6)))
    for scale in ("planck", "rayleigh-jeans"):
        got = units.convert_intensity(sky, nu, "K", 1e-12, None, scale)
        for b in range(CHANNELS):
            expected = units.convert_intensity(sky[b], nu, "K", 1e-12, None, scale)
            _close(got[b].numpy(), expected.numpy())
