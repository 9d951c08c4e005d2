"""Nested sampling (coemu.fit.nested) with UltraNest and nautilus on analytic likelihoods whose
evidence and posterior are known under the priors' unit-cube transform, and the learned harmonic
mean evidence of the nested draws (coemu.fit.evidence.ln_evidence_from_nested)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, special

from coemu.fit.family import Family, Prior, prior_of

nested = pytest.importorskip("coemu.fit.nested")
pytest.importorskip("ultranest")
pytest.importorskip("nautilus")

SAMPLERS = ("ultranest", "nautilus")
#: Small runs for the tests (seconds): fewer live points than the defaults, and for nautilus
#: one network instead of four (its networks' training is most of its time on 2 cores).
FAST = {
    "ultranest": {"live_points": 200},
    "nautilus": {"live_points": 500, "options": {"n_networks": 1}},
}


# --- the analytic cases -------------------------------------------------------------------------
class GaussianCase:
    """3D: wind velocity (uniform), mass-loss rate (log-uniform), inclination (isotropic); ln L a
    Gaussian in (v, ln Mdot, i) inside the priors. Z and the posterior's moments by quadrature
    (the likelihood factorises, so does the prior)."""

    priors = (prior_of("wind_velocity"), prior_of("mass_loss_rate"), prior_of("inclination"))
    mu = np.array([12.0, math.log(1e-6), 60.0])
    sd = np.array([0.5, 0.1, 5.0])

    def __call__(self, theta: np.ndarray) -> np.ndarray:
        x = np.column_stack([theta[:, 0], np.log(theta[:, 1]), theta[:, 2]])
        return -0.5 * (((x - self.mu) / self.sd) ** 2).sum(axis=1)

    def _factor(self, j: int):
        """(density of the posterior in the coordinate y = v, ln Mdot, i; its support)."""
        p = self.priors[j]
        like = lambda y: math.exp(-0.5 * ((y - self.mu[j]) / self.sd[j]) ** 2)  # noqa: E731
        if j == 0:
            return (lambda y: like(y) / (p.high - p.low)), (p.low, p.high)
        if j == 1:
            return (lambda y: like(y) / math.log(p.high / p.low)), (math.log(p.low), math.log(p.high))
        return (lambda y: like(y) * 0.5 * math.sin(math.radians(y)) * math.pi / 180), (0.0, 180.0)

    def truth(self) -> dict:
        """ln Z, and the posterior mean and std of (v, ln Mdot, i)."""
        ln_z, mean, std = 0.0, [], []
        for j in range(3):
            f, (a, b) = self._factor(j)
            pts = [self.mu[j]]
            z = integrate.quad(f, a, b, points=pts, epsabs=0)[0]
            m1 = integrate.quad(lambda y: y * f(y), a, b, points=pts, epsabs=0)[0] / z  # noqa: B023
            m2 = integrate.quad(lambda y: y * y * f(y), a, b, points=pts, epsabs=0)[0] / z  # noqa: B023
            ln_z += math.log(z)
            mean.append(m1)
            std.append(math.sqrt(m2 - m1 * m1))
        return {"ln_z": ln_z, "mean": np.array(mean), "std": np.array(std)}

    @staticmethod
    def coordinates(theta: np.ndarray) -> np.ndarray:
        return np.column_stack([theta[:, 0], np.log(theta[:, 1]), theta[:, 2]])


class BimodalCase:
    """2D on [0, 1]^2: two narrow normalised Gaussians of weights 0.3 and 0.7 (Z = 1), with
    ln L = -1e100 (the batched likelihood's invalid value) in a corner that holds no mass."""

    priors = (Prior("a", "uniform", 0.0, 1.0), Prior("b", "uniform", 0.0, 1.0))
    weights = (0.3, 0.7)
    centres = (np.array([0.25, 0.25]), np.array([0.75, 0.7]))
    sd = 0.03

    def __call__(self, theta: np.ndarray) -> np.ndarray:
        terms = [
            math.log(w) - 0.5 * (((theta - c) / self.sd) ** 2).sum(1) - math.log(2 * math.pi * self.sd**2)
            for w, c in zip(self.weights, self.centres, strict=True)
        ]
        out = np.logaddexp(*terms)
        return np.where(theta.sum(1) > 1.9, nested.INVALID, out)

    def truth(self) -> dict:
        return {"ln_z": 0.0}


class PeriodicCase:
    """2D: the position angle (circle prior) with a von Mises likelihood about 355 degrees
    (kappa 20: sd about 13 degrees, across 0 = 360), and the wind velocity with a Gaussian."""

    priors = (prior_of("position_angle"), prior_of("wind_velocity"))
    centre, kappa = 355.0, 20.0
    v0, v_sd = 9.0, 1.0

    def __call__(self, theta: np.ndarray) -> np.ndarray:
        pa = np.radians(theta[:, 0] - self.centre)
        return self.kappa * (np.cos(pa) - 1.0) - 0.5 * ((theta[:, 1] - self.v0) / self.v_sd) ** 2

    def truth(self) -> dict:
        lo, hi = self.priors[1].low, self.priors[1].high
        z_v = math.sqrt(2 * math.pi) * self.v_sd / (hi - lo)  # the Gaussian lies inside [lo, hi]
        # the circle's mean of exp(kappa (cos - 1)) is I0(kappa) exp(-kappa)
        return {"ln_z": math.log(special.i0e(self.kappa)) + math.log(z_v)}


CASES = {"gaussian": GaussianCase, "bimodal": BimodalCase, "periodic": PeriodicCase}


def run_case(name: str, sampler: str, seed: int = 1, min_ess: int = 1000, **kw):
    case = CASES[name]()
    settings = {**FAST[sampler], **kw}
    return case, nested.run_nested(case, case.priors, sampler=sampler, seed=seed, min_ess=min_ess, **settings)


def assert_ln_z(result, truth: float) -> None:
    """ln Z within 3 sigma of the truth, or 0.3 (the brief's tolerance)."""
    assert result.failed is None, result.failed
    assert result.converged, result.diagnostics
    error = abs(result.log_z - truth)
    assert error < max(3 * result.log_z_error, 0.3), (result.summary(), truth)


# --- fixtures: one run per (case, sampler), shared by the tests ----------------------------------
@pytest.fixture(scope="module")
def gaussian_runs():
    """The Gaussian case with enough equal-weight draws for the harmonic mean (20 x 100)."""
    return {s: run_case("gaussian", s, min_ess=nested.HARMONIC_MIN_ESS[s]) for s in SAMPLERS}


# --- fast checks without a sampler ---------------------------------------------------------------
def test_unit_cube_transform_gives_the_priors():
    priors = Family.make("binary").priors
    transform = nested.unit_cube_transform(priors)
    rng = np.random.default_rng(0)
    u = rng.random((200_000, len(priors)))
    before = u.copy()
    x = transform(u)
    assert np.array_equal(u, before)  # ultranest checks that u is not modified
    assert x.shape == u.shape
    for j, p in enumerate(priors):
        col = x[:, j]
        if p.kind == "uniform":
            assert col.min() >= p.low and col.max() <= p.high
            assert col.mean() == pytest.approx(0.5 * (p.low + p.high), rel=0.01)
        elif p.kind == "log-uniform":
            assert np.log(col).mean() == pytest.approx(0.5 * math.log(p.low * p.high), abs=0.01)
        elif p.kind == "isotropic":  # cos i uniform on [-1, 1]
            c = np.cos(np.radians(col))
            assert col.min() >= 0 and col.max() <= 180
            assert c.mean() == pytest.approx(0.0, abs=0.01) and c.var() == pytest.approx(1 / 3, rel=0.01)
        else:
            assert col.min() >= 0 and col.max() < 360 and col.mean() == pytest.approx(180, rel=0.01)
    # one vector (D,) as well as a batch
    assert transform(u[0]).shape == (len(priors),)
    np.testing.assert_allclose(nested.site_unit(priors[:4], x[:5, :4]), u[:5, :4], rtol=1e-10)


def test_unconstrained_density_is_the_nuts_potential():
    """The nested draws' NUTS coordinates and density against the pyro Posterior's own potential."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("pyro")
    from coemu.fit.sample import Posterior

    family = Family.make("binary")

    def log_likelihood(params):
        v, i, pa = params["wind_velocity"], params["inclination"], params["position_angle"]
        return (
            -0.5 * ((v - 11.0) / 2.0) ** 2 + torch.cos(torch.deg2rad(i - 40.0)) + torch.sin(torch.deg2rad(pa))
        )

    posterior = Posterior(family, lambda p: p, log_likelihood)
    rng = np.random.default_rng(3)
    theta = nested.unit_cube_transform(family.priors)(rng.random((20, len(family.priors))))

    def as_tensors(t):
        return {n: torch.tensor(v, dtype=torch.float64) for n, v in zip(family.free, t, strict=True)}

    ln_l = np.array([float(log_likelihood(as_tensors(t))) for t in theta])
    z, log_density = nested.unconstrained(family.priors, theta, ln_l, rng)
    assert z.shape == (20, len(family.priors) + 1)
    for k in range(len(theta)):
        sites = posterior.unflatten(z[k])
        assert -float(posterior.potential_fn(sites)) == pytest.approx(log_density[k], rel=1e-9, abs=1e-9)
        params = posterior.parameters(sites)
        for j, name in enumerate(family.free):
            assert float(params[name]) == pytest.approx(theta[k, j], rel=1e-9)


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_a_failing_likelihood_is_reported_not_raised(sampler):
    def broken(theta):
        raise RuntimeError("the emulator fell over")

    result = nested.run_nested(broken, GaussianCase.priors, sampler=sampler, **FAST[sampler])
    assert result.failed and "the emulator fell over" in result.failed
    assert not result.converged and math.isnan(result.log_z)
    wrong = nested.run_nested(lambda t: np.zeros(len(t) + 1), GaussianCase.priors, sampler=sampler)
    assert "shape" in wrong.failed
    with pytest.raises(ValueError, match="unknown sampler"):
        nested.run_nested(broken, GaussianCase.priors, sampler="dynesty")


def test_harmonic_of_too_few_draws_gives_a_reason():
    from coemu.fit.evidence import ln_evidence_from_nested

    case = GaussianCase()
    rng = np.random.default_rng(0)
    theta = nested.unit_cube_transform(case.priors)(rng.random((500, 3)))
    result = nested.NestedResult("ultranest", ("a", "b", "c"), 0.0, 0.1, "", theta, case(theta))
    ev = ln_evidence_from_nested(result, case.priors)
    assert ev["ln_evidence"] is None and ev["delta_sigma"] is None and "500 equal-weight" in ev["reason"]
    failed = nested.NestedResult("nautilus", ("a", "b", "c"), failed="RuntimeError: x")
    assert "failed" in ln_evidence_from_nested(failed, case.priors)["reason"]


# --- the samplers on the analytic cases ----------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("sampler", SAMPLERS)
def test_gaussian_evidence_and_moments(sampler, gaussian_runs):
    case, result = gaussian_runs[sampler]
    truth = case.truth()
    assert_ln_z(result, truth["ln_z"])
    y = case.coordinates(result.samples)
    n = len(y)
    assert n >= 2000 and len(np.unique(result.samples, axis=0)) == n  # no duplicates
    # the mean within 4 standard errors, the std within 4 of its own (about sd / sqrt(2 n))
    np.testing.assert_array_less(np.abs(y.mean(0) - truth["mean"]), 4 * truth["std"] / math.sqrt(n))
    np.testing.assert_allclose(y.std(0), truth["std"], rtol=4 / math.sqrt(2 * n))
    assert result.n_calls > 0 and result.diagnostics["ess"] >= nested.HARMONIC_MIN_ESS[sampler] * 0.99


@pytest.mark.slow
@pytest.mark.parametrize("sampler", SAMPLERS)
def test_harmonic_evidence_of_nested_draws(sampler, gaussian_runs):
    from coemu.fit.evidence import ln_evidence_from_nested

    case, result = gaussian_runs[sampler]
    truth = case.truth()["ln_z"]
    ev = ln_evidence_from_nested(result, case.priors, epochs=20, seed=0)
    assert ev["reason"] is None, ev
    assert ev["chains_used"] >= 10 and ev["draws_per_chain"] >= 100
    sigma = math.hypot(ev["error"], result.log_z_error)
    assert abs(ev["ln_evidence"] - truth) < 3 * sigma + 0.05, (ev, truth)
    assert abs(ev["delta_sigma"]) < 4, ev


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_bimodal_modes_and_masses(sampler):
    case, result = run_case("bimodal", sampler, seed=2)
    assert_ln_z(result, case.truth()["ln_z"])
    x = result.samples
    first = x[:, 0] < 0.5
    n, f = len(x), float(first.mean())
    w = case.weights[0]
    assert abs(f - w) < 4 * math.sqrt(w * (1 - w) / n), (f, n)  # binomial error
    for mode, centre in zip((first, ~first), case.centres, strict=True):
        np.testing.assert_allclose(x[mode].mean(0), centre, atol=5 * case.sd / math.sqrt(mode.sum()))
    assert (result.log_likelihood > -1e99).all()  # the invalid corner holds no draws


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_periodic_mode_across_zero(sampler):
    case, result = run_case("periodic", sampler, seed=3)
    assert_ln_z(result, case.truth()["ln_z"])
    pa = np.radians(result.samples[:, 0])
    n = len(pa)
    assert (result.samples[:, 0] >= 0).all() and (result.samples[:, 0] < 360).all()
    # both sides of 0 = 360 are populated, and the circular mean is the centre
    assert (result.samples[:, 0] < 30).mean() > 0.3 and (result.samples[:, 0] > 330).mean() > 0.3
    mean = math.degrees(math.atan2(np.sin(pa).mean(), np.cos(pa).mean())) % 360
    sd = math.degrees(1 / math.sqrt(case.kappa))
    assert abs((mean - case.centre + 180) % 360 - 180) < 4 * sd / math.sqrt(n)
    # the resultant length of a von Mises: I1 / I0
    r = math.hypot(np.sin(pa).mean(), np.cos(pa).mean())
    assert r == pytest.approx(special.i1e(case.kappa) / special.i0e(case.kappa), abs=0.01)


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_one_free_parameter(sampler):
    """nautilus needs 2 dimensions: a dummy one is added and dropped; NaN ln L counted."""
    prior = (prior_of("wind_velocity"),)

    def loglike(theta):
        out = -0.5 * ((theta[:, 0] - 10.0) / 0.5) ** 2
        out[theta[:, 0] > 19.5] = np.nan
        return out

    result = nested.run_nested(loglike, prior, sampler=sampler, seed=4, min_ess=500, **FAST[sampler])
    assert result.samples.shape[1] == 1
    assert_ln_z(result, math.log(math.sqrt(2 * math.pi) * 0.5 / 15.0))
    assert result.samples[:, 0].mean() == pytest.approx(10.0, abs=0.1)
    assert result.diagnostics["non_finite"] > 0
