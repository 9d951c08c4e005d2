"""Viewing directions: rotation matrices uniform on SO(3), reproducibly seeded.

Rotation 0 is the identity (face-on: the observer looks along the orbital
axis). Rotation ``k > 0`` of a model is ``scipy.spatial.transform.Rotation.random``
(Haar-uniform on SO(3), via uniform unit quaternions) drawn from
``numpy.random.default_rng([seed, model_key, k])``, so any single rotation can be
recomputed without the others. Uniform axis + uniform angle, as in the
published code, is *not* uniform on SO(3) (it over-weights small angles).
"""

from __future__ import annotations

import hashlib

import numpy as np
from scipy.spatial.transform import Rotation


def model_key(model: str) -> int:
    """A stable 63-bit integer for a model id (SHA-256), used to seed its rotations."""
    return int.from_bytes(hashlib.sha256(model.encode()).digest()[:8], "little") >> 1


def rotation_matrix(seed: int, model: str, rotation: int) -> np.ndarray:
    """The (3, 3) rotation matrix of rotation number ``rotation`` of ``model``."""
    if rotation == 0:
        return np.eye(3)
    rng = np.random.default_rng([int(seed), model_key(model), int(rotation)])
    return Rotation.random(random_state=rng).as_matrix()


def rotation_matrices(seed: int, model: str, n_rotations: int) -> np.ndarray:
    """The (n_rotations, 3, 3) rotation matrices of ``model``; index 0 is the identity."""
    return np.stack([rotation_matrix(seed, model, k) for k in range(n_rotations)])


def line_of_sight_velocity(velocity: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """z component (N,) of the rotated velocities ``R v`` (N, 3): positive away from the observer."""
    return velocity @ matrix[2]


def rotate(vectors: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply ``matrix`` (3, 3) to each row of ``vectors`` (N, 3): ``v' = R v``."""
    return vectors @ matrix.T
