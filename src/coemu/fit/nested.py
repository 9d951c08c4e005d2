"""Nested sampling of a family's posterior and evidence (UltraNest or nautilus), on the unit cube.

The binary family's posterior is multimodal (the spiral, the viewing angles'
near-mirror images); NUTS from the MAP stays in one mode. A nested sampler
explores the whole prior, so it finds every mode that holds mass, and it
gives ln Z directly. Two maintained libraries take a *batched* likelihood
(``vectorized``):

* ``ultranest`` (:class:`ultranest.ReactiveNestedSampler`, MLFriends regions):
  ln Z with its bootstrapped error, stops when the live points hold less
  than ``dlogz`` of ln Z and the posterior's ESS reaches ``min_ess``;
* ``nautilus`` (:class:`nautilus.Sampler`, neural-network-boosted importance
  sampling): ln Z without an error of its own; :func:`run_nested` reports
  ``1 / sqrt(n_eff)`` (the relative error of an importance-sampling mean of
  ``n_eff`` effective draws: statistical only; on the analytic cases of
  ``tests/test_fit_nested.py`` the run-to-run scatter over 12 runs was 0.027
  for 0.031 claimed), stops when the live set holds less than ``f_live`` of
  Z and the ESS reaches ``min_ess``.

The likelihood is ``loglike(theta)``: ``theta`` (N, D) the PHYSICAL values of
the free parameters in the priors' order (the position angle in degrees as a
plain angle in [0, 360)), returning ln L (N,). A value of ``-1e100`` marks an
invalid vector; NaN and ``-inf`` are turned into ``-1e100`` and counted in
the diagnostics (``non_finite``), ``+inf`` is an error.

The unit cube maps to the priors of :class:`coemu.fit.family.Prior`
(:func:`unit_cube_transform`): uniform ``lo + u (hi - lo)``, log-uniform
``exp(ln lo + u ln(hi / lo))``, isotropic ``i = degrees(arccos(1 - 2u))``
in [0, 180], circle ``360 u`` (periodic: ``wrapped_params`` / ``periodic``).

:func:`unconstrained` maps nested samples to the NUTS coordinates ``z`` of
:class:`coemu.fit.sample.Posterior` with the density NUTS samples there, so
that the learned harmonic mean (:func:`coemu.fit.evidence.ln_evidence_from_nested`)
can check the nested sampler's ln Z on the same footing as the NUTS fit's.

Threads: the run holds torch and the BLAS/OpenMP pools at ``threads`` (1 by
default) and puts torch's setting back afterwards.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from coemu.fit.family import Prior

log = logging.getLogger(__name__)
# ultranest prints to stdout unless its logger already has a handler: through logging instead.
if not logging.getLogger("ultranest").handlers:
    logging.getLogger("ultranest").addHandler(logging.NullHandler())

#: The samplers :func:`run_nested` knows.
SAMPLERS = ("ultranest", "nautilus")
#: ln L of an invalid parameter vector (the batched likelihood's convention).
INVALID = -1e100
#: Default live points per sampler (ultranest's own default; nautilus: fewer than its 2000,
#: enough for a handful of modes in 6 dimensions).
LIVE_POINTS = {"ultranest": 400, "nautilus": 1000}
#: ``min_ess`` that gives :func:`coemu.fit.evidence.ln_evidence_from_nested` its 20 pseudo-chains
#: of 100 equal-weight draws without duplicates: the thinning keeps about 2/3 of ultranest's
#: (Kish) ESS and 0.45 of nautilus's (measured on the analytic cases of the tests).
HARMONIC_MIN_ESS = {"ultranest": 3500, "nautilus": 5000}


@dataclass
class NestedResult:
    """The outcome of one nested sampling run.

    Attributes:
        sampler: ``ultranest`` or ``nautilus``.
        parameters: the free parameters' names, in the columns' order.
        log_z: ln Z, Z the evidence (the likelihood's integral over the prior); NaN if failed.
        log_z_error: its 1-sigma statistical error (see ``log_z_error_method``); NaN if failed.
        log_z_error_method: how ``log_z_error`` was estimated.
        samples: (M, D) equal-weight posterior draws in physical units, without duplicates
            (each weighted point kept with probability ``w / max w``).
        log_likelihood: (M,) ln L of ``samples``.
        weighted_samples: (W, D) every weighted point the sampler returned, physical units.
        log_weights: (W,) their normalised ln weights (``logsumexp == 0``).
        weighted_log_likelihood: (W,) their ln L.
        n_calls: likelihood evaluations (points, not batches).
        seconds: wall time of the run.
        converged: the sampler's stopping criterion was met (not the call limit, not a failure).
        diagnostics: the criterion and its values: ``stopped_by``, ``ess`` (Kish), ``non_finite``
            (ln L values that were NaN or -inf), per-sampler extras.
        failed: ``None``, or why the sampler raised (the run's other fields are then empty).
    """

    sampler: str
    parameters: tuple[str, ...]
    log_z: float = float("nan")
    log_z_error: float = float("nan")
    log_z_error_method: str = ""
    samples: np.ndarray = field(default_factory=lambda: np.empty((0, 0)))
    log_likelihood: np.ndarray = field(default_factory=lambda: np.empty(0))
    weighted_samples: np.ndarray = field(default_factory=lambda: np.empty((0, 0)))
    log_weights: np.ndarray = field(default_factory=lambda: np.empty(0))
    weighted_log_likelihood: np.ndarray = field(default_factory=lambda: np.empty(0))
    n_calls: int = 0
    seconds: float = 0.0
    converged: bool = False
    diagnostics: dict = field(default_factory=dict)
    failed: str | None = None

    def summary(self) -> dict:
        """The scalar fields as a JSON-ready dict (no arrays)."""
        return {
            "sampler": self.sampler,
            "parameters": list(self.parameters),
            "log_z": self.log_z,
            "log_z_error": self.log_z_error,
            "log_z_error_method": self.log_z_error_method,
            "n_samples": int(len(self.samples)),
            "n_calls": self.n_calls,
            "seconds": self.seconds,
            "converged": self.converged,
            "diagnostics": self.diagnostics,
            "failed": self.failed,
        }


def unit_cube_transform(priors: Sequence[Prior]) -> Callable[[np.ndarray], np.ndarray]:
    """The map from the unit cube to the priors' physical values.

    Returns:
        ``transform(u)``: ``u`` (N, D) or (D,) in [0, 1] -> the same shape of physical values,
        column ``j`` distributed as ``priors[j]`` when ``u`` is uniform (units: the parameter's,
        angles in degrees; the position angle in [0, 360)). ``u`` is not modified.
    """
    kinds = [p.kind for p in priors]
    for p in priors:
        if p.kind not in ("uniform", "log-uniform", "isotropic", "circle"):
            raise ValueError(f"unknown prior kind '{p.kind}' of {p.parameter}")

    def transform(u: np.ndarray) -> np.ndarray:
        u = np.asarray(u, dtype=np.float64)
        out = np.empty_like(u)
        for j, (p, kind) in enumerate(zip(priors, kinds, strict=True)):
            uj = u[..., j]
            if kind == "uniform":
                out[..., j] = p.low + uj * (p.high - p.low)
            elif kind == "log-uniform":
                out[..., j] = np.exp(math.log(p.low) + uj * math.log(p.high / p.low))
            elif kind == "isotropic":
                out[..., j] = np.degrees(np.arccos(np.clip(1.0 - 2.0 * uj, -1.0, 1.0)))
            else:
                out[..., j] = np.mod(360.0 * uj, 360.0)
        return out

    return transform


def site_unit(priors: Sequence[Prior], theta: np.ndarray) -> np.ndarray:
    """The position in [0, 1] of each interval site's value within its support (pyro's sites).

    ``theta`` (N, D) physical values -> (N, D): uniform ``(x - lo) / (hi - lo)``, log-uniform
    ``ln(x / lo) / ln(hi / lo)``, isotropic ``(cos i + 1) / 2`` (the site is cos i in [-1, 1]),
    circle ``PA / 360`` (not a site of pyro's: see :func:`unconstrained`).
    """
    theta = np.asarray(theta, dtype=np.float64)
    out = np.empty_like(theta)
    for j, p in enumerate(priors):
        x = theta[..., j]
        if p.kind == "uniform":
            out[..., j] = (x - p.low) / (p.high - p.low)
        elif p.kind == "log-uniform":
            out[..., j] = np.log(x / p.low) / math.log(p.high / p.low)
        elif p.kind == "isotropic":
            out[..., j] = 0.5 * (np.cos(np.radians(x)) + 1.0)
        else:
            out[..., j] = np.mod(x, 360.0) / 360.0
    return out


def unconstrained(
    priors: Sequence[Prior], theta: np.ndarray, log_likelihood: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Posterior draws in physical units -> the NUTS coordinates ``z`` and NUTS's log density.

    The coordinates are those of :class:`coemu.fit.sample.Posterior`: an interval site ``s`` in
    [a, b] (the value, its ln, or cos i) maps to ``z = logit((s - a) / (b - a))``, whose prior
    density is ``v (1 - v)`` with ``v = (s - a) / (b - a)``; the position angle is the 2-vector
    ``r (sin PA, cos PA)`` ~ N(0, I), drawn here with ``r`` ~ Rayleigh(1) (exact: the prior of
    (PA, r) factorises, and the likelihood does not depend on ``r``), of prior density
    ``exp(-r^2 / 2) / (2 pi)``.

    Args:
        theta: (M, D) draws of the posterior (physical units, degrees).
        log_likelihood: (M,) their ln L.
        rng: draws ``r``.

    Returns:
        ``z`` (M, K), K = D + the number of circle priors, in the order of the sites, and
        ``log_density`` (M,): ln L + ln prior(z), the density NUTS samples (its ``-potential``).
    """
    theta = np.asarray(theta, dtype=np.float64)
    v = site_unit(priors, theta)
    columns, log_density = [], np.asarray(log_likelihood, dtype=np.float64).copy()
    for j, p in enumerate(priors):
        if p.kind == "circle":
            r = rng.rayleigh(1.0, size=len(theta))
            pa = np.radians(theta[:, j])
            columns += [r * np.sin(pa), r * np.cos(pa)]
            log_density += -math.log(2 * math.pi) - 0.5 * r**2
        else:
            vj = v[:, j]
            columns.append(np.log(vj) - np.log1p(-vj))
            log_density += np.log(vj) + np.log1p(-vj)
    return np.stack(columns, axis=-1), log_density


@contextmanager
def _threads(n: int | None):
    """Hold torch and the BLAS/OpenMP pools (threadpoolctl) at ``n`` threads (None: leave them)."""
    if n is None:
        yield
        return
    from threadpoolctl import threadpool_limits

    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        torch = None
    before = torch.get_num_threads() if torch is not None else None
    try:
        if torch is not None:
            torch.set_num_threads(n)
        with threadpool_limits(limits=n):
            yield
    finally:
        if torch is not None:
            torch.set_num_threads(before)


class _Likelihood:
    """The user's batched ln L, checked: shape (N,), float, NaN/-inf -> INVALID (counted)."""

    def __init__(self, loglike: Callable[[np.ndarray], np.ndarray], n_dim: int):
        self.loglike, self.n_dim = loglike, n_dim
        self.non_finite = 0

    def __call__(self, theta: np.ndarray) -> np.ndarray:
        theta = np.asarray(theta, dtype=np.float64)
        single = theta.ndim == 1
        batch = theta[None] if single else theta
        out = np.array(self.loglike(np.ascontiguousarray(batch[:, : self.n_dim])), dtype=np.float64)
        if out.shape != (len(batch),):
            raise ValueError(f"loglike returned shape {out.shape} for {len(batch)} points")
        if np.any(out == np.inf):
            raise ValueError("loglike returned +inf")
        bad = ~np.isfinite(out)
        if bad.any():
            self.non_finite += int(bad.sum())
            out[bad] = INVALID
        return out[0] if single else out


def _equal_weight(
    points: np.ndarray, log_w: np.ndarray, log_l: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Equal-weight draws without duplicates: each point kept with probability ``w / max w``."""
    keep = rng.random(len(log_w)) < np.exp(log_w - np.max(log_w))
    return points[keep], log_l[keep]


def _kish(log_w: np.ndarray) -> float:
    w = np.exp(log_w - np.max(log_w))
    return float(w.sum() ** 2 / (w**2).sum())


def run_nested(
    loglike: Callable[[np.ndarray], np.ndarray],
    priors: Sequence[Prior],
    sampler: str = "ultranest",
    live_points: int | None = None,
    seed: int = 0,
    max_calls: int | None = None,
    min_ess: int = 2000,
    dlogz: float = 0.5,
    f_live: float = 0.01,
    batch_size: int | None = None,
    threads: int | None = 1,
    options: Mapping[str, Any] | None = None,
) -> NestedResult:
    """Nested sampling of ``loglike`` over ``priors``.

    Args:
        loglike: ``theta`` (N, D) physical values in the priors' order (degrees for angles, the
            position angle in [0, 360)) -> ln L (N,); ``-1e100`` for an invalid vector.
        priors: the family's :class:`~coemu.fit.family.Prior` objects (``Family.priors``).
        sampler: ``ultranest`` or ``nautilus``.
        live_points: live points (default :data:`LIVE_POINTS` of the sampler).
        seed: the run's random seed (ultranest: numpy's global generator, put back afterwards).
        max_calls: stop after about this many likelihood evaluations (``converged`` is then false).
        min_ess: the posterior's effective sample size to reach (ultranest ``min_ess``,
            nautilus ``n_eff``); :func:`coemu.fit.evidence.ln_evidence_from_nested` needs
            :data:`HARMONIC_MIN_ESS` (more than the default).
        dlogz: ultranest: stop when the live points could add less than this to ln Z.
        f_live: nautilus: stop exploring when the live set holds less than this fraction of Z.
        batch_size: points per likelihood call (nautilus ``n_batch``, default 100; ultranest
            ``ndraw_max``, default 2048: the most it asks for at once).
        threads: torch and BLAS threads during the run (None: leave them as they are).
        options: more keyword arguments of the sampler's constructor (``ReactiveNestedSampler``
            or ``nautilus.Sampler``, e.g. ``n_networks``).

    Returns:
        A :class:`NestedResult`; ``failed`` holds the reason when the sampler raised (logged too).
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler '{sampler}' (one of {', '.join(SAMPLERS)})")
    priors = tuple(priors)
    if not priors:
        raise ValueError("no free parameters")
    names = tuple(p.parameter for p in priors)
    live = int(live_points or LIVE_POINTS[sampler])
    like = _Likelihood(loglike, len(priors))
    result = NestedResult(sampler, names)
    t0 = time.perf_counter()
    try:
        with _threads(threads):
            run = _run_ultranest if sampler == "ultranest" else _run_nautilus
            settings = (live, seed, max_calls, min_ess, dlogz, f_live, batch_size, dict(options or {}))
            run(result, like, priors, *settings)
    except Exception as e:  # the sampler's own failure: reported, never hidden
        result.failed = f"{type(e).__name__}: {e}"
        result.converged = False
        log.error("%s failed: %s", sampler, result.failed)
    result.seconds = time.perf_counter() - t0
    result.diagnostics["non_finite"] = like.non_finite
    if like.non_finite:
        log.warning("%s: %d ln L values were NaN or -inf (taken as %g)", sampler, like.non_finite, INVALID)
    if not result.failed:
        log.info(
            "%s: ln Z = %.3f +- %.3f, %d calls, %.1f s, %d equal-weight draws, converged %s",
            sampler,
            result.log_z,
            result.log_z_error,
            result.n_calls,
            result.seconds,
            len(result.samples),
            result.converged,
        )
    return result


def _fill(result: NestedResult, points, log_w, log_l, rng: np.random.Generator) -> None:
    points, log_l = np.asarray(points, dtype=np.float64), np.asarray(log_l, dtype=np.float64)
    log_w = np.asarray(log_w, dtype=np.float64)
    log_w = log_w - np.logaddexp.reduce(log_w)
    result.weighted_samples, result.log_weights, result.weighted_log_likelihood = points, log_w, log_l
    result.samples, result.log_likelihood = _equal_weight(points, log_w, log_l, rng)
    result.diagnostics["ess"] = _kish(log_w)


def _run_ultranest(result, like, priors, live, seed, max_calls, min_ess, dlogz, f_live, batch_size, options):
    import ultranest

    transform = unit_cube_transform(priors)
    # ultranest draws from numpy's global generator: seeded here, put back afterwards
    state = np.random.get_state()  # noqa: NPY002
    np.random.seed(seed)  # noqa: NPY002
    try:
        sampler = ultranest.ReactiveNestedSampler(
            list(result.parameters),
            like,
            transform,
            wrapped_params=[p.kind == "circle" for p in priors],
            vectorized=True,
            ndraw_min=min(128, batch_size or 128),
            ndraw_max=batch_size or 2048,
            **{"log_dir": None, "resume": "overwrite", **options},
        )
        out = sampler.run(
            min_num_live_points=live,
            dlogz=dlogz,
            min_ess=min_ess,
            max_ncalls=max_calls,
            show_status=False,
            viz_callback=False,
        )
    finally:
        np.random.set_state(state)  # noqa: NPY002
    ws = out["weighted_samples"]
    weights = np.asarray(ws["weights"], dtype=np.float64)
    with np.errstate(divide="ignore"):
        log_w = np.log(weights)
    _fill(result, ws["points"], log_w, ws["logl"], np.random.default_rng(seed))
    result.log_z, result.log_z_error = float(out["logz"]), float(out["logzerr"])
    result.log_z_error_method = "ultranest: bootstrapped over the live points (logzerr)"
    result.n_calls = int(out["ncall"])
    hit_limit = max_calls is not None and result.n_calls >= max_calls
    insertion = out.get("insertion_order_MWW_test", {})
    result.converged = not hit_limit
    result.diagnostics.update(
        {
            "stopped_by": "max_calls" if hit_limit else f"dlogz < {dlogz} and ESS >= {min_ess}",
            "ultranest_ess": float(out.get("ess", float("nan"))),
            "information_nats": float(out.get("H", float("nan"))),
            "insertion_order_test": {k: insertion[k] for k in insertion},
            "live_points": live,
        }
    )


def _run_nautilus(result, like, priors, live, seed, max_calls, min_ess, dlogz, f_live, batch_size, options):
    import nautilus

    n_dim = len(priors)
    transform = unit_cube_transform(priors)
    pad = n_dim < 2  # nautilus needs >= 2 dimensions: a dummy uniform one, dropped again
    prior = (lambda u: np.concatenate([transform(u[:, :1]), u[:, 1:]], axis=1)) if pad else transform
    sampler = nautilus.Sampler(
        prior,
        like,
        n_dim=max(n_dim, 2),
        n_live=live,
        periodic=[j for j, p in enumerate(priors) if p.kind == "circle"] or None,
        vectorized=True,
        pass_dict=False,
        **{"n_batch": batch_size, "seed": seed, **options},
    )
    success = sampler.run(
        f_live=f_live,
        n_eff=min_ess,
        discard_exploration=True,
        n_like_max=np.inf if max_calls is None else max_calls,
    )
    points, log_w, log_l = sampler.posterior()
    _fill(result, np.asarray(points)[:, :n_dim], log_w, log_l, np.random.default_rng(seed))
    n_eff = float(sampler.n_eff)
    result.log_z = float(sampler.log_z)
    result.log_z_error = 1.0 / math.sqrt(n_eff) if n_eff > 0 else float("inf")
    result.log_z_error_method = "nautilus: 1 / sqrt(n_eff) (importance sampling, statistical only)"
    result.n_calls = int(sampler.n_like)
    result.converged = bool(success)
    result.diagnostics.update(
        {
            "stopped_by": f"f_live < {f_live} and n_eff >= {min_ess}" if success else "max_calls",
            "nautilus_n_eff": n_eff,
            "shells": len(sampler.bounds),
            "live_points": live,
        }
    )
