"""The parametric AGB binary wind: the synthetic data set's models and the fit's forward model.

A mass-losing AGB star and a companion orbit their centre of mass (the origin)
in the xy plane. The wind is a spherical outflow from the AGB star,
``rho = Mdot / (4 pi r^2 v(r))``, modulated by

* an Archimedean spiral in the orbital plane launched by the companion, with
  arm spacing ``v_wind x P_orb`` and a latitude-limited thickness;
* arcs: the spiral's strength varies along the arm by a factor ``1 + e cos``
  for eccentric orbits (periastron passages compress the wake);
* an equatorial, disk-like density enhancement whose strength grows as the
  orbit gets closer than :data:`DISK_SEPARATION`.

Temperature falls as a power law of the distance to the AGB star (with a
floor) and is mildly raised in compressed gas; the velocity is the radial
outflow (beta-law acceleration) plus the orbital motion of the AGB star,
carried out with conserved specific angular momentum. CO number density is the
H2 number density times a CO abundance.

The ``single`` variant (the fit's ``single`` family) is the same AGB wind
without a companion: no spiral, no equatorial enhancement, no orbital motion,
the star at the origin.

Parameters are a mapping of the :class:`coemu.hydro.synthetic.WindParameters`
field names (units there: Msun/yr, km/s, Msun, au, rad, K) to Python floats
or 0-d tensors (which may require grad); other keys are ignored. Everything
is computed in the dtype and on the device of ``position``.

Batches: any parameter may instead be a tensor of shape (B,), one value per
model of a batch of B (a nested sampler's parameter vectors; the others stay
numbers or 0-d tensors, shared). Then the points are (B, N, 3) (or (N, 3),
shared by every model) and each field gains the leading B axis: (B, N) and
(B, N, 3). A 0-d parameter is used exactly as before (the single model's
arithmetic is unchanged, bit for bit); a (B,) one is taken as (B, 1) against
the points' axis (:func:`per_point`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import NamedTuple

import torch

from coemu.constants import ASTRONOMICAL_UNIT as AU
from coemu.constants import GRAVITATIONAL_CONSTANT, HYDROGEN_MASS, JULIAN_YEAR, KM, SOLAR_MASS
from coemu.physics.tensor import as_tensor

#: Mass per H2 molecule including helium (mean molecular weight per H2), kg.
MASS_PER_H2 = 2.8 * HYDROGEN_MASS
#: Orbits closer than this (m) grow an equatorial density enhancement.
DISK_SEPARATION = 6.0 * AU
#: Temperature floor, K.
TEMPERATURE_FLOOR = 10.0
#: Latitude half-width (rad) of the equatorial enhancement, and its peak for a contact orbit.
DISK_LATITUDE = 0.15
DISK_CONTRAST = 4.0
#: Radial speed at the stellar surface (the beta-law's floor), m/s.
SURFACE_SPEED = KM
#: Raise of the temperature in compressed gas: ``T x (1 + TEMPERATURE_RAISE (1 - 1 / enhancement))``.
TEMPERATURE_RAISE = 0.2

Parameters = Mapping[str, "float | torch.Tensor"]


def per_point(x: torch.Tensor) -> torch.Tensor:
    """A parameter's tensor broadcast against the points' axis: a (B,) batch as (B, 1); a
    0-d tensor (one model) as it is."""
    return x[..., None] if x.dim() else x


class Orbit(NamedTuple):
    """Where the stars are at the model's orbital phase (tensors of the parameters' dtype).

    Attributes:
        agb, companion: (3,) positions, m (the centre of mass at the origin); (B, 3) for a
        batch of B models.
        agb_speed: the AGB star's orbital speed, m/s. agb_orbit_radius: its distance to the
        centre of mass, m. period: the orbital period, s. phase: the orbital phase, rad.
        Each 0-d, or (B,) for a batch.
    """

    agb: torch.Tensor
    companion: torch.Tensor
    agb_speed: torch.Tensor
    agb_orbit_radius: torch.Tensor
    period: torch.Tensor
    phase: torch.Tensor


class WindFields(NamedTuple):
    """The wind at N points (tensors of the points' dtype and device).

    Attributes:
        velocity: (N, 3) m/s. temperature: (N,) K. number_density_co: (N,) m-3.
        mass_density: (N,) kg m-3. enhancement: (N,) the density over that of the smooth
        wind (1 + spiral + disk; 1 for the single star). For a batch of B models each has a
        leading B axis: (B, N, 3) and (B, N).
    """

    velocity: torch.Tensor
    temperature: torch.Tensor
    number_density_co: torch.Tensor
    mass_density: torch.Tensor
    enhancement: torch.Tensor


def orbit(params: Parameters, dtype: torch.dtype = torch.float64, device=None) -> Orbit:
    """Positions and motion of the two stars at the model's phase, as tensors of ``dtype``.

    The AGB star is at ``-r M_c / M`` from the centre of mass along the line to the
    companion; ``r = a (1 - e^2) / (1 + e cos phase)``; the relative orbit's speed is the
    vis-viva one, of which the AGB star moves at the ``M_c / M`` share. Computed in float64
    whatever ``dtype`` (``r M_c`` in SI units, ~1e42, overflows float32), then converted.

    Parameters of shape (B,) (a batch) give (B, 3) positions and (B,) scalars.
    """

    def value(name: str) -> torch.Tensor:
        return as_tensor(params[name], torch.float64, device)

    m_agb = value("agb_mass") * SOLAR_MASS
    m_companion = value("companion_mass") * SOLAR_MASS
    m_total = m_agb + m_companion
    a, e, phase = value("separation") * AU, value("eccentricity"), value("orbital_phase")
    r = a * (1 - e**2) / (1 + e * torch.cos(phase))
    direction = torch.stack([torch.cos(phase), torch.sin(phase), torch.zeros_like(phase)], dim=-1)
    v_relative = torch.sqrt(GRAVITATIONAL_CONSTANT * m_total * (2 / r - 1 / a))
    stars = Orbit(
        # (B,) scalars times the (B, 3) or (3,) direction: along the last axis ((B,) * (3,) would
        # broadcast wrongly, and silently for B = 3)
        agb=per_point(-r * m_companion / m_total) * direction,
        companion=per_point(r * m_agb / m_total) * direction,
        agb_speed=v_relative * m_companion / m_total,
        agb_orbit_radius=r * m_companion / m_total,
        period=2 * math.pi * torch.sqrt(a**3 / (GRAVITATIONAL_CONSTANT * m_total)),
        phase=phase,
    )
    return Orbit(*(x.to(dtype) for x in stars))


def wind_fields(position: torch.Tensor, params: Parameters, single: bool = False) -> WindFields:
    """The analytic wind at ``position`` (N, 3) m, in the model frame.

    Args:
        position: (N, 3) m; or (B, N, 3) (or (N, 3) shared) for a batch of B models.
        params: the wind's parameters (see the module docstring), numbers or 0-d tensors, or
            (B,) tensors for a batch; for ``single`` the companion's and the spiral's are not
            read.
        single: the AGB star alone, at the origin.
    """

    def value(name: str) -> torch.Tensor:
        return per_point(as_tensor(params[name], position.dtype, position.device))

    r_star = value("stellar_radius") * AU
    v_terminal = value("wind_velocity") * KM
    mdot = value("mass_loss_rate") * SOLAR_MASS / JULIAN_YEAR
    stars = None if single else _per_point_orbit(orbit(params, position.dtype, position.device))
    centre = torch.zeros(3, dtype=position.dtype, device=position.device) if single else stars.agb
    offset = position - centre
    r = torch.clamp(torch.linalg.vector_norm(offset, dim=-1), min=r_star)
    v_r = radial_speed(r, r_star, v_terminal)
    velocity = v_r[..., None] * (offset / r[..., None])
    if single:
        enhancement = torch.ones_like(r)
    else:
        where = Cylindrical.of(position)
        structure = spiral(where, stars, v_terminal, value) + disk(where, value("separation") * AU)
        enhancement = 1.0 + structure
        velocity = velocity + orbital_velocity(where, stars, r_star)
    mass_density = mdot / (4 * math.pi * r**2 * v_r) * enhancement
    return WindFields(
        velocity=velocity,
        temperature=temperature(
            r / r_star, enhancement, value("stellar_temperature"), value("temperature_exponent")
        ),
        number_density_co=value("co_abundance") * mass_density / MASS_PER_H2,
        mass_density=mass_density,
        enhancement=enhancement,
    )


def _per_point_orbit(stars: Orbit) -> Orbit:
    """A batch's orbit broadcast against the points: positions (B, 3) as (B, 1, 3), scalars (B,)
    as (B, 1); one model's as it is."""
    return Orbit(
        *(x[..., None, :] if x.dim() > 1 else x for x in stars[:2]),
        *(per_point(x) for x in stars[2:]),
    )


def radial_speed(r: torch.Tensor, r_star: torch.Tensor, v_terminal: torch.Tensor) -> torch.Tensor:
    """(N,) m/s at distance ``r`` (N,) m from the AGB star: the beta = 0.5 law from
    :data:`SURFACE_SPEED` at the stellar surface ``r_star`` (m) to ``v_terminal`` (m/s)
    (batches: (B, N), with (B, 1) parameters)."""
    acceleration = torch.sqrt(torch.clamp(1.0 - r_star / r, 0.0, 1.0))
    return SURFACE_SPEED + (v_terminal - SURFACE_SPEED) * acceleration


class Cylindrical(NamedTuple):
    """Points about the orbital axis, each (N,) (or (B, N)): ``cylinder`` the distance to the
    axis (m), ``azimuth`` and ``latitude`` (rad, seen from the centre of mass)."""

    cylinder: torch.Tensor
    azimuth: torch.Tensor
    latitude: torch.Tensor

    @classmethod
    def of(cls, position: torch.Tensor) -> Cylindrical:
        """Of ``position`` (N, 3) (or (B, N, 3)) m in the model frame."""
        x, y, z = position.unbind(-1)
        cylinder = torch.hypot(x, y)
        return cls(cylinder, torch.atan2(y, x), torch.atan2(z, cylinder))


def spiral(where: Cylindrical, stars: Orbit, v_terminal: torch.Tensor, value) -> torch.Tensor:
    """(N,) the spiral's relative density enhancement at the points ``where``.

    An Archimedean arm in the orbital plane, launched from the companion's phase with the
    arm spacing ``v_terminal x period`` (m/s x s); Gaussian across the arm in azimuth
    (``spiral_width``) and in latitude (``spiral_latitude``), modulated along the arm by
    ``1 + e cos`` (arcs); ``spiral_contrast`` at its peak. ``value``: parameter name -> 0-d
    tensor (or (B, 1) for a batch, as ``stars``' scalars).
    """
    winding = 2 * math.pi * where.cylinder / (v_terminal * stars.period)
    angle = where.azimuth - (stars.phase - winding)
    across = torch.atan2(torch.sin(angle), torch.cos(angle))  # wrapped to (-pi, pi]
    arcs = 1.0 + value("eccentricity") * torch.cos(winding + stars.phase)
    return (
        value("spiral_contrast")
        * arcs
        * torch.exp(-0.5 * (across / value("spiral_width")) ** 2)
        * torch.exp(-0.5 * (where.latitude / value("spiral_latitude")) ** 2)
    )


def disk(where: Cylindrical, separation: torch.Tensor) -> torch.Tensor:
    """(N,) the equatorial enhancement at the points ``where``: Gaussian in latitude
    (:data:`DISK_LATITUDE`), up to :data:`DISK_CONTRAST` as the ``separation`` (m) falls
    from :data:`DISK_SEPARATION` to 0 (none for wider orbits)."""
    closeness = torch.clamp((DISK_SEPARATION - separation) / DISK_SEPARATION, 0.0, 1.0)
    return DISK_CONTRAST * closeness * torch.exp(-0.5 * (where.latitude / DISK_LATITUDE) ** 2)


def orbital_velocity(where: Cylindrical, stars: Orbit, r_star: torch.Tensor) -> torch.Tensor:
    """(N, 3) (or (B, N, 3)) m/s at the points ``where``: the AGB star's orbital motion carried
    out with conserved specific angular momentum (azimuthal, falling as ``1 / cylinder``
    outside its orbit, rigid inside; the orbit's radius at least ``r_star``, m)."""
    r_orbit = torch.clamp(stars.agb_orbit_radius, min=r_star)
    cylinder = where.cylinder
    profile = torch.where(cylinder > r_orbit, r_orbit / torch.clamp(cylinder, min=1e-30), cylinder / r_orbit)
    azimuth = where.azimuth
    phi_hat = torch.stack([-torch.sin(azimuth), torch.cos(azimuth), torch.zeros_like(azimuth)], dim=-1)
    return (stars.agb_speed * profile)[..., None] * phi_hat


def temperature(
    r_over_r_star: torch.Tensor, enhancement: torch.Tensor, stellar_temperature, exponent
) -> torch.Tensor:
    """(N,) K at ``r_over_r_star`` (N,) stellar radii from the AGB star:
    ``stellar_temperature (r / r_star)^-exponent`` (K, 1), raised in compressed gas
    (``enhancement`` (N,)), floored at :data:`TEMPERATURE_FLOOR`."""
    power_law = stellar_temperature * r_over_r_star ** (-exponent)
    raised = power_law * (1.0 + TEMPERATURE_RAISE * (enhancement - 1.0) / enhancement)
    return torch.clamp(raised, min=TEMPERATURE_FLOOR)
