"""Model families, their free parameters and priors.

Two families of :mod:`coemu.physics.wind`:

* ``binary``: the synthetic binary wind of :mod:`coemu.hydro.synthetic`, seen
  from (inclination, position angle) with the azimuth 0 (the orbital phase
  plays its part);
* ``single``: the same AGB wind without a companion (no spiral, no
  equatorial enhancement, no orbital motion). It is spherically symmetric, so
  no viewing angle enters.

Priors, each the data set's own where the data set draws the parameter
(:data:`coemu.hydro.synthetic.PARAMETER_RANGES`): uniform over the range, or
uniform in ln for the ``log`` ones (mass-loss rate, separation, CO
abundance); the inclination isotropic (cos i uniform on [-1, 1], i in [0,
180] degrees); the position angle uniform on the circle, sampled as the
direction of a 2D standard normal vector (``position_angle_xy``) so that the
sampler sees no edge at 0 = 360 degrees.

The parameters a family does not fit are held at fixed values: the range's
midpoint (geometric for ``log``), or what the user gives (``--fixed``), or
the true values of a synthetic model (``--truth``), as the bench does.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch

from coemu.hydro.synthetic import PARAMETER_RANGES, WindParameters
from coemu.io.errors import CoemuInputError

#: The wind's parameters (the WindParameters fields without the domain).
WIND_PARAMETERS = tuple(n for n in WindParameters.__dataclass_fields__ if n != "domain_half_extent")
#: The viewing angles (degrees); the azimuth is fixed (0 unless given).
VIEWING_PARAMETERS = ("inclination", "position_angle", "azimuth")

#: Families: name -> (free parameters by default, parameters that enter the model at all).
FAMILIES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "binary": (
        ("mass_loss_rate", "wind_velocity", "separation", "spiral_contrast", "inclination", "position_angle"),
        WIND_PARAMETERS + VIEWING_PARAMETERS,
    ),
    "single": (
        ("mass_loss_rate", "wind_velocity"),
        (
            "mass_loss_rate",
            "wind_velocity",
            "stellar_radius",
            "stellar_temperature",
            "temperature_exponent",
            "co_abundance",
        ),
    ),
}

#: Units of each parameter, for tables and plots.
UNITS = {
    "mass_loss_rate": "Msun/yr",
    "wind_velocity": "km/s",
    "agb_mass": "Msun",
    "companion_mass": "Msun",
    "separation": "au",
    "orbital_phase": "rad",
    "stellar_radius": "au",
    "stellar_temperature": "K",
    "spiral_width": "rad",
    "spiral_latitude": "rad",
    "inclination": "deg",
    "position_angle": "deg",
    "azimuth": "deg",
}


def default_value(name: str) -> float:
    """The fixed value of a parameter nobody gave: the range's (geometric) midpoint; angles 0."""
    if name in VIEWING_PARAMETERS:
        return 0.0
    lo, hi, scale = PARAMETER_RANGES[name]
    return math.sqrt(lo * hi) if scale == "log" else 0.5 * (lo + hi)


@dataclass(frozen=True)
class Prior:
    """One sample site: its name, shape and how it maps to a physical parameter.

    ``kind``: ``uniform`` (value in [low, high]), ``log-uniform`` (site = ln value in
    [ln low, ln high]), ``isotropic`` (site = cos i in [-1, 1], value = i in degrees),
    ``circle`` (site = a 2-vector ~ N(0, I), value = its direction east of north, degrees).
    """

    parameter: str
    kind: str
    low: float = 0.0
    high: float = 1.0

    @property
    def site(self) -> str:
        return {
            "uniform": self.parameter,
            "log-uniform": f"ln_{self.parameter}",
            "isotropic": f"cos_{self.parameter}",
            "circle": f"{self.parameter}_xy",
        }[self.kind]

    def distribution(self, dtype: torch.dtype):
        import pyro.distributions as dist

        t = lambda x: torch.tensor(x, dtype=dtype)  # noqa: E731
        if self.kind == "uniform":
            return dist.Uniform(t(self.low), t(self.high))
        if self.kind == "log-uniform":
            return dist.Uniform(t(math.log(self.low)), t(math.log(self.high)))
        if self.kind == "isotropic":
            return dist.Uniform(t(-1.0), t(1.0))
        return dist.Normal(torch.zeros(2, dtype=dtype), torch.ones(2, dtype=dtype)).to_event(1)

    def value(self, site: torch.Tensor) -> torch.Tensor:
        """The physical parameter of a site's value (a tensor, gradients flow)."""
        if self.kind == "uniform":
            return site
        if self.kind == "log-uniform":
            return torch.exp(site)
        if self.kind == "isotropic":
            return torch.rad2deg(torch.arccos(torch.clamp(site, -1.0, 1.0)))
        return torch.rad2deg(torch.atan2(site[..., 0], site[..., 1])) % 360.0


def site_value(prior: Prior, value: float, dtype=torch.float64) -> torch.Tensor:
    """The inverse of :meth:`Prior.value`: the site's value of a physical value."""
    if prior.kind == "uniform":
        return torch.tensor(value, dtype=dtype)
    if prior.kind == "log-uniform":
        return torch.tensor(math.log(value), dtype=dtype)
    if prior.kind == "isotropic":
        return torch.tensor(math.cos(math.radians(value)), dtype=dtype)
    rad = math.radians(value)
    return torch.tensor([math.sin(rad), math.cos(rad)], dtype=dtype)


def prior_of(name: str) -> Prior:
    if name == "inclination":
        return Prior(name, "isotropic")
    if name in ("position_angle", "azimuth"):
        return Prior(name, "circle")
    if name not in PARAMETER_RANGES:
        raise CoemuInputError(None, "free", f"'{name}' is not a parameter of the synthetic family")
    lo, hi, scale = PARAMETER_RANGES[name]
    return Prior(name, "log-uniform" if scale == "log" else "uniform", lo, hi)


@dataclass(frozen=True)
class Family:
    """A model family with its free parameters (priors) and fixed values.

    Attributes:
        name: ``binary`` or ``single``.
        free: the fitted parameters, in order.
        fixed: the value of every other parameter the family uses.
    """

    name: str
    free: tuple[str, ...]
    fixed: dict[str, float] = field(default_factory=dict)

    @classmethod
    def make(
        cls, name: str, free: Sequence[str] | None = None, fixed: Mapping[str, float] | None = None
    ) -> Family:
        """The family ``name`` fitting ``free`` (default: its own list), others at ``fixed`` or defaults.

        Raises:
            CoemuInputError: an unknown family, or a free or fixed parameter it does not use.
        """
        if name not in FAMILIES:
            raise CoemuInputError(None, "family", f"'{name}' is not one of {', '.join(FAMILIES)}")
        default_free, used = FAMILIES[name]
        free = tuple(default_free if free is None else free)
        for p in free:
            if p not in used:
                raise CoemuInputError(None, "free", f"the {name} family has no parameter '{p}'")
        fixed = dict(fixed or {})
        values = {p: float(fixed.get(p, default_value(p))) for p in used if p not in free}
        return cls(name, free, values)

    @property
    def priors(self) -> tuple[Prior, ...]:
        return tuple(prior_of(p) for p in self.free)

    @property
    def single(self) -> bool:
        return self.name == "single"

    def parameters(self, sites: Mapping[str, torch.Tensor], dtype: torch.dtype) -> dict[str, torch.Tensor]:
        """Every parameter the family uses as a 0-d tensor: the free from ``sites``, the fixed."""
        out = {k: torch.tensor(v, dtype=dtype) for k, v in self.fixed.items()}
        for prior in self.priors:
            out[prior.parameter] = prior.value(sites[prior.site])
        return out

    def to_dict(self) -> dict:
        return {"name": self.name, "free": list(self.free), "fixed": dict(self.fixed)}


def truth_values(seed: int, model_id: str) -> dict[str, float]:
    """The parameters of synthetic model ``m00003`` of the data set with ``seed`` (angles 0)."""
    from coemu.hydro.synthetic import draw_parameters

    if not (model_id.startswith("m") and model_id[1:].isdigit()):
        raise CoemuInputError(None, "truth", f"'{model_id}' is not a synthetic model id (m00003)")
    p = draw_parameters(seed, int(model_id[1:])).to_dict()
    p.pop("domain_half_extent")
    return {**p, "inclination": 0.0, "position_angle": 0.0, "azimuth": 0.0}
