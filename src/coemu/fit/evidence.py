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
"""

from __future__ import annotations

import logging
import math

import numpy as np

log = logging.getLogger(__name__)

#: Fewest draws per block when chains are cut into blocks.
MIN_BLOCK = 50


def ln_evidence(
    z: np.ndarray, log_density: np.ndarray, epochs: int = 30, seed: int = 0, blocks: int = 4
) -> dict:
    """ln Z and its error from samples ``z`` (C, D, K) with ``log_density`` (C, D).

    Returns:
        ``{"ln_evidence", "error", "error_low", "error_high", "diagnostic_passed", "chains_used"}``.

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
        }
    return {
        "ln_evidence": ln_z,
        "error": max(abs(low), abs(high)),
        "error_low": -high,
        "error_high": -low,
        "diagnostic_passed": passed,
        "chains_used": int(infer.nchains),
    }


def ln_bayes_factor(first: dict, second: dict) -> dict:
    """ln(Z_first / Z_second) with the errors of the two ln Z added in quadrature."""
    value = first["ln_evidence"] - second["ln_evidence"]
    return {"ln_bayes_factor": value, "error": math.hypot(first["error"], second["error"])}
