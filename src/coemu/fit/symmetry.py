"""Viewing-angle partners of the binary family, and the posterior mass near each member of a pair.

A view is (inclination ``i``, position angle ``PA``) in degrees with the azimuth
0 (:func:`coemu.physics.viewing.viewing_matrix`); ``i`` in [0, 180], ``PA`` on
the circle. The candidate partners of a view (docs/symmetries.md derives and
measures them):

* ``mirror`` (180 - i, PA + 180): the same projected orbital axis with the
  same receding half, seen from the other side of the orbital plane; it is
  ``R(i, PA) R_y(180)``, the model turned by 180 degrees about an axis in
  the orbital plane (equivalently, by the model's mirror symmetry z -> -z,
  the model mirrored in the plane x = 0). It is exact for the smooth parts
  (the spherical wind and the equatorial disk), and broken by what has a
  handedness: the orbital motion (its sense on the sky reverses) and the
  spiral (its winding on the sky reverses).
* ``turn`` (i, PA + 180): the image turned by 180 degrees on the sky. Exact
  for a spherical wind only; with the disk, the image at (i, PA) is close to
  the velocity-reversed image at (i, PA + 180) (optically thin emission of a
  point-symmetric outflow), not to the image itself.
* ``flip`` (180 - i, PA): the composition of the two.

Measured for the binary family at the bench's mocks (12^3 and 16^3 cells, 11
channels x 4 km/s, 0.1" beam at 150 pc, peak S/N 20), all three are
``broken``: the chi^2 between the members is 360-4200 at the mapped point
and still 240-1900 (380-1600 for ``mirror``) after refitting the family's free
parameters from there. The partners are local optima of the likelihood (traps for the
MAP search), not degenerate modes of the posterior, unless the spiral and the
orbital motion are unresolved or the S/N is about 2 or lower
(:attr:`Partner.near_below_snr`). The prior (isotropic ``i``, uniform
``PA``) is invariant under each map, so the members of a pair have the same
prior density.

Exact relations outside (i, PA) (not partners, since those parameters are
held fixed in a fit): ``PA + 360``; for a circular orbit (eccentricity 0) the
azimuth and the orbital phase, ``(azimuth + a, phase) = (azimuth, phase + a)``,
hence face-on (``i = 0``) ``(PA + a, phase + a)``: a fit of a face-on view
with the phase held at a wrong value moves the position angle by the error.

:func:`pair_mass` reports the posterior mass near the view and near each of its
partners, the distance between views being the angle of the rotation that takes
one viewing matrix to the other (:func:`view_separation`), so the position
angle wraps at 0 = 360 degrees and near face-on a change of PA counts as the
image's turn that it is.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

#: Classification of a partner (docs/symmetries.md): ``exact`` the same cube to rounding
#: (max |difference| < 1e-8 of the peak), ``near`` chi^2 < :data:`NEAR_CHI2` at peak S/N 20
#: for some draws of the prior, ``broken`` otherwise.
KINDS = ("exact", "near", "broken")
#: The chi^2 between two members (peak S/N 20) below which a pair is ``near``: the partner's
#: likelihood is then at least e^-2 of the view's.
NEAR_CHI2 = 4.0
#: The default half width (degrees of rotation between views) of the region counted as near a member.
DEFAULT_WIDTH = 20.0


@dataclass(frozen=True)
class Partner:
    """A map of views (i, PA) -> (i', PA'), degrees, and what is known of it.

    Attributes:
        name: short name (``mirror``, ``turn``, ``flip``).
        label: the map in words, e.g. ``(180 - i, PA + 180)``.
        kind: one of :data:`KINDS`, measured for the binary family at peak S/N 20.
        exact_for: the part of the model for which the map is exact.
        chi2_snr20: the smallest chi^2 (peak S/N 20, beam-correlated noise) between a view and
            the best model reached by refitting the free parameters from the partner, over the
            measured prior draws (12^3 cells; docs/symmetries.md). The chi^2 scales with S/N^2.
        inclination, position_angle: the map itself, (i, PA) -> i' and (i, PA) -> PA' (degrees;
            numpy-broadcasting functions).
    """

    name: str
    label: str
    kind: str
    exact_for: str
    chi2_snr20: float
    inclination: Callable[[np.ndarray, np.ndarray], np.ndarray]
    position_angle: Callable[[np.ndarray, np.ndarray], np.ndarray]

    def __call__(self, inclination, position_angle) -> tuple[np.ndarray, np.ndarray]:
        """(i', PA') of views (i, PA), degrees (numbers or arrays); PA' in [0, 360)."""
        i = np.asarray(inclination, dtype=float)
        pa = np.asarray(position_angle, dtype=float)
        return self.inclination(i, pa), np.mod(self.position_angle(i, pa), 360.0)

    @property
    def near_below_snr(self) -> float:
        """The peak S/N below which the smallest measured chi^2 falls under :data:`NEAR_CHI2`."""
        return 20.0 * math.sqrt(NEAR_CHI2 / self.chi2_snr20)


#: The candidate partners of a view, as measured for the binary family (docs/symmetries.md).
PARTNERS: tuple[Partner, ...] = (
    Partner(
        "mirror",
        "(180 - i, PA + 180)",
        "broken",
        "the smooth wind and the equatorial disk (no spiral, no orbital motion)",
        380.0,
        lambda i, pa: 180.0 - i,
        lambda i, pa: pa + 180.0,
    ),
    Partner(
        "turn",
        "(i, PA + 180)",
        "broken",
        "a spherical wind (no spiral, no orbital motion, no disk: separation >= 6 au)",
        353.0,
        lambda i, pa: i,
        lambda i, pa: pa + 180.0,
    ),
    Partner(
        "flip",
        "(180 - i, PA)",
        "broken",
        "a spherical wind (no spiral, no orbital motion, no disk: separation >= 6 au)",
        237.0,
        lambda i, pa: 180.0 - i,
        lambda i, pa: pa,
    ),
)


def partners(
    inclination: float, position_angle: float, kinds: Sequence[str] | None = None
) -> list[tuple[str, float, float]]:
    """The partners (name, i', PA') of the view (i, PA) (degrees), PA' in [0, 360).

    Args:
        kinds: only the partners of these kinds (:data:`KINDS`); None: all of :data:`PARTNERS`.

    Raises:
        ValueError: an inclination outside [0, 180] or a non-finite angle, or an unknown kind.
    """
    _check_view(inclination, position_angle)
    if kinds is not None and set(kinds) - set(KINDS):
        raise ValueError(f"kinds {sorted(set(kinds) - set(KINDS))} are not among {KINDS}")
    out = []
    for p in PARTNERS:
        if kinds is None or p.kind in kinds:
            i2, pa2 = p(inclination, position_angle)
            out.append((p.name, float(i2), float(pa2)))
    return out


def _check_view(inclination: float, position_angle: float) -> None:
    if not (math.isfinite(inclination) and math.isfinite(position_angle)):
        raise ValueError(f"view ({inclination}, {position_angle}) is not finite")
    if not 0.0 <= inclination <= 180.0:
        raise ValueError(f"inclination {inclination} deg is outside [0, 180]")


def view_separation(i1, pa1, i2, pa2) -> np.ndarray:
    """The angle (degrees, in [0, 180]) of the rotation between the views (i1, PA1) and (i2, PA2).

    The geodesic distance on SO(3) between ``R(i1, PA1, 0)`` and ``R(i2, PA2, 0)``
    (:func:`coemu.physics.viewing.viewing_matrix`): with ``a = i1 - i2`` and ``d = PA1 - PA2``,
    ``cos(theta / 2) = |cos(a / 2) cos(d / 2)|``, computed with atan2 for precision near 0.
    Periodic in the position angles (360 degrees); near face-on a change of PA counts as
    the turn of the image it is. Arguments are degrees, broadcast against each other.
    """
    a = np.radians(np.asarray(i1, dtype=float) - np.asarray(i2, dtype=float)) / 2
    d = np.radians(np.asarray(pa1, dtype=float) - np.asarray(pa2, dtype=float)) / 2
    sin_half = np.sqrt(np.sin(a) ** 2 + (np.cos(a) * np.sin(d)) ** 2)
    cos_half = np.abs(np.cos(a) * np.cos(d))
    return np.degrees(2.0 * np.arctan2(sin_half, cos_half))


def wrap_position_angle(delta) -> np.ndarray:
    """Differences of position angles (degrees) wrapped to [-180, 180)."""
    return np.mod(np.asarray(delta, dtype=float) + 180.0, 360.0) - 180.0


def members(view: tuple[float, float], kinds: Sequence[str] | None = None) -> list[tuple[str, float, float]]:
    """The view itself (named ``view``) followed by its :func:`partners`: (name, i, PA), degrees."""
    i, pa = (float(x) for x in view)
    _check_view(i, pa)
    return [("view", i, pa % 360.0), *partners(i, pa, kinds)]


def _angles(samples: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    try:
        i = np.asarray(samples["inclination"], dtype=float).reshape(-1)
        pa = np.asarray(samples["position_angle"], dtype=float).reshape(-1)
    except KeyError as err:
        raise ValueError(f"samples need 'inclination' and 'position_angle' (degrees); no {err}") from None
    if i.shape != pa.shape or i.size == 0:
        raise ValueError(f"{i.size} inclinations and {pa.size} position angles: need as many, at least one")
    return i, pa


def member_of(
    samples: Mapping[str, np.ndarray],
    view: tuple[float, float],
    width_deg: float = DEFAULT_WIDTH,
    kinds: Sequence[str] | None = None,
) -> np.ndarray:
    """For each sample, the index (into :func:`members`) of the nearest member within ``width_deg``.

    Args:
        samples: ``inclination`` and ``position_angle`` arrays (degrees, any equal shapes, e.g.
            (chain, draw)); other keys are ignored.
        view: (i, PA) in degrees: the truth or the posterior's mode.
        width_deg: a sample farther than this (the rotation angle between the views,
            :func:`view_separation`) from every member counts for none of them.

    Returns:
        (N,) int, N the number of samples (flattened in C order), -1 where no member is near.
    """
    if not width_deg > 0:
        raise ValueError(f"width_deg {width_deg} must be > 0")
    i, pa = _angles(samples)
    places = members(view, kinds)
    distance = np.stack([view_separation(i, pa, mi, mpa) for _, mi, mpa in places])  # (M, N)
    nearest = np.argmin(distance, axis=0)
    return np.where(distance[nearest, np.arange(i.size)] <= width_deg, nearest, -1)


def pair_mass(
    samples: Mapping[str, np.ndarray],
    truth_or_mode: tuple[float, float],
    width_deg: float = DEFAULT_WIDTH,
    weights: np.ndarray | None = None,
    kinds: Sequence[str] | None = None,
) -> dict:
    """The posterior mass near a view and near each of its partners.

    Each sample counts for the nearest member (the view or a partner) if it is within
    ``width_deg`` of it (:func:`member_of`), else for ``elsewhere``; where two members are
    closer than 2 ``width_deg`` (e.g. ``flip`` and the view near i = 90) their regions
    touch, the mass is split between them by nearness, and the pair is listed in
    ``overlapping``: the data cannot be asked to tell them apart at this width.

    Args:
        samples: ``inclination`` and ``position_angle`` arrays, degrees (any equal shapes).
        truth_or_mode: (i, PA) in degrees.
        width_deg: the half width of each member's region, degrees of rotation.
        weights: (N,) or the samples' shape, non-negative (nested sampling's); None: equal.
        kinds: the partners of these kinds only (:data:`KINDS`); None: all.

    Returns:
        ``{"view": {"inclination", "position_angle"}, "width_deg", "samples": N,
        "members": [{"name", "label", "kind", "inclination", "position_angle",
        "separation_deg" (from the view), "mass"}, ...] (the view first), "elsewhere": mass
        near no member, "overlapping": [[name, name], ...]}``; masses are fractions of the
        total weight, summing with ``elsewhere`` to 1.

    Raises:
        ValueError: missing or mismatched angles, a view outside the ranges, bad weights.
    """
    i, _ = _angles(samples)
    which = member_of(samples, truth_or_mode, width_deg, kinds)
    if weights is None:
        w = np.full(i.size, 1.0 / i.size)
    else:
        w = np.asarray(weights, dtype=float).reshape(-1)
        if w.size != i.size or not np.all(np.isfinite(w)) or np.any(w < 0) or not w.sum() > 0:
            raise ValueError(f"weights: need {i.size} finite, non-negative values with a positive sum")
        w = w / w.sum()
    places = members(truth_or_mode, kinds)
    view_i, view_pa = places[0][1], places[0][2]
    labels = {p.name: p for p in PARTNERS}
    rows = []
    for k, (name, mi, mpa) in enumerate(places):
        partner = labels.get(name)
        rows.append(
            {
                "name": name,
                "label": "(i, PA)" if partner is None else partner.label,
                "kind": "view" if partner is None else partner.kind,
                "inclination": mi,
                "position_angle": mpa,
                "separation_deg": float(view_separation(view_i, view_pa, mi, mpa)),
                "mass": float(w[which == k].sum()),
            }
        )
    overlapping = [
        [a[0], b[0]]
        for n, a in enumerate(places)
        for b in places[n + 1 :]
        if view_separation(a[1], a[2], b[1], b[2]) < 2 * width_deg
    ]
    return {
        "view": {"inclination": view_i, "position_angle": view_pa},
        "width_deg": float(width_deg),
        "samples": int(i.size),
        "members": rows,
        "elsewhere": float(w[which < 0].sum()),
        "overlapping": overlapping,
    }


def describe(result: dict, view_name: str = "the view") -> str:
    """One line of :func:`pair_mass`'s result: ``mass near the view (i, PA) = (60.0, 30.0):
    0.97; near its mirror (180 - i, PA + 180) = (120.0, 210.0): 0.02; ...; elsewhere: 0.01``."""
    parts = []
    for m in result["members"]:
        where = f"({m['inclination']:.1f}, {m['position_angle']:.1f})"
        if m["name"] == "view":
            parts.append(f"mass near {view_name} (i, PA) = {where}: {m['mass']:.3g}")
        else:
            parts.append(f"near its {m['name']} {m['label']} = {where}: {m['mass']:.3g}")
    text = "; ".join(parts) + f"; elsewhere: {result['elsewhere']:.3g}"
    if result["overlapping"]:
        pairs = ", ".join("/".join(p) for p in result["overlapping"])
        text += f" (within {result['width_deg']:g} deg of each other, not separable: {pairs})"
    return text
