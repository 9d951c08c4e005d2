"""Parametric AGB binary wind models, the embedded synthetic data set.

A mass-losing AGB star and a companion orbit their centre of mass (the origin)
in the xy plane. The wind is a spherical outflow from the AGB star,
``rho = Mdot / (4 pi r^2 v(r))``, modulated by

* an Archimedean spiral in the orbital plane launched by the companion, with
  arm spacing ``v_wind x P_orb`` and a latitude-limited thickness;
* arcs: the spiral's strength varies along the arm by a factor ``1 + e cos``
  for eccentric orbits (periastron passages compress the wake);
* an equatorial, disk-like density enhancement whose strength grows as the
  orbit gets closer than ``DISK_SEPARATION``.

Temperature falls as a power law of the distance to the AGB star (with a
floor) and is mildly raised in compressed gas; the velocity is the radial
outflow (beta-law acceleration) plus the orbital motion of the AGB star,
carried out with conserved specific angular momentum. CO number density is the
H2 number density times a CO abundance.

Points lie on nested regular grids (an AMR-like layout, isotropic spacings):
the outer level fills the domain with at most ``n_base`` nodes per axis at a
spacing ``finest_spacing x 2^j``; each inner level halves the spacing, has
``n_base`` nodes per axis in a box centred on the AGB star (snapped to the
coarser level's nodes) and replaces the coarser nodes in its box, down to
``finest_spacing`` or ``levels`` levels in all. Every level's nodes are integer
multiples of its spacing from the domain's centre, so the levels nest exactly
and a reconstruction on power-of-two grids (:mod:`coemu.geometry.reconstruct`)
finds the points on its nodes. The domain's 8 corners are points too, so the
points' bounding box is exactly the drawn domain. The default (64 nodes, 7
levels, 0.2 au) resolves the default cube (cells of 1.55 au): spacing 1.6 au
within 51 au of the star (the cube reaches 49 au), 3.2 au to 102 au (a rotated
cube reaches 86 au), 0.2-0.4 au within 6-13 au of the star; about 1.3 million
points per model.

Parameters are drawn reproducibly from ``numpy.random.default_rng([seed,
index])`` over ranges like those of the ATOMIUM AMRVAC models the paper used.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from coemu.constants import (
    ASTRONOMICAL_UNIT as AU,
)
from coemu.constants import (
    GRAVITATIONAL_CONSTANT,
    HYDROGEN_MASS,
    JULIAN_YEAR,
    KM,
    SOLAR_MASS,
)
from coemu.hydro.catalog import synthetic_model_id
from coemu.hydro.model import HydroModel

#: Mass per H2 molecule including helium (mean molecular weight per H2), kg.
MASS_PER_H2 = 2.8 * HYDROGEN_MASS
#: Orbits closer than this grow an equatorial density enhancement.
DISK_SEPARATION = 6.0 * AU
#: Temperature floor, K.
TEMPERATURE_FLOOR = 10.0

#: Ranges the parameters are drawn from: (low, high, "log" | "lin").
PARAMETER_RANGES: dict[str, tuple[float, float, str]] = {
    "mass_loss_rate": (1e-7, 5e-6, "log"),  # Msun / yr
    "wind_velocity": (5.0, 20.0, "lin"),  # km / s (terminal)
    "agb_mass": (1.0, 2.5, "lin"),  # Msun
    "companion_mass": (0.1, 1.5, "lin"),  # Msun
    "separation": (2.0, 20.0, "log"),  # AU, semi-major axis
    "eccentricity": (0.0, 0.6, "lin"),
    "orbital_phase": (0.0, 2 * np.pi, "lin"),  # rad, mean anomaly proxy
    "stellar_radius": (1.0, 2.5, "lin"),  # AU
    "stellar_temperature": (2000.0, 3000.0, "lin"),  # K
    "temperature_exponent": (0.5, 0.9, "lin"),
    "co_abundance": (2e-4, 8e-4, "log"),  # n_CO / n_H2
    "spiral_contrast": (1.0, 6.0, "lin"),  # peak density enhancement of the arm
    "spiral_width": (0.25, 0.7, "lin"),  # rad, azimuthal width of the arm
    "spiral_latitude": (0.3, 0.9, "lin"),  # rad, latitude half-width of the wake
    "domain_half_size": (100.0, 200.0, "lin"),  # AU
}


@dataclass(frozen=True)
class WindParameters:
    """Physical parameters of one synthetic model (units in the field names' comments).

    ``domain_half_extent`` is in AU per axis (x, y, z): the base half size
    times per-axis aspect factors in [0.8, 1.2].
    """

    mass_loss_rate: float  # Msun / yr
    wind_velocity: float  # km / s
    agb_mass: float  # Msun
    companion_mass: float  # Msun
    separation: float  # AU
    eccentricity: float
    orbital_phase: float  # rad
    stellar_radius: float  # AU
    stellar_temperature: float  # K
    temperature_exponent: float
    co_abundance: float
    spiral_contrast: float
    spiral_width: float  # rad
    spiral_latitude: float  # rad
    domain_half_extent: tuple[float, float, float]  # AU

    def to_dict(self) -> dict:
        return asdict(self)


def draw_parameters(seed: int, index: int) -> WindParameters:
    """Draw the parameters of model ``index`` reproducibly from ``(seed, index)``."""
    rng = np.random.default_rng([int(seed), int(index)])
    values = {}
    for name, (lo, hi, scale) in PARAMETER_RANGES.items():
        u = rng.uniform()
        values[name] = float(
            np.exp(np.log(lo) + u * np.log(hi / lo)) if scale == "log" else lo + u * (hi - lo)
        )
    half = values.pop("domain_half_size")
    aspect = rng.uniform(0.8, 1.2, size=3)
    return WindParameters(domain_half_extent=tuple(float(h) for h in half * aspect), **values)


def domain_bounds(params: WindParameters) -> tuple[np.ndarray, np.ndarray]:
    """(lower, upper) corners of the model's domain in m; the points' exact bounding box."""
    half = np.asarray(params.domain_half_extent) * AU
    return -half, half


#: Point layouts: ``amr`` (nested lattices, the pipeline's synthetic models) and ``random``
#: (the same number of points per level at random positions in the level's region, denser in
#: proportion to the density enhancement of the spiral and the disk: an unstructured cloud
#: that follows the structure like a Magritte mesh, for testing the regridder on one).
LAYOUTS = ("amr", "random")


def amr_points(
    half_extent: np.ndarray,
    n_base: int,
    levels: int,
    finest: float,
    centre: np.ndarray | None = None,
    rng: np.random.Generator | None = None,
    weight=None,
) -> np.ndarray:
    """Nested-grid point positions (N, 3) in the units of ``half_extent`` (see the module docstring).

    Args:
        half_extent: (3,) the domain is ``[-h, h]`` per axis.
        n_base: nodes per axis of each level (the outer level: at most).
        levels: number of levels, the outer one included.
        finest: the smallest spacing allowed.
        centre: (3,) where the inner levels are centred (default: the domain's centre).
        rng: when given, each level's nodes are replaced by as many random points in the
            level's region (its box less the next finer box): the ``random`` layout.
        weight: with ``rng``: positions (P, 3) -> (P,) relative point density within a level;
            a level's points are drawn from 4 times as many uniform candidates with
            probabilities proportional to it (uniform when None).
    """
    h = np.asarray(half_extent, dtype=np.float64)
    centre = np.zeros(3) if centre is None else np.asarray(centre, dtype=np.float64)
    j = max(0, math.ceil(math.log2(2 * h.max() / ((n_base - 1) * finest)) - 1e-12))
    spacing = finest * 2.0**j
    chunks = []
    levels_spacing = [spacing / 2**k for k in range(min(levels, j + 1))]
    boxes = []
    for s in levels_spacing[1:]:
        c = np.round(centre / (2 * s)) * (2 * s)
        half = s * (n_base // 2)
        boxes.append((np.maximum(c - half, -h), np.minimum(c + half, h)))
    for k, s in enumerate(levels_spacing):
        lo, hi = (-h, h) if k == 0 else boxes[k - 1]
        axes = [np.arange(np.ceil(lo[a] / s - 1e-9), np.floor(hi[a] / s + 1e-9) + 1) * s for a in range(3)]
        grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
        if k + 1 < len(levels_spacing):
            box = boxes[k]
            tol = 1e-9 * s
            inner = ((grid >= box[0] - tol) & (grid <= box[1] + tol)).all(axis=1)
            grid = grid[~inner]
            if rng is not None:
                grid = _weighted(rng, _random_in_shell(rng, 4 * len(grid), lo, hi, box), len(grid), weight)
        elif rng is not None:
            grid = _weighted(rng, rng.uniform(lo, hi, size=(4 * len(grid), 3)), len(grid), weight)
        chunks.append(grid)
    corners = np.stack(np.meshgrid(*[[-x, x] for x in h], indexing="ij"), axis=-1).reshape(-1, 3)
    return np.concatenate(chunks + [corners])


def _weighted(rng: np.random.Generator, candidates: np.ndarray, count: int, weight) -> np.ndarray:
    """``count`` of ``candidates`` (P, 3), drawn without replacement with probabilities
    proportional to ``weight(candidates)`` (the first ``count`` when ``weight`` is None)."""
    if weight is None or count == 0:
        return candidates[:count]
    w = np.asarray(weight(candidates), dtype=np.float64)
    return candidates[rng.choice(len(candidates), size=count, replace=False, p=w / w.sum())]


def _random_in_shell(rng: np.random.Generator, count: int, lo, hi, inner) -> np.ndarray:
    """``count`` uniform points in the box ``[lo, hi]`` outside the box ``inner`` (lower, upper)."""
    chunks, have = [np.empty((0, 3))], 0
    while have < count:
        p = rng.uniform(lo, hi, size=(max(2 * (count - have), 1024), 3))
        p = p[~((p >= inner[0]) & (p <= inner[1])).all(axis=1)]
        chunks.append(p)
        have += len(p)
    return np.concatenate(chunks)[:count]


def orbit(params: WindParameters) -> dict[str, np.ndarray | float]:
    """Positions (m) and orbital speed of the two stars at the model's phase.

    The AGB star is at ``-r M_c / M`` from the centre of mass along the line
    to the companion; ``r = a (1 - e^2) / (1 + e cos phase)``.
    """
    m_agb = params.agb_mass * SOLAR_MASS
    m_c = params.companion_mass * SOLAR_MASS
    m_tot = m_agb + m_c
    a = params.separation * AU
    e = params.eccentricity
    phi = params.orbital_phase
    r = a * (1 - e**2) / (1 + e * np.cos(phi))
    direction = np.array([np.cos(phi), np.sin(phi), 0.0])
    agb = -r * m_c / m_tot * direction
    companion = r * m_agb / m_tot * direction
    # vis-viva speed of the relative orbit; the AGB star moves at the M_c/M share
    v_rel = np.sqrt(GRAVITATIONAL_CONSTANT * m_tot * (2 / r - 1 / a))
    period = 2 * np.pi * np.sqrt(a**3 / (GRAVITATIONAL_CONSTANT * m_tot))
    return {
        "agb": agb,
        "companion": companion,
        "agb_speed": float(v_rel * m_c / m_tot),
        "agb_orbit_radius": float(r * m_c / m_tot),
        "period": float(period),
        "phase": float(phi),
    }


def wind_fields(position: np.ndarray, params: WindParameters) -> dict[str, np.ndarray]:
    """Evaluate the analytic wind at ``position`` (N, 3) in m.

    Returns:
        dict with ``velocity`` (N, 3) m s-1, ``temperature`` (N,) K,
        ``number_density_co`` (N,) m-3, ``mass_density`` (N,) kg m-3 and ``enhancement``
        (N,), the density over that of the smooth wind (1 + spiral + disk).
    """
    orb = orbit(params)
    r_star = params.stellar_radius * AU
    v_inf = params.wind_velocity * KM
    mdot = params.mass_loss_rate * SOLAR_MASS / JULIAN_YEAR

    rel = position - orb["agb"]
    r = np.maximum(np.linalg.norm(rel, axis=1), r_star)
    r_hat = rel / r[:, None]
    # beta = 0.5 velocity law with a 1 km/s floor at the stellar surface
    v_r = KM + (v_inf - KM) * np.sqrt(np.clip(1.0 - r_star / r, 0.0, 1.0))
    rho_smooth = mdot / (4 * np.pi * r**2 * v_r)

    # Archimedean spiral in the orbital plane, launched from the companion
    x, y, z = position.T
    cyl = np.hypot(x, y)
    azimuth = np.arctan2(y, x)
    spacing = v_inf * orb["period"]
    arm_phase = orb["phase"] - 2 * np.pi * cyl / spacing
    delta = np.angle(np.exp(1j * (azimuth - arm_phase)))
    latitude = np.arctan2(z, cyl)
    arcs = 1.0 + params.eccentricity * np.cos(2 * np.pi * cyl / spacing + orb["phase"])
    spiral = (
        params.spiral_contrast
        * arcs
        * np.exp(-0.5 * (delta / params.spiral_width) ** 2)
        * np.exp(-0.5 * (latitude / params.spiral_latitude) ** 2)
    )
    # equatorial, disk-like enhancement for close orbits
    closeness = np.clip((DISK_SEPARATION - params.separation * AU) / DISK_SEPARATION, 0.0, 1.0)
    disk = 4.0 * closeness * np.exp(-0.5 * (latitude / 0.15) ** 2)
    enhancement = 1.0 + spiral + disk
    rho = rho_smooth * enhancement

    temperature = params.stellar_temperature * (r / r_star) ** (-params.temperature_exponent)
    temperature = np.maximum(temperature * (1.0 + 0.2 * (enhancement - 1.0) / enhancement), TEMPERATURE_FLOOR)

    # orbital motion of the AGB star, carried out with conserved angular momentum
    r_orb = max(orb["agb_orbit_radius"], r_star)
    v_phi = orb["agb_speed"] * np.where(cyl > r_orb, r_orb / np.maximum(cyl, 1e-30), cyl / r_orb)
    phi_hat = np.stack([-np.sin(azimuth), np.cos(azimuth), np.zeros_like(azimuth)], axis=1)
    velocity = v_r[:, None] * r_hat + v_phi[:, None] * phi_hat

    n_co = params.co_abundance * rho / MASS_PER_H2
    return {
        "velocity": velocity,
        "temperature": temperature,
        "number_density_co": n_co,
        "mass_density": rho,
        "enhancement": enhancement,
    }


#: Default smallest point spacing of the synthetic models, au (``models.finest_spacing``).
FINEST_SPACING = 0.2


def synthetic_model(
    seed: int,
    index: int,
    n_base: int = 32,
    levels: int = 3,
    finest_spacing: float = FINEST_SPACING,
    layout: str = "amr",
) -> HydroModel:
    """Generate synthetic model ``index`` of the data set with seed ``seed``.

    Args:
        seed: data-set seed.
        index: model number (0-based).
        n_base: nodes per axis of each AMR level (:func:`amr_points`).
        levels: number of nested levels (>= 1).
        finest_spacing: smallest point spacing, au.
        layout: :data:`LAYOUTS` (``random``: points drawn from ``(seed, index)`` too).

    Returns:
        A validated :class:`HydroModel` named ``m{index:05d}``.
    """
    params = draw_parameters(seed, index)
    _, upper = domain_bounds(params)
    if layout not in LAYOUTS:
        raise ValueError(f"unknown point layout '{layout}' (known: {', '.join(LAYOUTS)})")
    rng = np.random.default_rng([int(seed), int(index), 1]) if layout == "random" else None
    position = amr_points(
        upper,
        n_base,
        levels,
        finest_spacing * AU,
        orbit(params)["agb"],
        rng,
        weight=lambda p: wind_fields(p, params)["enhancement"],
    )
    return model_at(position, params, synthetic_model_id(index))


def model_at(position: np.ndarray, params: WindParameters, name: str) -> HydroModel:
    """The validated model ``name`` of the wind ``params`` at the points ``position`` (N, 3) m."""
    fields = wind_fields(position, params)
    return HydroModel(
        position=position,
        velocity=fields["velocity"],
        temperature=fields["temperature"],
        number_density_co=fields["number_density_co"],
        name=name,
    ).validated()
