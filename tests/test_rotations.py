"""Rotations: identity first, the rest Haar-uniform on SO(3), reproducible."""

import numpy as np
import pytest
from scipy import stats

from coemu.geometry.rotations import rotation_matrices, rotation_matrix

N = 3000


def angle_cdf(omega):
    """CDF of the rotation angle of a Haar-uniform rotation: (w - sin w) / pi."""
    return (omega - np.sin(omega)) / np.pi


def rotation_angle(matrices):
    return np.arccos(np.clip((np.trace(matrices, axis1=1, axis2=2) - 1) / 2, -1, 1))


@pytest.fixture(scope="module")
def matrices():
    return rotation_matrices(seed=2024, model="m00007", n_rotations=N + 1)[1:]


def test_rotation_zero_is_the_identity():
    np.testing.assert_array_equal(rotation_matrix(1, "anything", 0), np.eye(3))
    np.testing.assert_array_equal(rotation_matrices(5, "m00001", 3)[0], np.eye(3))


def test_matrices_are_proper_rotations(matrices):
    np.testing.assert_allclose(
        matrices @ matrices.transpose(0, 2, 1), np.broadcast_to(np.eye(3), matrices.shape), atol=1e-12
    )
    np.testing.assert_allclose(np.linalg.det(matrices), 1.0, atol=1e-12)


def test_reproducible_per_rotation_and_distinct_per_model():
    a = rotation_matrix(9, "m00002", 17)
    np.testing.assert_array_equal(a, rotation_matrices(9, "m00002", 18)[17])
    assert not np.allclose(a, rotation_matrix(9, "m00003", 17))
    assert not np.allclose(a, rotation_matrix(10, "m00002", 17))


def test_viewing_direction_is_uniform_on_the_sphere(matrices):
    # the model's z axis seen from the observer: R e_z; uniform on S^2 <=> cos(theta) ~ U(-1, 1)
    z = matrices[:, :, 2]
    assert stats.kstest(z[:, 2], stats.uniform(loc=-1, scale=2).cdf).pvalue > 0.01
    azimuth = np.arctan2(z[:, 1], z[:, 0])
    assert stats.kstest(azimuth, stats.uniform(loc=-np.pi, scale=2 * np.pi).cdf).pvalue > 0.01


def test_rotation_angle_has_the_haar_distribution(matrices):
    assert stats.kstest(rotation_angle(matrices), angle_cdf).pvalue > 0.01


def test_the_angle_test_rejects_uniform_axis_angle_sampling():
    """The published code's sampler (uniform axis, uniform angle) is biased; the test must see it."""
    from scipy.spatial.transform import Rotation

    rng = np.random.default_rng(0)
    axis = rng.normal(size=(N, 3))
    axis /= np.linalg.norm(axis, axis=1, keepdims=True)
    angle = rng.uniform(0, np.pi, size=N)
    biased = Rotation.from_rotvec(axis * angle[:, None]).as_matrix()
    assert stats.kstest(rotation_angle(biased), angle_cdf).pvalue < 1e-6
