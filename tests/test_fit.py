"""Fitting: the fit's tensor calls of coemu.physics against the numpy edges, gradients against
finite differences, the likelihood against the exact Gaussian, the evidence on a known case, a
whole fit, bad inputs."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from astropy.io import fits
from conftest import run_cli

from coemu import settings
from coemu.constants import ASTRONOMICAL_UNIT as AU
from coemu.fit.data import read_observation
from coemu.fit.evidence import ln_evidence
from coemu.fit.family import Family, site_value, truth_values
from coemu.fit.forward import ForwardModel
from coemu.fit.likelihood import MODE_FLOOR, GaussianLikelihood
from coemu.fit.mock import template, write_mock
from coemu.fit.sample import Chains, Posterior, SamplerSettings, convergence
from coemu.hydro.synthetic import draw_parameters, wind_fields
from coemu.io.errors import CoemuInputError
from coemu.observe.fits import ObservationSettings, observation
from coemu.observe.viewing import viewing_matrix
from coemu.physics import viewing, wind
from coemu.rt.lamda import load_line

LINE = load_line("CO", 1, None)
F64 = torch.float64


def _tensors(values: dict) -> dict:
    return {k: torch.tensor(float(v), dtype=F64) for k, v in values.items()}


def _truth(index=3, inclination=55.0, position_angle=130.0):
    t = truth_values(1234, f"m{index:05d}")
    t.update(inclination=inclination, position_angle=position_angle)
    return t


@pytest.mark.parametrize("index", [0, 5, 11])
def test_fit_wind_is_the_synthetic_wind(index):
    """The forward model's call (0-d tensor parameters) and the synthetic data set's numpy edge
    of the one wind (coemu.physics.wind) agree."""
    params = draw_parameters(1234, index)
    rng = np.random.default_rng(index)
    position = rng.uniform(-60, 60, size=(2000, 3)) * AU
    expected = wind_fields(position, params)
    p = params.to_dict()
    p.pop("domain_half_extent")
    got = wind.wind_fields(torch.tensor(position), _tensors(p))
    np.testing.assert_allclose(got.velocity.numpy(), expected["velocity"], rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(got.temperature.numpy(), expected["temperature"], rtol=1e-12)
    np.testing.assert_allclose(got.number_density_co.numpy(), expected["number_density_co"], rtol=1e-12)


def test_single_star_wind_has_no_structure():
    p = _tensors(truth_values(1234, "m00002"))
    position = torch.tensor(np.random.default_rng(0).normal(size=(500, 3)) * 30 * AU)
    fields = wind.wind_fields(position, p, single=True)
    velocity, density = fields.velocity, fields.number_density_co
    r = position.norm(dim=1)
    order = torch.argsort(r)
    assert (torch.diff(density[order]) <= 1e-30).all()  # monotonic in r: spherical, no spiral
    radial = (velocity * position).sum(1) / r
    np.testing.assert_allclose(radial.numpy(), velocity.norm(dim=1).numpy(), rtol=1e-12)


def test_fit_viewing_matrix_is_the_observers():
    """Tensor angles that require grad (the fit's) and the observer's checked numpy call."""
    for angles in [(0, 0, 0), (30, 20, 10), (120, 300, 77), (90, 45, 200)]:
        expected = viewing_matrix(*angles)
        tensors = [torch.tensor(float(a), dtype=F64, requires_grad=True) for a in angles]
        got = viewing.viewing_matrix(*tensors)
        np.testing.assert_allclose(got.detach().numpy(), expected, atol=1e-14)
        got[0, 1].backward()
        assert all(t.grad is not None for t in tensors)


def _template(grid=8, channels=5, spacing=3000.0, beam=0.15, unit="Jy/beam", distance=150.0):
    obs_settings = ObservationSettings(distance=distance, beam_major=beam, unit=unit)
    return template(grid, 100 * AU / grid, channels, spacing, obs_settings, LINE), obs_settings


@pytest.mark.parametrize(
    "unit,beam", [("Jy/beam", 0.15), ("Jy/pixel", 0.15), ("K", None), ("Jy/pixel", None)]
)
def test_forward_model_units_and_beam_are_the_observation_writers(unit, beam):
    """The torch path (FFT beam, units) against coemu.observe.fits.observation (astropy)."""
    obs, obs_settings = _template(unit=unit, beam=beam)
    if unit == "K":
        import dataclasses

        obs_settings = dataclasses.replace(obs_settings, temperature_scale="rayleigh-jeans")
    family = Family.make("binary", fixed=_truth())
    forward = ForwardModel(obs, family, LINE)
    params = _tensors({**family.fixed, **{k: _truth()[k] for k in family.free}})
    with torch.no_grad():
        model = forward(params).numpy()
        intensity = forward.intensity(params).numpy()
    hdu = observation(intensity, obs.offsets, LINE.frequency, obs.cell_size, obs_settings)
    assert model.shape == hdu.data.shape
    np.testing.assert_allclose(model, hdu.data, rtol=2e-6, atol=2e-6 * float(np.abs(hdu.data).max()))


def test_gradients_match_finite_differences():
    """Every free parameter of the binary family, float64, through the wind, solver and beam."""
    obs, _ = _template(grid=8, channels=4)
    truth = _truth()
    family = Family.make("binary", fixed=truth)
    forward = ForwardModel(obs, family, LINE)
    weights = torch.tensor(np.random.default_rng(1).normal(size=obs.data.shape))
    scale = None

    def objective(free: dict) -> torch.Tensor:
        nonlocal scale
        out = forward({**_tensors(family.fixed), **free})
        scale = scale or float(out.detach().abs().max())
        return (weights * out).sum() / scale

    free = {k: torch.tensor(truth[k], dtype=F64, requires_grad=True) for k in family.free}
    objective(free).backward()
    for name in family.free:
        h = 1e-6 * max(abs(truth[name]), 1e-3)
        with torch.no_grad():
            up = objective({**free, name: torch.tensor(truth[name] + h, dtype=F64)})
            down = objective({**free, name: torch.tensor(truth[name] - h, dtype=F64)})
        numeric = float(up - down) / (2 * h)
        analytic = float(free[name].grad)
        assert analytic == pytest.approx(numeric, rel=1e-4, abs=1e-7 * max(1.0, abs(numeric))), name
        assert analytic != 0.0, name


def _circulant_covariance(beam, shape) -> np.ndarray:
    """The covariance of the observation writer's beam noise, unit rms, built from its own code
    (the beam's periodic convolution, :meth:`coemu.physics.units.BeamKernel.convolve_periodic`)."""
    n = shape[0] * shape[1]
    units = torch.eye(n, dtype=F64).reshape(n, *shape)  # one unit impulse per pixel
    columns = beam.convolve_periodic(units).reshape(n, n).T.numpy()
    a = columns / math.sqrt(float((beam.kernel**2).sum()))
    return a @ a.T


def test_beam_likelihood_is_the_exact_gaussian():
    from scipy.stats import multivariate_normal

    obs, _ = _template(grid=6, channels=1, beam=0.25)
    beam = obs.beam_kernel()
    kernel = beam.kernel
    shape = obs.data.shape[1:]
    sigma = 0.7
    cov = sigma**2 * _circulant_covariance(beam, shape)
    rng = np.random.default_rng(3)
    data = rng.multivariate_normal(np.zeros(cov.shape[0]), cov).reshape(1, *shape)
    model = 0.5 * rng.multivariate_normal(np.zeros(cov.shape[0]), cov).reshape(data.shape)  # beam-smooth
    like = GaussianLikelihood(data, sigma, kernel)
    expected = multivariate_normal(mean=model.reshape(-1), cov=cov, allow_singular=True).logpdf(
        data.reshape(-1)
    )
    assert float(like(torch.tensor(model))) == pytest.approx(expected, rel=1e-6)
    white = GaussianLikelihood(data, sigma)
    assert float(white(torch.tensor(model))) == pytest.approx(
        multivariate_normal(model.reshape(-1), sigma**2).logpdf(data.reshape(-1)), rel=1e-10
    )


def test_beam_noise_of_the_writer_whitens_to_unit_chi2():
    from coemu.observe.fits import _noise

    obs, obs_settings = _template(grid=24, channels=6)
    import dataclasses

    noisy = dataclasses.replace(obs_settings, noise=2.5, noise_seed=4)
    noisy.check(obs.cell_size)
    noise = _noise(obs.data.shape, noisy, obs.beam_kernel())
    like = GaussianLikelihood(noise, 2.5, obs.beam_kernel().kernel)
    # each mode adds its true variance over the modelled one (the floor: modes the beam removes)
    v = like.variance.numpy()
    weight = (v - MODE_FLOOR * v.max()) / v
    expected, spread = noise.shape[0] * weight.sum(), math.sqrt(2 * noise.shape[0] * (weight**2).sum())
    assert expected > 0.2 * noise.size
    assert float(like.chi2(torch.zeros(noise.shape, dtype=F64))) == pytest.approx(expected, abs=5 * spread)


class _Gaussian:
    """A stand-in likelihood on the single family's two sites: N(y | (ln mdot, v), diag(s^2))."""

    def __init__(self, y, s):
        self.y, self.s = torch.tensor(y, dtype=F64), torch.tensor(s, dtype=F64)

    def forward(self, params):
        return torch.stack([torch.log(params["mass_loss_rate"]), params["wind_velocity"]])

    def __call__(self, x):
        return (-0.5 * ((x - self.y) / self.s) ** 2 - torch.log(self.s * math.sqrt(2 * math.pi))).sum()


@pytest.mark.slow
def test_nuts_and_harmonic_evidence_on_a_known_case():
    """Uniform priors, a narrow Gaussian likelihood inside them: Z = 1 / prior volume, known."""
    lo, hi = math.log(1e-7), math.log(5e-6)
    g = _Gaussian([0.5 * (lo + hi), 12.0], [0.15, 0.8])
    posterior = Posterior(Family.make("single"), g.forward, g)
    found = posterior.find_map(SamplerSettings(starts=3, seed=1))
    assert found["log_posterior"] == pytest.approx(float(g(g.y)) - math.log((hi - lo) * 15.0), abs=1e-4)
    chains = posterior.sample(found["z"], SamplerSettings(chains=4, warmup=150, samples=400, seed=2))
    diag = convergence(chains)
    assert diag["converged"], diag
    v = chains.values["wind_velocity"]
    assert v.mean() == pytest.approx(12.0, abs=0.15)
    assert v.std() == pytest.approx(0.8, rel=0.15)
    ev = ln_evidence(chains.z, chains.log_density, epochs=20, seed=0)
    truth = -math.log((hi - lo) * 15.0)
    assert abs(ev["ln_evidence"] - truth) < 3 * ev["error"] + 0.05, (ev, truth)


def test_harmonic_evidence_of_exact_posterior_samples():
    """A Gaussian likelihood and a Gaussian prior in 3D (conjugate: the evidence is analytic)."""
    rng = np.random.default_rng(5)
    d, prior_sd, like_sd = 3, 2.0, 0.5
    y = np.array([0.3, -0.8, 1.1])
    post_var = 1 / (1 / prior_sd**2 + 1 / like_sd**2)
    post_mean = post_var * y / like_sd**2
    z = post_mean + math.sqrt(post_var) * rng.standard_normal((4, 1000, d))

    def log_joint(x):
        return (
            -0.5 * (((x - y) / like_sd) ** 2).sum(-1)
            - d * math.log(like_sd * math.sqrt(2 * math.pi))
            - 0.5 * ((x / prior_sd) ** 2).sum(-1)
            - d * math.log(prior_sd * math.sqrt(2 * math.pi))
        )

    var = prior_sd**2 + like_sd**2
    truth = -0.5 * (y**2).sum() / var - d * 0.5 * math.log(2 * math.pi * var)
    ev = ln_evidence(z, log_joint(z), epochs=20, seed=0)
    assert abs(ev["ln_evidence"] - truth) < 3 * ev["error"] + 0.05, (ev, truth)
    with pytest.raises(ValueError, match="2 chains"):
        ln_evidence(z[:1], log_joint(z[:1]))


def test_convergence_reports_stuck_and_divergent_chains():
    rng = np.random.default_rng(0)
    z = rng.standard_normal((2, 200, 1))
    values = {"mass_loss_rate": np.exp(z[..., 0])}
    family = Family.make("single", free=["mass_loss_rate"])
    good = Chains(["ln_mass_loss_rate"], family.priors, z, z[..., 0], z[..., 0], values, [0, 0], 1.0)
    assert convergence(good)["converged"]
    stuck = z.copy()
    stuck[1] += 3.0  # the second chain sits elsewhere
    bad = Chains(
        ["ln_mass_loss_rate"],
        family.priors,
        stuck,
        stuck[..., 0],
        stuck[..., 0],
        {"mass_loss_rate": np.exp(stuck[..., 0])},
        [0, 0],
        1.0,
    )
    report = convergence(bad)
    assert report["max_r_hat"] > 1.01 and not report["converged"]
    divergent = Chains(["ln_mass_loss_rate"], family.priors, z, z[..., 0], z[..., 0], values, [3, 0], 1.0)
    report = convergence(divergent)
    assert report["divergences"] == 3 and not report["converged"]


def _mock(path, kind="binary", snr=30.0, grid=8, **kw):
    obs, obs_settings = _template(grid=grid, **kw)
    truth = _truth()
    write_mock(path, Family.make(kind, fixed=truth), truth, LINE, obs, obs_settings, snr, seed=7)
    return truth


def _no_nan(value, where="summary") -> None:
    """Fail on any NaN or infinity anywhere in a JSON value."""
    if isinstance(value, dict):
        for k, v in value.items():
            _no_nan(v, f"{where}.{k}")
    elif isinstance(value, list):
        for k, v in enumerate(value):
            _no_nan(v, f"{where}[{k}]")
    elif isinstance(value, float):
        assert math.isfinite(value), where


@pytest.mark.slow  # about 90 s on 2 cores
def test_coemu_fit_end_to_end(tmp_path):
    """A single-star mock, both families (binary with 3 free parameters), the default sampler
    (nested, nautilus): outputs, an arviz-readable posterior, the nested ln Z with its error and
    harmonic's cross-check (or its reason), the timing, no NaN in summary.json, and the true
    family preferred."""
    import arviz as az

    # 7 channels 6 km/s apart hold the whole line (with fewer, wind velocity and mass-loss rate
    # are degenerate and the posterior a curved ridge)
    truth = _mock(tmp_path / "mock.fits", kind="single", snr=30.0, channels=7, spacing=6000.0)
    fixed = [f"{k}={v}" for k, v in truth.items()]
    binary_free = ["mass_loss_rate", "wind_velocity", "spiral_contrast"]
    fit = {
        "families": ["single", "binary"],
        "free": {"binary": binary_free},
        "live_points": 200,
        "min_ess": 5000,  # enough draws for harmonic's cross-check (binary; single: the reason)
        "evidence_epochs": 10,
    }
    run_cli(
        "fit",
        str(tmp_path / "mock.fits"),
        "--out",
        str(tmp_path / "fit"),
        "--fixed",
        *fixed,
        "--config",
        json.dumps({"fit": fit}),
    )
    text = (tmp_path / "fit" / "summary.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    summary = json.loads(text)
    _no_nan(summary)
    assert summary["sampler"]["method"] == "nested" and summary["sampler"]["nested_sampler"] == "nautilus"
    for family in ("binary", "single"):
        for suffix in ("posterior.nc", "corner.png", "channels.png"):
            assert (tmp_path / "fit" / f"{family}.{suffix}").stat().st_size > 0
        part = summary["families"][family]
        ev = part["evidence"]
        assert ev["method"] == "nautilus" and ev["error"] > 0 and math.isfinite(ev["ln_evidence"]), ev
        h = ev["harmonic"]
        assert (h["reason"] is None) == (h["ln_evidence"] is not None), h
        if h["reason"] is None:
            assert h["error"] > 0 and abs(h["delta_sigma"]) < 5, h
        conv = part["convergence"]
        assert conv["converged"] and conv["failed"] is None and conv["ess"] >= 5000, conv
        assert conv["stopped_by"] and conv["n_calls"] > 0
        t = part["timing"]
        assert t["likelihood_seconds_batched"] > 0 and t["likelihood_seconds_single"] > 0
        assert t["fit_seconds"] >= t["nested_seconds"] > 0
        assert "highest ln L" in part["map_method"]
        assert "pair_mass" not in part  # the binary's viewing angles are fixed here
    # the binary run's draws are enough for harmonic: the cross-check is there
    assert summary["families"]["binary"]["evidence"]["harmonic"]["reason"] is None
    idata = az.from_netcdf(str(tmp_path / "fit" / "binary.posterior.nc"))
    assert idata.posterior.sizes["chain"] == 1 and idata.posterior.sizes["draw"] >= 2000
    assert set(idata.posterior.data_vars) == set(binary_free)
    bf = summary["ln_bayes_factors"]["single/binary"]
    assert bf["ln_bayes_factor"] > 2.0 and bf["error"] > 0 and bf["methods"] == ["nautilus", "nautilus"]
    single = summary["families"]["single"]
    assert single["map"]["wind_velocity"] == pytest.approx(truth["wind_velocity"], rel=0.05)
    assert (tmp_path / "fit" / "summary.tsv").read_text().count("ln Z") == 2
    assert "nautilus" in (tmp_path / "fit" / "summary.md").read_text()


def test_bayes_factor_of_missing_or_nested_evidences():
    """Both evidence dicts (NUTS's harmonic, a nested sampler's with its cross-check); a missing
    one gives a reason, never NaN."""
    from coemu.fit.evidence import ln_bayes_factor

    nuts = {"ln_evidence": 10.0, "error": 0.3}
    nested = {
        "ln_evidence": 7.0,
        "error": 0.4,
        "method": "nautilus",
        "harmonic": {"ln_evidence": 7.1, "error": 0.2, "reason": None},
    }
    bf = ln_bayes_factor(nuts, nested)
    assert bf["ln_bayes_factor"] == pytest.approx(3.0) and bf["error"] == pytest.approx(0.5)
    assert bf["methods"] == ["harmonic", "nautilus"] and bf["reason"] is None and "harmonic" not in bf
    both = ln_bayes_factor(
        nested,
        {
            **nested,
            "ln_evidence": 5.0,
            "harmonic": {"ln_evidence": None, "error": None, "reason": "few draws"},
        },
    )
    assert both["ln_bayes_factor"] == pytest.approx(2.0)
    assert both["harmonic"]["ln_bayes_factor"] is None and "few draws" in both["harmonic"]["reason"]
    for missing in (
        {"ln_evidence": float("nan"), "error": float("nan"), "reason": "flow"},
        {"ln_evidence": None, "error": None},
    ):
        bf = ln_bayes_factor(nuts, missing)
        assert bf["ln_bayes_factor"] is None and bf["error"] is None and "second" in bf["reason"]


def test_pair_mass_of_a_nested_binary_fit():
    """The summary's pair mass: the nested run's weighted points around the true view, for the
    binary family with both angles free and known; None otherwise."""
    from coemu.fit.nested import NestedResult
    from coemu.fit.run import _pair_mass, json_ready

    family = Family.make("binary", fixed=_truth())
    rng = np.random.default_rng(0)
    n = 4000
    theta = np.column_stack([rng.uniform(size=(n, len(family.free)))])
    i, pa = family.free.index("inclination"), family.free.index("position_angle")
    theta[:, i] = np.where(np.arange(n) < 3000, 55.0, 125.0) + rng.normal(0, 2, n)  # view, mirror
    theta[:, pa] = np.where(np.arange(n) < 3000, 130.0, 310.0) + rng.normal(0, 2, n)
    result = NestedResult(
        "nautilus", family.free, weighted_samples=theta, log_weights=np.full(n, -math.log(n))
    )
    mass, line = _pair_mass(family, result, _truth())
    members = {m["name"]: m["mass"] for m in mass["members"]}
    assert members["view"] == pytest.approx(0.75, abs=0.01) and sum(members.values()) + mass[
        "elsewhere"
    ] == pytest.approx(1.0)
    assert "the true view" in line
    json.dumps(json_ready(mass), allow_nan=False)
    assert _pair_mass(family, result, None) is None
    assert _pair_mass(Family.make("single"), result, _truth()) is None


def _edit(src, dst, **cards):
    with fits.open(src) as hdul:
        header, data = hdul[0].header.copy(), hdul[0].data
    for key, value in cards.items():
        if value is None:
            del header[key]
        else:
            header[key] = value
    fits.PrimaryHDU(data, header).writeto(dst)
    return dst


@pytest.mark.parametrize(
    "cards,keyword",
    [
        ({"RESTFRQ": None}, "RESTFRQ"),
        ({"RESTFRQ": 345.796e9}, "RESTFRQ"),
        ({"CTYPE3": "VOPT"}, "CTYPE3"),
        ({"CUNIT3": "K"}, "CUNIT3"),
        ({"BUNIT": "mJy/beam"}, "BUNIT"),
        ({"BUNIT": "K", "TBSCALE": "PLANCK"}, "TBSCALE"),
        ({"BMAJ": None}, "BMAJ"),
        ({"DISTPC": None}, "DISTPC"),
        ({"CTYPE1": "GLON-CAR"}, "CTYPE1"),
        ({"CDELT2": 1e-4}, "CDELT2"),
    ],
)
def test_bad_headers_name_the_keyword(tmp_path, cards, keyword):
    _mock(tmp_path / "good.fits")
    bad = _edit(tmp_path / "good.fits", tmp_path / "bad.fits", **cards)
    with pytest.raises(CoemuInputError) as err:
        read_observation(bad, LINE.frequency)
    assert err.value.variable == keyword
    assert keyword in str(err.value) and "bad.fits" in str(err.value)


def test_an_observation_without_noise_needs_the_rms(tmp_path):
    obs, obs_settings = _template(spacing=6000.0)  # the edge channels at +-12 km/s: line-free
    forward = ForwardModel(obs, Family.make("single"), LINE)
    params = _tensors({**Family.make("single").fixed, "mass_loss_rate": 1e-6, "wind_velocity": 5.0})
    with torch.no_grad():
        hdu = observation(
            forward.intensity(params).numpy(), obs.offsets, LINE.frequency, obs.cell_size, obs_settings
        )
    hdu.writeto(tmp_path / "clean.fits")
    with pytest.raises(CoemuInputError, match="without noise"):
        read_observation(tmp_path / "clean.fits", LINE.frequency)
    assert read_observation(tmp_path / "clean.fits", LINE.frequency, noise=1e-3).noise_source == "given"
    result = run_cli("fit", str(tmp_path / "clean.fits"), "--out", str(tmp_path / "o"), check=False)
    assert (
        result.returncode == 2 and "noise" in result.stderr and not (tmp_path / "o" / "summary.json").exists()
    )


def test_fit_settings_are_checked_before_any_job():
    config = settings.complete({"fit": {"enabled": True}, "observations": {"export": True}})
    with pytest.raises(CoemuInputError, match="observations.noise"):
        settings.check(config)
    config = settings.complete({"fit": {"free": {"binary": ["mass_loss_rate", "colour"]}}})
    with pytest.raises(CoemuInputError, match="fit.free.binary"):
        settings.check(config)
    config = settings.complete({"fit": {"families": ["single"], "free": {"binary": ["wind_velocity"]}}})
    with pytest.raises(CoemuInputError, match="fit.families"):
        settings.check(config)


def test_emulator_forward_model_is_differentiable_and_checked(tmp_path):
    from coemu.data.description import DataDescription
    from coemu.data.transform import Preprocessing
    from coemu.nn import emulator_kinds

    obs, _ = _template(grid=8, channels=5)
    family = Family.make("binary", fixed=_truth())
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
        [0.0] * 5,
        obs.grid,
        obs.cell_size,
        prep.to_dict(),
    )
    emulator = emulator_kinds()["column"].from_data(data, hidden=8, layers=1).eval()
    emulator.data = data
    forward = ForwardModel(obs, family, LINE, "emulator", emulator)
    free = {k: torch.tensor(_truth()[k], dtype=F64, requires_grad=True) for k in family.free}
    forward({**_tensors(family.fixed), **free}).sum().backward()
    assert all(torch.isfinite(v.grad) and v.grad != 0 for v in free.values())
    import dataclasses

    emulator.data = dataclasses.replace(data, channel_velocities=[0.0] * 5)
    with pytest.raises(CoemuInputError, match="channel"):
        ForwardModel(obs, family, LINE, "emulator", emulator)


def test_site_values_invert_the_priors():
    for name, value in [
        ("mass_loss_rate", 2e-6),
        ("wind_velocity", 7.0),
        ("inclination", 140.0),
        ("position_angle", 300.0),
    ]:
        prior = Family.make("binary").priors[Family.make("binary").free.index(name)]
        assert float(prior.value(site_value(prior, value))) == pytest.approx(value, rel=1e-12)


@pytest.mark.slow  # about 15-35 s on 2 cores
def test_fit_of_an_export_manifest_takes_the_truth_from_the_header(tmp_path):
    """The pipeline's rule: ``coemu fit manifest.json --truth OBJECT`` (rotation 0 of the first
    test model, its synthetic parameters fixing the others); the single family only, briefly."""
    obs, obs_settings = _template(grid=8, channels=5)
    truth = truth_values(1234, "m00004")
    family = Family.make("single", fixed=truth)
    import dataclasses

    forward = ForwardModel(obs, family, LINE)
    with torch.no_grad():
        intensity = forward.intensity(
            _tensors({**family.fixed, **{k: truth[k] for k in family.free}})
        ).numpy()
    hdu = observation(
        intensity,
        obs.offsets,
        LINE.frequency,
        obs.cell_size,
        dataclasses.replace(obs_settings, noise=1e-3),
        {"OBJECT": "m00004", "ROTATION": 0},
    )
    (tmp_path / "m00004").mkdir()
    hdu.writeto(tmp_path / "m00004" / "r000.fits")
    (tmp_path / "manifest.json").write_text(
        json.dumps({"files": {"m00004": [str(tmp_path / "m00004" / "r000.fits")]}})
    )
    sampler = {
        "families": ["single"],
        "sampler": "nuts",  # the NUTS path end to end, on the smallest case
        "chains": 2,
        "warmup": 20,
        "samples": 30,
        "starts": 2,
        "evidence_epochs": 2,
    }
    run_cli(
        "fit",
        str(tmp_path / "manifest.json"),
        "--out",
        str(tmp_path / "fit"),
        "--truth",
        "OBJECT",
        "--config",
        json.dumps({"fit": sampler}),
    )
    summary = json.loads((tmp_path / "fit" / "summary.json").read_text())
    assert summary["truth_model"] == "m00004" and summary["observation"].endswith("r000.fits")
    part = summary["families"]["single"]
    assert part["family"]["fixed"]["co_abundance"] == pytest.approx(truth["co_abundance"])
    assert part["truth"]["wind_velocity"] == pytest.approx(truth["wind_velocity"])
    assert summary["ln_bayes_factors"] == {}
    assert summary["sampler"]["method"] == "nuts" and summary["sampler"]["chains"] == 2
    assert "max_r_hat" in part["convergence"] and "divergences" in part["convergence"]
    assert part["timing"]["gradient_seconds"] > 0 and "laplace_ln_evidence" in part["evidence"]
    import arviz as az

    idata = az.from_netcdf(str(tmp_path / "fit" / "single.posterior.nc"))
    assert dict(idata.posterior.sizes) == {"chain": 2, "draw": 30} and "lp" in idata.sample_stats
    assert (tmp_path / "fit" / "single.corner.png").stat().st_size > 0
