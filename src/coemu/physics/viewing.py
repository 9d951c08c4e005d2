"""Viewing directions as inclination, position angle and azimuth: the rotation into the cube frame.

The cube frame (the cube contract): the observer is on the -z side and z
points away from the observer; with ``x`` = east and ``y`` = north on the sky
(north up, east to the left, as an observer sees it), ``x, y, z`` is
right-handed. A rotation ``R`` takes model positions and velocities into that
frame (``x' = R x``); rotation 0 of every model is the identity: the face-on
view along the model's +z axis (the orbital axis).

``R(i, PA, phi) = R_z(-PA) R_x(-i) R_z(phi)``, angles in degrees, each factor a
right-handed rotation about an axis of the cube frame:

* azimuth ``phi``: the model turned about its own z axis, counter-clockwise
  seen from +z;
* inclination ``i``: the orbital axis tilted away from the line of sight, 0 =
  face-on, 90 = edge-on; for 0 < i < 180 the half of the orbital axis that
  points away from the observer projects to the north before the position
  angle is applied;
* position angle ``PA``: the image turned on the sky east of north (north
  towards east): the receding half of the projected orbital axis lies at
  ``PA``.

``R(0, 0, 0)`` is the identity, so inclination 0 is the cubes' rotation 0 (a
test shows the cubes and images agree).

Against RADMC-3D (``incl``, ``phi``, ``posang``; its manual, "Making images
and spectra"): RADMC-3D's ``incl = 0`` puts the observer on the +z side of the
model, coemu's (the cube contract's) on the -z side, so coemu's ``i`` sees the
side of the orbital plane that RADMC-3D's ``incl = 180 - i`` sees. RADMC-3D's
``phi`` moves the observer clockwise about z seen from +z, which turns the
model counter-clockwise seen from +z, as coemu's azimuth does; its
``posang`` turns the image counter-clockwise on the sky, north towards east,
as coemu's position angle does. These correspondences are read from the
manual's words; they have not been checked against RADMC-3D's own images.
"""

from __future__ import annotations

import math

import torch

from coemu.physics.tensor import as_tensor

#: (row, column) of the cosine's first entry of the rotation about each axis (0 x, 1 y, 2 z).
_PLANE = ((1, 2), (2, 0), (0, 1))


def rotation_about(axis: int, degrees: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) right-handed rotations by ``degrees`` (a tensor of shape (...), e.g. 0-d:
    one (3, 3) matrix, or (B,): a batch) about cube-frame axis ``axis`` (0 x, 1 y, 2 z), of the
    angle's dtype and device (differentiable in the angle)."""
    radians = degrees * (math.pi / 180.0)
    cos, sin = torch.cos(radians), torch.sin(radians)
    one, zero = torch.ones_like(cos), torch.zeros_like(cos)
    entries = [[one if row == col else zero for col in range(3)] for row in range(3)]
    i, j = _PLANE[axis]
    entries[i][i], entries[i][j], entries[j][i], entries[j][j] = cos, -sin, sin, cos
    return torch.stack([torch.stack(row, dim=-1) for row in entries], dim=-2)


def viewing_matrix(
    inclination, position_angle=0.0, azimuth=0.0, dtype: torch.dtype | None = None, device=None
) -> torch.Tensor:
    """(3, 3) rotation ``R(i, PA, phi) = R_z(-PA) R_x(-i) R_z(phi)`` from the model frame into
    the cube frame; angles in degrees, numbers or 0-d tensors (gradients flow).

    Batched: angles given as tensors of shape (B,) (any mix with numbers or 0-d tensors) give
    (B, 3, 3), one rotation per entry (the product broadcasts over the leading axes).

    Args:
        dtype, device: of the result (default: the inclination's if a tensor, else float64
            on the CPU).
    """
    if dtype is None and isinstance(inclination, torch.Tensor):
        dtype = inclination.dtype
    if device is None and isinstance(inclination, torch.Tensor):
        device = inclination.device
    i, pa, phi = (as_tensor(a, dtype, device) for a in (inclination, position_angle, azimuth))
    return rotation_about(2, -pa) @ rotation_about(0, -i) @ rotation_about(2, phi)
