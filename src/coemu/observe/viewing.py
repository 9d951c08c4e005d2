"""Viewing directions as inclination, position angle and azimuth, and the sky axes of the cube frame.

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

import numpy as np

from coemu.io.errors import CoemuInputError


def _about(axis: int, degrees: float) -> np.ndarray:
    """The right-handed rotation by ``degrees`` about cube-frame axis ``axis`` (0 x, 1 y, 2 z)."""
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    i, j = [(1, 2), (2, 0), (0, 1)][axis]
    m = np.eye(3)
    m[i, i], m[i, j], m[j, i], m[j, j] = c, -s, s, c
    return m


def viewing_matrix(inclination: float, position_angle: float = 0.0, azimuth: float = 0.0) -> np.ndarray:
    """(3, 3) rotation ``R(i, PA, phi)`` from the model frame into the cube frame (degrees).

    Raises:
        CoemuInputError: an angle that is not finite, or an inclination outside [0, 180].
    """
    for name, value in (
        ("inclination", inclination),
        ("position_angle", position_angle),
        ("azimuth", azimuth),
    ):
        if not math.isfinite(value):
            raise CoemuInputError(None, name, f"{value} is not a finite angle (degrees)")
    if not 0.0 <= inclination <= 180.0:
        raise CoemuInputError(None, "inclination", f"{inclination} deg is outside [0, 180]")
    return _about(2, -position_angle) @ _about(0, -inclination) @ _about(2, azimuth)
