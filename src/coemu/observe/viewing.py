"""Viewing directions for numpy callers: :func:`coemu.physics.viewing.viewing_matrix`, checked.

The conventions (the cube frame, ``R(i, PA, phi) = R_z(-PA) R_x(-i) R_z(phi)``,
inclination 0 = the cubes' rotation 0, and the correspondence with RADMC-3D's
``incl``, ``phi`` and ``posang``) are documented with the one implementation,
:mod:`coemu.physics.viewing`.
"""

from __future__ import annotations

import math

import numpy as np

from coemu.io.errors import CoemuInputError
from coemu.physics import viewing


def viewing_matrix(inclination: float, position_angle: float = 0.0, azimuth: float = 0.0) -> np.ndarray:
    """(3, 3) float64 rotation ``R(i, PA, phi)`` from the model frame into the cube frame (degrees).

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
    return viewing.viewing_matrix(float(inclination), float(position_angle), float(azimuth)).numpy()
