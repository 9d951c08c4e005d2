"""The synthetic binary wind (:mod:`coemu.hydro.synthetic`) in torch, so that gradients flow.

:func:`wind_fields` is :func:`coemu.hydro.synthetic.wind_fields` term for term
(a test holds them to 1e-12 in float64), written with torch operations of the
parameters: every parameter may be a tensor that requires grad. The
``single`` variant is the same AGB wind without a companion: no spiral, no
equatorial enhancement, no orbital motion, the star at the origin.

:func:`viewing_matrix` is :func:`coemu.observe.viewing.viewing_matrix` with
tensor angles (degrees).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from coemu.constants import ASTRONOMICAL_UNIT as AU
from coemu.constants import GRAVITATIONAL_CONSTANT, JULIAN_YEAR, KM, SOLAR_MASS
from coemu.hydro.synthetic import DISK_SEPARATION, MASS_PER_H2, TEMPERATURE_FLOOR


def _about(axis: int, degrees: torch.Tensor) -> torch.Tensor:
    """(3, 3) right-handed rotation by ``degrees`` (a 0-d tensor) about cube-frame axis ``axis``."""
    rad = degrees * (math.pi / 180.0)
    c, s = torch.cos(rad), torch.sin(rad)
    one, zero = torch.ones_like(c), torch.zeros_like(c)
    rows = {
        0: [[one, zero, zero], [zero, c, -s], [zero, s, c]],
        1: [[c, zero, s], [zero, one, zero], [-s, zero, c]],
        2: [[c, -s, zero], [s, c, zero], [zero, zero, one]],
    }[axis]
    return torch.stack([torch.stack(row) for row in rows])


def viewing_matrix(inclination, position_angle, azimuth) -> torch.Tensor:
    """``R(i, PA, phi) = R_z(-PA) R_x(-i) R_z(phi)`` (degrees, 0-d tensors): model -> cube frame."""
    return _about(2, -position_angle) @ _about(0, -inclination) @ _about(2, azimuth)


def _orbit(p: Mapping[str, torch.Tensor]):
    """(AGB position (3,) m, AGB speed m/s, AGB orbit radius m, period s) at the model's phase."""
    m_agb, m_c = p["agb_mass"] * SOLAR_MASS, p["companion_mass"] * SOLAR_MASS
    m_tot = m_agb + m_c
    a, e, phi = p["separation"] * AU, p["eccentricity"], p["orbital_phase"]
    r = a * (1 - e**2) / (1 + e * torch.cos(phi))
    direction = torch.stack([torch.cos(phi), torch.sin(phi), torch.zeros_like(phi)])
    agb = -r * m_c / m_tot * direction
    v_rel = torch.sqrt(GRAVITATIONAL_CONSTANT * m_tot * (2 / r - 1 / a))
    period = 2 * math.pi * torch.sqrt(a**3 / (GRAVITATIONAL_CONSTANT * m_tot))
    return agb, v_rel * m_c / m_tot, r * m_c / m_tot, period


def wind_fields(position: torch.Tensor, p: Mapping[str, torch.Tensor], single: bool = False):
    """The analytic wind at ``position`` (N, 3) m, model frame.

    Args:
        p: the :class:`coemu.hydro.synthetic.WindParameters` fields (without the domain) as
            0-d tensors of ``position``'s dtype; for ``single`` the companion's and the
            spiral's parameters are not used.

    Returns:
        (velocity (N, 3) m/s, temperature (N,) K, CO number density (N,) m-3).
    """
    r_star = p["stellar_radius"] * AU
    v_inf = p["wind_velocity"] * KM
    mdot = p["mass_loss_rate"] * SOLAR_MASS / JULIAN_YEAR
    if single:
        agb = torch.zeros(3, dtype=position.dtype, device=position.device)
    else:
        agb, agb_speed, agb_orbit_radius, period = _orbit(p)
    rel = position - agb
    r = torch.clamp(torch.linalg.vector_norm(rel, dim=1), min=r_star)
    r_hat = rel / r[:, None]
    v_r = KM + (v_inf - KM) * torch.sqrt(torch.clamp(1.0 - r_star / r, 0.0, 1.0))
    rho = mdot / (4 * math.pi * r**2 * v_r)
    x, y, z = position.unbind(1)
    if single:
        enhancement = torch.ones_like(rho)
        velocity = v_r[:, None] * r_hat
    else:
        cyl = torch.hypot(x, y)
        azimuth = torch.atan2(y, x)
        spacing = v_inf * period
        arm_phase = p["orbital_phase"] - 2 * math.pi * cyl / spacing
        angle = azimuth - arm_phase
        delta = torch.atan2(torch.sin(angle), torch.cos(angle))  # wrapped to (-pi, pi]
        latitude = torch.atan2(z, cyl)
        arcs = 1.0 + p["eccentricity"] * torch.cos(2 * math.pi * cyl / spacing + p["orbital_phase"])
        spiral = (
            p["spiral_contrast"]
            * arcs
            * torch.exp(-0.5 * (delta / p["spiral_width"]) ** 2)
            * torch.exp(-0.5 * (latitude / p["spiral_latitude"]) ** 2)
        )
        closeness = torch.clamp((DISK_SEPARATION - p["separation"] * AU) / DISK_SEPARATION, 0.0, 1.0)
        disk = 4.0 * closeness * torch.exp(-0.5 * (latitude / 0.15) ** 2)
        enhancement = 1.0 + spiral + disk
        r_orb = torch.clamp(agb_orbit_radius, min=r_star)
        v_phi = agb_speed * torch.where(cyl > r_orb, r_orb / torch.clamp(cyl, min=1e-30), cyl / r_orb)
        phi_hat = torch.stack([-torch.sin(azimuth), torch.cos(azimuth), torch.zeros_like(azimuth)], dim=1)
        velocity = v_r[:, None] * r_hat + v_phi[:, None] * phi_hat
    rho = rho * enhancement
    temperature = p["stellar_temperature"] * (r / r_star) ** (-p["temperature_exponent"])
    temperature = torch.clamp(
        temperature * (1.0 + 0.2 * (enhancement - 1.0) / enhancement), min=TEMPERATURE_FLOOR
    )
    return velocity, temperature, p["co_abundance"] * rho / MASS_PER_H2
