"""The synthetic AGB binary wind generator: determinism, physics ranges, layout."""

import numpy as np
import pytest

from coemu.constants import ASTRONOMICAL_UNIT as AU
from coemu.constants import KM
from coemu.geometry.sphere import Extent
from coemu.hydro.sources import synthetic_extents
from coemu.hydro.synthetic import (
    PARAMETER_RANGES,
    draw_parameters,
    orbit,
    synthetic_model,
    wind_fields,
)


def test_same_seed_and_index_give_identical_models():
    a = synthetic_model(11, 5, n_base=12, levels=3)
    b = synthetic_model(11, 5, n_base=12, levels=3)
    for name in ("position", "velocity", "temperature", "number_density_co"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))


def test_different_index_or_seed_give_different_parameters():
    p = draw_parameters(11, 5)
    assert draw_parameters(11, 6) != p
    assert draw_parameters(12, 5) != p


@pytest.mark.parametrize("index", range(8))
def test_parameters_within_their_ranges(index):
    p = draw_parameters(2024, index).to_dict()
    for name, (lo, hi, _) in PARAMETER_RANGES.items():
        if name == "domain_half_size":
            assert all(0.8 * lo <= h <= 1.2 * hi for h in p["domain_half_extent"])
        else:
            assert lo <= p[name] <= hi, name


@pytest.mark.parametrize("index", range(6))
def test_physical_ranges(index):
    m = synthetic_model(99, index, n_base=16, levels=4)
    assert np.all(m.temperature >= 10.0) and np.all(m.temperature <= 3000.0)
    assert np.all(np.isfinite(m.number_density_co)) and np.all(m.number_density_co > 0)
    # CO densities of AGB envelopes: 1e0..1e16 m-3 between the star and a few hundred au
    assert 1.0 < m.number_density_co.min() and m.number_density_co.max() < 1e16
    speed = np.linalg.norm(m.velocity, axis=1)
    assert speed.max() < 60 * KM and np.median(speed) > 3 * KM
    # outflow: the velocity points away from the centre almost everywhere far out
    r = np.linalg.norm(m.position, axis=1)
    far = r > 50 * AU
    radial = np.einsum("ij,ij->i", m.velocity[far], m.position[far]) / r[far]
    assert np.mean(radial > 0) > 0.99


def test_density_falls_roughly_as_inverse_square():
    p = draw_parameters(3, 1)
    directions = np.random.default_rng(0).normal(size=(4000, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    n20 = wind_fields(20 * AU * directions, p)["mass_density"]
    n80 = wind_fields(80 * AU * directions, p)["mass_density"]
    # angle-averaged: the spiral modulates, the 1/r^2 envelope dominates
    ratio = n20.mean() / n80.mean()
    assert 8 < ratio < 32  # 16 for r^-2 at constant velocity


def test_spiral_breaks_azimuthal_symmetry_in_the_orbital_plane():
    p = draw_parameters(3, 2)
    phi = np.linspace(0, 2 * np.pi, 720, endpoint=False)
    ring = 60 * AU * np.stack([np.cos(phi), np.sin(phi), np.zeros_like(phi)], axis=1)
    rho = wind_fields(ring + orbit(p)["agb"], p)["mass_density"]
    assert rho.max() / rho.min() > 1.5


def test_points_are_denser_near_the_agb_star():
    m = synthetic_model(5, 0, n_base=16, levels=4, finest_spacing=1.0)
    star = orbit(draw_parameters(5, 0))["agb"]
    near = (np.abs(m.position - star) < 8 * AU).all(axis=1).sum() / (16 * AU) ** 3
    far = (np.linalg.norm(m.position, axis=1) > 100 * AU).sum()
    assert near > 100 * far / (8 * np.prod(draw_parameters(5, 0).domain_half_extent) * AU**3)


def test_levels_are_nested_lattices_with_doubling_spacings():
    """Each level's nodes are integer multiples of its spacing from the domain's centre, the
    spacings double from finest_spacing outwards, and no point is repeated."""
    finest = 0.5 * AU
    m = synthetic_model(7, 2, n_base=16, levels=7, finest_spacing=0.5)  # 32 au down to 0.5 au
    points = m.position[:-8]  # the domain's corners come last
    distance = np.linalg.norm(points - orbit(draw_parameters(7, 2))["agb"], axis=1)
    on = {}
    for k in range(5):
        s = finest * 2**k
        on[k] = np.all(np.abs(points / s - np.round(points / s)) < 1e-6, axis=1)
    assert on[0].all()  # every point is on the finest lattice
    assert on[0][distance < 3 * finest].all() and not on[1][distance < 3 * finest].all()
    assert on[3][distance > 60 * finest].all()  # beyond the 2 au level's box: 4 au and coarser
    assert len(np.unique(np.round(points / finest), axis=0)) == len(points)


def test_random_layout_has_the_same_points_per_level_at_random_positions():
    a = synthetic_model(7, 2, n_base=16, levels=5, finest_spacing=0.5)
    b = synthetic_model(7, 2, n_base=16, levels=5, finest_spacing=0.5, layout="random")
    again = synthetic_model(7, 2, n_base=16, levels=5, finest_spacing=0.5, layout="random")
    assert a.n_points == b.n_points
    np.testing.assert_array_equal(b.position, again.position)  # drawn from (seed, index)
    np.testing.assert_array_equal(Extent.of_points(a.position).upper, Extent.of_points(b.position).upper)
    star = orbit(draw_parameters(7, 2))["agb"]
    for radius in (2 * AU, 8 * AU):  # as many points near the star, to within Poisson noise
        na = (np.linalg.norm(a.position - star, axis=1) < radius).sum()
        nb = (np.linalg.norm(b.position - star, axis=1) < radius).sum()
        assert abs(na - nb) < 5 * np.sqrt(na) + 10
    on = np.all(np.abs(b.position / (0.5 * AU) - np.round(b.position / (0.5 * AU))) < 1e-6, axis=1)
    assert on.mean() < 0.01
    with pytest.raises(ValueError, match="unknown point layout"):
        synthetic_model(7, 2, n_base=8, levels=2, layout="grid")


def test_extents_from_parameters_equal_the_points_bounding_box():
    extents = synthetic_extents(42, 3)
    for i, (name, extent) in enumerate(extents.items()):
        m = synthetic_model(42, i, n_base=10, levels=2)
        assert m.name == name
        points = Extent.of_points(m.position)
        np.testing.assert_allclose(points.lower, extent.lower, rtol=1e-12)
        np.testing.assert_allclose(points.upper, extent.upper, rtol=1e-12)
