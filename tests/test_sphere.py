"""Sphere trimming (paper appendix A1.1) against brute force."""

import numpy as np
import pytest

from coemu.geometry.sphere import Extent, global_radius, sphere_summary, trim_to_sphere


def brute_force_radius(points: np.ndarray) -> float:
    """Largest sphere around the box centre inside the bounding box, by plain loops and bisection."""
    lo = [float("inf")] * 3
    hi = [float("-inf")] * 3
    for p in points:
        for k in range(3):
            lo[k] = min(lo[k], p[k])
            hi[k] = max(hi[k], p[k])
    centre = [(a + b) / 2 for a, b in zip(lo, hi, strict=True)]
    # sample the sphere surface densely, including the six axis points
    rng = np.random.default_rng(1)
    d = rng.normal(size=(20000, 3))
    d = np.concatenate([d / np.linalg.norm(d, axis=1, keepdims=True), np.eye(3), -np.eye(3)])

    def inside(r):
        s = np.asarray(centre) + r * d
        return bool(((s >= np.asarray(lo) - 1e-9 * r) & (s <= np.asarray(hi) + 1e-9 * r)).all())

    a, b = 0.0, max(b_ - a_ for a_, b_ in zip(lo, hi, strict=True))
    for _ in range(60):
        mid = (a + b) / 2
        a, b = (mid, b) if inside(mid) else (a, mid)
    return a


@pytest.mark.parametrize("seed", range(4))
def test_local_radius_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    scale = rng.uniform(1, 5, size=3)
    offset = rng.uniform(-10, 10, size=3)
    points = rng.uniform(-1, 1, size=(500, 3)) * scale + offset
    assert Extent.of_points(points).radius == pytest.approx(brute_force_radius(points), rel=1e-9)


def test_global_radius_is_the_minimum_and_names_the_model():
    rng = np.random.default_rng(3)
    extents = {f"m{i}": Extent.of_points(rng.uniform(-1, 1, (50, 3)) * (1 + i % 4)) for i in range(9)}
    radius, limiting = global_radius(extents)
    assert radius == min(e.radius for e in extents.values())
    assert extents[limiting].radius == radius
    summary = sphere_summary(extents)
    assert summary["radius"] == radius and summary["limiting_model"] == limiting
    assert summary["n_models"] == 9


def test_trimming_keeps_exactly_the_points_within_the_radius():
    rng = np.random.default_rng(4)
    points = rng.uniform(-3, 5, (4000, 3))
    centre = np.array([1.0, 1.0, 1.0])
    kept, mask = trim_to_sphere(points, centre, 2.5)
    dist = np.linalg.norm(points - centre, axis=1)
    np.testing.assert_array_equal(mask, dist <= 2.5)
    np.testing.assert_allclose(kept, points[mask] - centre)
