"""Parametric AGB binary wind models, the embedded synthetic data set.

The wind (an AGB star's outflow shaped by a companion: an Archimedean
spiral, arcs, an equatorial enhancement; temperature and velocity laws) is
:mod:`coemu.physics.wind`, in torch; :func:`wind_fields` and :func:`orbit`
here evaluate it for numpy points and :class:`WindParameters`.

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

from coemu.constants import ASTRONOMICAL_UNIT as AU
from coemu.hydro.catalog import synthetic_model_id
from coemu.hydro.model import HydroModel

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
    """Positions (m) and motion of the two stars at the model's phase (:func:`coemu.physics.wind.orbit`).

    Returns:
        ``agb`` and ``companion`` (3,) m, ``agb_speed`` m/s, ``agb_orbit_radius`` m,
        ``period`` s and ``phase`` rad (floats).
    """
    from coemu.physics import wind  # torch: imported where the wind is evaluated

    stars = wind.orbit(params.to_dict())
    return {
        "agb": stars.agb.numpy(),
        "companion": stars.companion.numpy(),
        "agb_speed": float(stars.agb_speed),
        "agb_orbit_radius": float(stars.agb_orbit_radius),
        "period": float(stars.period),
        "phase": float(stars.phase),
    }


def wind_fields(position: np.ndarray, params: WindParameters) -> dict[str, np.ndarray]:
    """The analytic wind (:func:`coemu.physics.wind.wind_fields`) at ``position`` (N, 3) m.

    Returns:
        float64 arrays: ``velocity`` (N, 3) m s-1, ``temperature`` (N,) K,
        ``number_density_co`` (N,) m-3, ``mass_density`` (N,) kg m-3 and ``enhancement``
        (N,), the density over that of the smooth wind (1 + spiral + disk).
    """
    import torch  # imported where the wind is evaluated: drawing parameters needs no torch

    from coemu.physics import wind

    points = torch.from_numpy(np.ascontiguousarray(position, dtype=np.float64))
    with torch.no_grad():
        fields = wind.wind_fields(points, params.to_dict())
    return {name: value.numpy() for name, value in fields._asdict().items()}


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
