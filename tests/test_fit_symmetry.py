"""Viewing-angle partners of the binary family (coemu.fit.symmetry, docs/symmetries.md).

The forward model runs on the bench's mock geometry at 12^3 cells (11 channels x 4 km/s,
0.1" beam at 150 pc, Jy/beam), a few evaluations per test.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from coemu.constants import ASTRONOMICAL_UNIT as AU
from coemu.fit import symmetry
from coemu.fit.family import Family, prior_of, site_value
from coemu.fit.forward import ForwardModel
from coemu.fit.likelihood import GaussianLikelihood
from coemu.fit.mock import template
from coemu.hydro.synthetic import draw_parameters
from coemu.observe.fits import ObservationSettings
from coemu.physics.viewing import viewing_matrix
from coemu.rt.lamda import load_line

#: Prior draws the tests use (the wind's parameters of the data set, angles from the prior).
DRAWS = (0, 1, 3)


def draw(k: int, seed: int = 4242) -> dict[str, float]:
    rng = np.random.default_rng([seed, k])
    p = draw_parameters(seed, k).to_dict()
    p.pop("domain_half_extent")
    p["inclination"] = float(np.degrees(np.arccos(rng.uniform(-1, 1))))
    p["position_angle"] = float(rng.uniform(0, 360))
    p["azimuth"] = 0.0
    return p


@pytest.fixture(scope="module")
def model():
    line = load_line("CO", 1, None)
    settings = ObservationSettings(distance=150.0, beam_major=0.1, unit="Jy/beam")
    obs = template(12, 100 * AU / 12, 11, 4000.0, settings, line)
    forward = ForwardModel(obs, Family.make("binary"), line)

    def image(p: dict[str, float]) -> torch.Tensor:
        with torch.no_grad():
            return forward({k: torch.tensor(float(v), dtype=torch.float64) for k, v in p.items()})

    def chi2(a: torch.Tensor, b: torch.Tensor, snr: float = 20.0) -> float:
        """chi^2 of b as a model of the noiseless data a, beam-correlated noise of rms peak / snr."""
        like = GaussianLikelihood(a.numpy(), float(a.max()) / snr, obs.beam_kernel().kernel)
        return float(like.chi2(b))

    return image, chi2


def partner_view(name: str, p: dict[str, float]) -> dict[str, float]:
    (partner,) = [x for x in symmetry.PARTNERS if x.name == name]
    i, pa = partner(p["inclination"], p["position_angle"])
    return {**p, "inclination": float(i), "position_angle": float(pa)}


# --- the maps on the forward model ---------------------------------------------------------------


@pytest.mark.parametrize("k", DRAWS)
def test_position_angle_period_is_exact(model, k):
    image, _ = model
    p = draw(k)
    a, b = image(p), image({**p, "position_angle": p["position_angle"] + 360.0})
    assert float((a - b).abs().max() / a.max()) < 1e-10


@pytest.mark.parametrize("k", DRAWS)
def test_mirror_exact_for_the_smooth_part(model, k):
    """(180 - i, PA + 180) = R(i, PA) R_y(180): exact (to 1e-8 of the peak; measured <= 2e-9)
    once the parts with a handedness are gone: no spiral, a companion of no mass (no
    orbital motion, the AGB star at the centre of mass). The disk stays (k 0, 3: < 6 au)."""
    image, _ = model
    p = {**draw(k), "spiral_contrast": 0.0, "companion_mass": 1e-9}
    a, b = image(p), image(partner_view("mirror", p))
    assert float((a - b).abs().max() / a.max()) < 1e-8


@pytest.mark.parametrize("name", ["turn", "flip"])
def test_turn_and_flip_exact_for_a_spherical_wind(model, name):
    """Without the disk (separation >= 6 au) the smooth wind is spherical: every map is exact."""
    image, _ = model
    p = {**draw(1), "spiral_contrast": 0.0, "companion_mass": 1e-9, "separation": 10.0}
    a, b = image(p), image(partner_view(name, p))
    assert float((a - b).abs().max() / a.max()) < 1e-8


def test_turn_broken_by_the_disk_but_near_with_velocity_reversed(model):
    """With the disk, (i, PA + 180) is the velocity-reversed image (optically thin emission of
    a point-symmetric outflow), not the image: draw 3 (separation 3.4 au), measured chi^2
    1.5e3 as it is and 0.006 with the channels reversed (peak S/N 20)."""
    image, chi2 = model
    p = {**draw(3), "spiral_contrast": 0.0, "companion_mass": 1e-9}
    a, b = image(p), image(partner_view("turn", p))
    assert chi2(a, b) > 100.0
    assert chi2(a, b.flip(0)) < symmetry.NEAR_CHI2


@pytest.mark.parametrize("k", DRAWS)
def test_partners_broken_in_the_binary_family(model, k):
    """The full model (spiral, orbital motion): each partner's image differs (measured chi^2
    >= 360 at the mapped point, peak S/N 20, on 12 draws), as PARTNERS says."""
    image, chi2 = model
    p = draw(k)
    a = image(p)
    for partner in symmetry.PARTNERS:
        assert partner.kind == "broken"
        b = image(partner_view(partner.name, p))
        assert chi2(a, b) > 25 * symmetry.NEAR_CHI2, partner.name
        assert float((a - b).abs().max() / a.max()) > 0.05, partner.name


def test_azimuth_and_phase_exact_for_a_circular_orbit(model):
    """Not a partner (phase and azimuth are fixed in fits): for eccentricity 0, turning the
    model by a about its axis is the orbital phase + a, exactly; face-on, so is PA + a."""
    image, _ = model
    p = {**draw(0), "eccentricity": 0.0}
    a = image({**p, "azimuth": 30.0})
    b = image({**p, "orbital_phase": p["orbital_phase"] + math.radians(30.0)})
    assert float((a - b).abs().max() / a.max()) < 1e-10
    face = {**p, "inclination": 0.0}
    c = image(face)
    d = image(
        {
            **face,
            "position_angle": face["position_angle"] + 40.0,
            "orbital_phase": p["orbital_phase"] + math.radians(40.0),
        }
    )
    assert float((c - d).abs().max() / c.max()) < 1e-10


# --- the maps themselves and the prior -----------------------------------------------------------


def test_maps_are_involutions_and_keep_the_prior():
    """Each map applied twice is the identity, and the prior's density (cos i uniform, the PA's
    2-vector a standard normal) is the same at both members: equal prior mass."""
    rng = np.random.default_rng(1)
    i = np.degrees(np.arccos(rng.uniform(-1, 1, 50)))
    pa = rng.uniform(0, 360, 50)
    inc, pos = prior_of("inclination"), prior_of("position_angle")
    for partner in symmetry.PARTNERS:
        i2, pa2 = partner(i, pa)
        i3, pa3 = partner(i2, pa2)
        np.testing.assert_allclose(i3, i, atol=1e-12)
        np.testing.assert_allclose(symmetry.wrap_position_angle(pa3 - pa), 0.0, atol=1e-9)
        for a, b, c, d in zip(i, pa, i2, pa2, strict=True):
            lp = inc.distribution(torch.float64).log_prob(site_value(inc, a))
            lp = lp + pos.distribution(torch.float64).log_prob(site_value(pos, b))
            lq = inc.distribution(torch.float64).log_prob(site_value(inc, c))
            lq = lq + pos.distribution(torch.float64).log_prob(site_value(pos, d))
            assert abs(float(lp - lq)) < 1e-12


def test_partners_values_and_wrapping():
    out = dict((n, (i, pa)) for n, i, pa in symmetry.partners(60.0, 300.0))
    assert out == {"mirror": (120.0, 120.0), "turn": (60.0, 120.0), "flip": (120.0, 300.0)}
    for _, _, pa in symmetry.partners(10.0, 359.9):
        assert 0.0 <= pa < 360.0
    assert symmetry.partners(10.0, 20.0, kinds=("exact", "near")) == []
    for bad in ((-1.0, 0.0), (181.0, 0.0), (float("nan"), 0.0)):
        with pytest.raises(ValueError):
            symmetry.partners(*bad)
    with pytest.raises(ValueError):
        symmetry.partners(10.0, 0.0, kinds=("nearly",))


def test_view_separation_is_the_rotation_angle():
    rng = np.random.default_rng(2)
    for _ in range(20):
        i1, i2 = np.degrees(np.arccos(rng.uniform(-1, 1, 2)))
        pa1, pa2 = rng.uniform(-360, 720, 2)
        r1 = viewing_matrix(float(i1), float(pa1)).numpy()
        r2 = viewing_matrix(float(i2), float(pa2)).numpy()
        expected = math.degrees(math.acos(np.clip((np.trace(r1.T @ r2) - 1) / 2, -1, 1)))
        assert abs(float(symmetry.view_separation(i1, pa1, i2, pa2)) - expected) < 1e-6
    assert float(symmetry.view_separation(40.0, 359.0, 40.0, 1.0)) == pytest.approx(2.0)
    assert float(symmetry.view_separation(60.0, 30.0, 120.0, 210.0)) == pytest.approx(180.0)


# --- pair_mass -----------------------------------------------------------------------------------


def clouds(view, fractions: dict[str, float], n: int = 4000, scatter: float = 3.0, seed: int = 0):
    """Samples in Gaussian clouds (``scatter`` degrees) at the view and at named partners."""
    rng = np.random.default_rng(seed)
    places = {name: (i, pa) for name, i, pa in symmetry.members(view)}
    i, pa = [], []
    for name, f in fractions.items():
        m = int(round(f * n))
        ci, cpa = places[name]
        i.append(np.clip(ci + scatter * rng.standard_normal(m), 0.0, 180.0))
        pa.append(np.mod(cpa + scatter * rng.standard_normal(m), 360.0))
    return {"inclination": np.concatenate(i), "position_angle": np.concatenate(pa)}


def masses(result) -> dict[str, float]:
    return {m["name"]: m["mass"] for m in result["members"]}


def test_pair_mass_two_clouds():
    view = (60.0, 30.0)
    result = symmetry.pair_mass(clouds(view, {"view": 0.7, "mirror": 0.3}), view)
    got = masses(result)
    assert got["view"] == pytest.approx(0.7, abs=1e-9)
    assert got["mirror"] == pytest.approx(0.3, abs=1e-9)
    assert got["turn"] == got["flip"] == 0.0
    assert result["elsewhere"] == pytest.approx(0.0, abs=1e-12)
    assert result["overlapping"] == []
    text = symmetry.describe(result, "the true view")
    assert "mass near the true view (i, PA) = (60.0, 30.0): 0.7" in text
    assert "near its mirror (180 - i, PA + 180) = (120.0, 210.0): 0.3" in text


def test_pair_mass_wraps_across_position_angle_zero():
    """A view at PA 358 and a cloud that straddles 0 = 360; the mirror's cloud at PA 178; the
    samples given as (chain, draw) arrays."""
    view = (40.0, 358.0)
    samples = clouds(view, {"view": 0.25, "mirror": 0.5, "turn": 0.25}, scatter=4.0)
    assert np.any(samples["position_angle"] < 10.0) and np.any(samples["position_angle"] > 350.0)
    shaped = {k: v.reshape(4, -1) for k, v in samples.items()}
    got = masses(symmetry.pair_mass(shaped, view))
    assert got == pytest.approx({"view": 0.25, "mirror": 0.5, "turn": 0.25, "flip": 0.0}, abs=1e-9)
    # the same view given as PA -2: the same answer
    assert masses(symmetry.pair_mass(shaped, (40.0, -2.0))) == pytest.approx(got)


def test_pair_mass_weights_and_elsewhere():
    view = (130.0, 200.0)
    samples = clouds(view, {"view": 0.5, "flip": 0.5}, n=2000)
    weights = np.where(np.arange(2000) < 1000, 3.0, 1.0)  # 3 : 1
    got = masses(symmetry.pair_mass(samples, view, weights=weights))
    assert got["view"] == pytest.approx(0.75) and got["flip"] == pytest.approx(0.25)
    far = {"inclination": np.full(10, 10.0), "position_angle": np.full(10, 90.0)}
    result = symmetry.pair_mass(far, view)
    assert result["elsewhere"] == 1.0 and sum(masses(result).values()) == 0.0
    with pytest.raises(ValueError):
        symmetry.pair_mass(samples, view, weights=-weights)
    with pytest.raises(ValueError):
        symmetry.pair_mass({"inclination": samples["inclination"]}, view)


def test_pair_mass_overlap_near_edge_on():
    """At i = 85 the flip (95, PA) is 10 degrees away: the regions touch and the result says so."""
    result = symmetry.pair_mass(clouds((85.0, 10.0), {"view": 1.0}), (85.0, 10.0))
    assert ["view", "flip"] in result["overlapping"] and ["mirror", "turn"] in result["overlapping"]
    got = masses(result)
    assert got["view"] + got["flip"] == pytest.approx(1.0)
    assert got["view"] > 0.9


# --- a mock recovered by the nested sampler, with the pair's posterior mass --------------------


def fit_views(tmp_path, p: dict[str, float], snr: float, seed: int = 0) -> dict:
    """A binary mock at ``p`` (12^3, 11 x 4 km/s, 0.1" beam, Jy/beam, peak S/N ``snr``), fitted
    by nautilus in its viewing angles (the other parameters at their true values); the pair
    mass around the true view."""
    from coemu.fit.data import read_observation
    from coemu.fit.likelihood import BatchedLogLikelihood
    from coemu.fit.mock import write_mock
    from coemu.fit.nested import run_nested

    line = load_line("CO", 1, None)
    settings = ObservationSettings(distance=150.0, beam_major=0.1, unit="Jy/beam")
    tmpl = template(12, 100 * AU / 12, 11, 4000.0, settings, line)
    family = Family.make("binary", free=("inclination", "position_angle"), fixed=p)
    path = tmp_path / "mock.fits"
    write_mock(path, family, p, line, tmpl, settings, snr, seed)
    obs = read_observation(path, line.frequency)
    loglike = BatchedLogLikelihood(
        family, ForwardModel(obs, family, line), GaussianLikelihood.of(obs, "auto")
    )
    result = run_nested(loglike, family.priors, sampler="nautilus", seed=seed, live_points=500, min_ess=1000)
    assert result.failed is None and result.converged, result.summary()
    samples = dict(zip(result.parameters, result.samples.T, strict=True))
    return symmetry.pair_mass(samples, (p["inclination"], p["position_angle"]))


@pytest.mark.slow
def test_a_mock_at_one_view_is_recovered_with_no_mass_at_its_partners(tmp_path):
    """At peak S/N 20 the partners of draw 0 (i 55.6, PA 241.7) are broken (chi^2 >= 643 at the
    mapped point): the nested sampler, which explores the whole prior, puts the mass at the
    true view, and the pair mass says so (the partners' mass below 1 %)."""
    got = masses(fit_views(tmp_path, draw(0), snr=20.0))
    assert got["view"] > 0.95, got
    assert max(got["mirror"], got["turn"], got["flip"]) < 0.01, got


@pytest.mark.slow
def test_an_exact_pair_holds_half_the_mass_each(tmp_path):
    """Without the parts that have a handedness (no spiral, a companion of no mass) the mirror
    (180 - i, PA + 180) gives the same image: the posterior is bimodal, the sampler finds both
    modes and the pair mass reports about half at each (equal prior mass, equal likelihood)."""
    p = {**draw(0), "spiral_contrast": 0.0, "companion_mass": 1e-9}
    got = masses(fit_views(tmp_path, p, snr=20.0))
    assert got["view"] + got["mirror"] > 0.95, got
    assert 0.35 < got["view"] < 0.65, got
