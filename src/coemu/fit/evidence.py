"""The evidence of a fit by the learned harmonic mean estimator (``harmonic``), and Bayes factors.

The estimator (McEwen et al. 2021; Polanska et al. 2024) takes posterior
samples and their unnormalised log posterior density, trains a normalising
flow (harmonic's RealNVP, ``temperature`` 0.8 so that it is narrower than the
posterior) on half of the chains and averages ``flow / (L x prior)`` over the
other half: ``1 / Z``. The samples are the sampler's unconstrained
coordinates ``z`` with the Jacobian in the density, so the target has no
edges. Each chain is cut in ``blocks`` pieces (of at least :data:`MIN_BLOCK`
draws) so that the inference half has enough pieces for harmonic's error
estimate; the error reported is that of
``ln Z`` from harmonic's variance of ``1 / Z`` (statistical only: it does not
include a flow that fits the posterior badly, which harmonic's basic
diagnostic checks and the summary reports).

:func:`ln_evidence_from_nested` applies the same estimator to a nested
sampler's equal-weight draws (:mod:`coemu.fit.nested`), mapped to the NUTS
coordinates, shuffled and cut into pseudo-chains, and compares its ln Z with
the nested sampler's own.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from coemu.fit.family import Prior
    from coemu.fit.nested import NestedResult

log = logging.getLogger(__name__)

#: Fewest draws per block when chains are cut into blocks.
MIN_BLOCK = 50
#: Pseudo-chains of nested samples for the harmonic mean: at least this many, of at least
#: :data:`NESTED_MIN_DRAWS` draws each.
NESTED_MIN_CHAINS = 20
NESTED_MIN_DRAWS = 100


def ln_evidence(
    z: np.ndarray, log_density: np.ndarray, epochs: int = 30, seed: int = 0, blocks: int = 4
) -> dict:
    """ln Z and its error from samples ``z`` (C, D, K) with ``log_density`` (C, D).

    Returns:
        ``{"ln_evidence", "error", "error_low", "error_high", "diagnostic_passed", "chains_used"}``;
        where the estimate is not finite, NaN values (logged) and ``"reason"``.

    Raises:
        ValueError: fewer than 2 chains (one to train on, one to infer from).
    """
    import harmonic as hm
    import jax

    z, log_density = np.asarray(z, dtype=np.float64), np.asarray(log_density, dtype=np.float64)
    n_chains, n_draws, ndim = z.shape
    if n_chains < 2:
        raise ValueError("the harmonic mean evidence needs at least 2 chains")
    chains = hm.Chains(ndim)
    chains.add_chains_3d(z, log_density)
    blocks = max(1, min(blocks, n_draws // MIN_BLOCK))
    if blocks > 1:
        chains.split_into_blocks(n_chains * blocks)
    train, infer = hm.utils.split_data(chains, training_proportion=0.5)
    model = hm.model.RealNVPModel(ndim, standardize=True, temperature=0.8)
    model.fit(train.samples, epochs=epochs, key=jax.random.PRNGKey(seed), verbose=False)
    ev = hm.Evidence(infer.nchains, model)
    ev.add_chains(infer)
    ln_z = -float(ev.ln_evidence_inv)
    low, high = (float(e) for e in ev.compute_ln_inv_evidence_errors())  # of ln(1/Z): (-, +)
    passed = bool(ev.check_basic_diagnostic())
    if not (np.isfinite(ln_z) and np.isfinite(low) and np.isfinite(high)):
        log.warning("the harmonic mean evidence failed (ln Z = %s): the flow does not fit the samples", ln_z)
        return {
            "ln_evidence": float("nan"),
            "error": float("nan"),
            "error_low": float("nan"),
            "error_high": float("nan"),
            "diagnostic_passed": False,
            "chains_used": int(infer.nchains),
            "reason": f"not finite (ln Z = {ln_z}): the flow does not fit the samples",
        }
    return {
        "ln_evidence": ln_z,
        "error": max(abs(low), abs(high)),
        "error_low": -high,
        "error_high": -low,
        "diagnostic_passed": passed,
        "chains_used": int(infer.nchains),
    }


def _finite(x) -> bool:
    return x is not None and math.isfinite(x)


def ln_bayes_factor(first: dict, second: dict) -> dict:
    """ln(Z_first / Z_second) with the errors of the two ln Z added in quadrature.

    ``first`` and ``second`` are evidence dicts of a fit (NUTS's harmonic one, or a nested
    sampler's with ``method`` and its ``harmonic`` cross-check): ``ln_evidence`` and ``error``
    (nats). Where either is missing (None or not finite), ``ln_bayes_factor`` and ``error`` are
    None and ``reason`` says why (never NaN). ``methods``: the two evidences' methods (harmonic
    where not given); where both carry a ``harmonic`` cross-check with values, ``harmonic`` is
    the Bayes factor of those.
    """
    out = {
        "ln_bayes_factor": None,
        "error": None,
        "methods": [first.get("method", "harmonic"), second.get("method", "harmonic")],
        "reason": None,
    }
    missing = [
        f"{which} ln Z {'missing' if not _finite(ev.get('ln_evidence')) else 'has no error'}"
        + (f" ({ev['reason']})" if ev.get("reason") else "")
        for which, ev in (("the first", first), ("the second", second))
        if not (_finite(ev.get("ln_evidence")) and _finite(ev.get("error")))
    ]
    if missing:
        out["reason"] = "; ".join(missing)
    else:
        out["ln_bayes_factor"] = float(first["ln_evidence"] - second["ln_evidence"])
        out["error"] = math.hypot(first["error"], second["error"])
    if isinstance(first.get("harmonic"), dict) and isinstance(second.get("harmonic"), dict):
        out["harmonic"] = {
            k: v for k, v in ln_bayes_factor(first["harmonic"], second["harmonic"]).items() if k != "methods"
        }
    return out


def ln_evidence_from_nested(
    result: NestedResult,
    priors: Sequence[Prior],
    epochs: int = 30,
    seed: int = 0,
    max_chains: int = 100,
) -> dict:
    """The learned harmonic mean ln Z of a nested sampler's equal-weight draws, and its
    difference from the nested sampler's ln Z.

    The draws ``result.samples`` (M, D, physical, without duplicates) are mapped to the NUTS
    coordinates with NUTS's log density (:func:`coemu.fit.nested.unconstrained`: the position
    angle's radius drawn from Rayleigh(1)), shuffled, and cut into ``C`` pseudo-chains of
    ``M // C`` draws, ``C = min(max_chains, M // 100)`` (at least 20 of at least 100); half of
    them train the flow, half infer (:func:`ln_evidence`).

    Returns:
        ``{"ln_evidence", "error", "error_low", "error_high", "diagnostic_passed", "chains_used"
        (the inference half), "draws_per_chain", "nested_ln_evidence", "nested_error",
        "delta_sigma", "reason"}``:
        ``delta_sigma`` = (ln Z_harmonic - ln Z_nested) / sqrt(error^2 + nested_error^2);
        ``reason`` None, or why no estimate could be made (then ``ln_evidence``, ``error`` and
        ``delta_sigma`` are None, never NaN).
    """
    from coemu.fit.nested import unconstrained

    out = {
        "ln_evidence": None,
        "error": None,
        "error_low": None,
        "error_high": None,
        "diagnostic_passed": False,
        "chains_used": 0,
        "draws_per_chain": 0,
        "nested_ln_evidence": float(result.log_z),
        "nested_error": float(result.log_z_error),
        "delta_sigma": None,
        "reason": None,
    }
    m = len(result.samples)
    n_chains = min(max_chains, m // NESTED_MIN_DRAWS)
    if result.failed:
        out["reason"] = f"the nested sampler failed: {result.failed}"
    elif n_chains < NESTED_MIN_CHAINS:
        out["reason"] = (
            f"{m} equal-weight draws: fewer than {NESTED_MIN_CHAINS} pseudo-chains of"
            f" {NESTED_MIN_DRAWS} (raise the nested run's min_ess)"
        )
    if out["reason"] is None:
        rng = np.random.default_rng(seed)
        z, log_density = unconstrained(priors, result.samples, result.log_likelihood, rng)
        if not (np.isfinite(z).all() and np.isfinite(log_density).all()):
            out["reason"] = "a draw maps to a non-finite coordinate or density (on a prior edge)"
    if out["reason"] is None:
        order = rng.permutation(m)
        draws = m // n_chains
        keep = order[: n_chains * draws]
        z = z[keep].reshape(n_chains, draws, -1)
        log_density = log_density[keep].reshape(n_chains, draws)
        try:
            ev = ln_evidence(z, log_density, epochs=epochs, seed=seed, blocks=1)
        except Exception as e:  # harmonic's own failure: reported
            out["reason"] = f"harmonic raised {type(e).__name__}: {e}"
        else:
            out["draws_per_chain"] = draws
            if ev.get("reason"):
                out["reason"] = ev["reason"]
                out["chains_used"] = ev["chains_used"]
            else:
                out.update(ev)
                nested = float(result.log_z_error) if np.isfinite(result.log_z_error) else float("inf")
                out["delta_sigma"] = (ev["ln_evidence"] - float(result.log_z)) / math.hypot(
                    ev["error"], nested
                )
    if out["reason"]:
        log.warning("harmonic mean evidence of the %s draws: %s", result.sampler, out["reason"])
    return out
