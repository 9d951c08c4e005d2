"""The posterior of a family's parameters: MAP by L-BFGS from several starts, then NUTS (pyro-ppl).

The pyro model samples each prior's site (:class:`coemu.fit.family.Prior`)
and adds the log-likelihood as a factor. pyro's ``initialize_model`` gives
the potential energy in unconstrained coordinates ``z`` (the sites mapped to
R^d, the Jacobian included) and the transforms; NUTS runs on that potential.

MAP: the maximum of the posterior density in the sites' own coordinates (the
Jacobian taken out again), by L-BFGS in ``z`` from ``starts`` draws of the
prior, screened by a short run each, the best few refined; the best is kept
and every refined optimum is reported (the spiral makes the likelihood
multimodal: distinct optima show there). A search that misses the global
mode leaves the chains in a local one; R-hat over chains started near the
same optimum cannot see that (the bench measures how often it happens).

NUTS: ``chains`` chains run one after the other, in coordinates whitened by
the Laplace approximation at the MAP (so that the sampler sees a posterior
close to a unit normal whatever the parameters' scales and correlations),
each from its own dispersed start and seed, step size and diagonal mass
matrix adapted in the warm-up. Divergent transitions are counted per chain;
split-R-hat and the bulk ESS (arviz) are computed over the chains; a fit
whose R-hat exceeds 1.01, or with any divergence, is flagged in the summary,
never hidden.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import torch

from coemu.fit.family import Family
from coemu.settings import section

log = logging.getLogger(__name__)

#: R-hat above which chains are reported as not converged.
RHAT_LIMIT = 1.01
#: MAP starts refined after the screening.
REFINED = 4
#: Low-pass cut-offs (cycles per pixel) of the MAP search's stages: the screening, then the
#: refinement's first stage, before the likelihood itself (continuation).
LOWPASS = (0.04, 0.12)


#: The schema's defaults of the ``fit`` config section (``coemu/config.schema.yaml``).
FIT_DEFAULTS = section("fit")


@dataclass(frozen=True)
class SamplerSettings:
    """The ``fit`` section's sampler settings (defaults and descriptions: the schema's;
    ``seed`` is the section's ``random_seed``)."""

    chains: int = FIT_DEFAULTS["chains"]
    warmup: int = FIT_DEFAULTS["warmup"]
    samples: int = FIT_DEFAULTS["samples"]
    starts: int = FIT_DEFAULTS["starts"]
    map_iterations: int = FIT_DEFAULTS["map_iterations"]
    max_tree_depth: int = FIT_DEFAULTS["max_tree_depth"]
    seed: int = FIT_DEFAULTS["random_seed"]

    @classmethod
    def from_fit_section(cls, fit: Mapping[str, Any]) -> SamplerSettings:
        """From the ``fit`` config section (or :class:`coemu.fit.run.FitSettings` as a dict);
        what it leaves out takes the schema's defaults."""
        names = [f.name for f in fields(cls) if f.name != "seed"]
        given = {name: fit[name] for name in names if name in fit}
        if "random_seed" in fit:
            given["seed"] = fit["random_seed"]
        return cls(**given)


@dataclass
class Chains:
    """NUTS output: per chain and draw, unconstrained ``z`` (C, D, K) and the physical values."""

    sites: list[str]
    priors: tuple
    z: np.ndarray  # (C, D, K): the sites' unconstrained coordinates, flattened in ``sites`` order
    log_density: np.ndarray  # (C, D): ln(likelihood x prior) in z (Jacobian included): harmonic's
    log_likelihood: np.ndarray  # (C, D)
    values: dict[str, np.ndarray]  # parameter -> (C, D)
    divergences: list[int]
    seconds: float
    diagnostics: dict = field(default_factory=dict)


class Posterior:
    """The posterior of ``family`` given ``log_likelihood(forward(parameters))``.

    Args:
        forward: parameters (dict of 0-d tensors) -> the model of the data.
        log_likelihood: the model -> ln L (0-d tensor).
    """

    def __init__(self, family: Family, forward: Callable, log_likelihood: Callable, dtype=torch.float64):
        from pyro.infer.mcmc.util import initialize_model

        self.family, self.forward, self.log_likelihood, self.dtype = family, forward, log_likelihood, dtype
        self.priors = family.priors
        self.sites = [p.site for p in self.priors]
        _, self.potential_fn, self.transforms, _ = initialize_model(self.model)
        self.gradients = 0
        #: the MAP search's continuation: low-pass cut-offs (cycles per pixel) of the screening
        #: and of the refinements' first stages; none for a likelihood without the option
        self.lowpass = LOWPASS if hasattr(log_likelihood, "chi2") else (None,)

    def model(self):
        import pyro

        sites = {p.site: pyro.sample(p.site, p.distribution(self.dtype)) for p in self.priors}
        pyro.factor(
            "log_likelihood", self.log_likelihood(self.forward(self.family.parameters(sites, self.dtype)))
        )

    # --- coordinates ------------------------------------------------------------------------------
    def constrained(self, z: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: self.transforms[k].inv(v) for k, v in z.items()}

    def unconstrained(self, x: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: self.transforms[k](v) for k, v in x.items()}

    def flatten(self, z: dict[str, torch.Tensor]) -> np.ndarray:
        return np.concatenate([z[s].detach().reshape(-1).numpy() for s in self.sites])

    def unflatten(self, flat: np.ndarray) -> dict[str, torch.Tensor]:
        return self._split(torch.as_tensor(flat, dtype=self.dtype))

    def parameters(self, z: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return self.family.parameters(self.constrained(z), self.dtype)

    # --- densities --------------------------------------------------------------------------------
    def log_density(self, z: dict[str, torch.Tensor]) -> torch.Tensor:
        """ln(L x prior) in the unconstrained coordinates (the density NUTS samples)."""
        return -self.potential_fn(z)

    def log_posterior(self, z: dict[str, torch.Tensor], lowpass: float | None = None) -> torch.Tensor:
        """ln(L x prior) in the sites' own coordinates (for the MAP): without the Jacobian.

        With ``lowpass`` (a likelihood that takes it): the smoothed objective of the MAP search's
        first stages instead of ln L (the priors are uniform in the sites, so they add nothing).
        """
        if lowpass is not None:
            return self.log_likelihood(self.forward(self.parameters(z)), lowpass=lowpass)
        x = self.constrained(z)
        jacobian = sum(self.transforms[k].inv.log_abs_det_jacobian(z[k], x[k]).sum() for k in z)
        return self.log_density(z) - jacobian

    def log_likelihood_at(self, z: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.log_likelihood(self.forward(self.parameters(z)))

    def prior_draw(self, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """A draw of the prior in unconstrained coordinates."""
        x = {}
        for p in self.priors:
            if p.kind == "circle":
                x[p.site] = torch.randn(2, generator=generator, dtype=self.dtype)
            else:
                d = p.distribution(self.dtype)
                u = torch.rand((), generator=generator, dtype=self.dtype)
                x[p.site] = d.low + u * (d.high - d.low)
        return self.unconstrained(x)

    # --- MAP --------------------------------------------------------------------------------------
    def _optimise(self, flat: torch.Tensor, iterations: int, lowpass: float | None = None) -> float:
        """L-BFGS on ``flat`` (in place) for ``iterations``; returns the objective reached.

        A step into a non-finite objective (z far out, where a transform saturates) ends the run
        and ``flat`` goes back to the best finite point seen.
        """
        opt = torch.optim.LBFGS([flat], max_iter=iterations, line_search_fn="strong_wolfe")
        best = [-np.inf, flat.detach().clone()]

        def closure():
            opt.zero_grad()
            if not torch.isfinite(flat).all():
                raise FloatingPointError
            try:
                loss = -self.log_posterior(self._split(flat), lowpass)
            except ValueError:  # pyro's support check: a NaN site
                raise FloatingPointError from None
            if not torch.isfinite(loss):
                raise FloatingPointError
            loss.backward()
            if not torch.isfinite(flat.grad).all():
                raise FloatingPointError
            self.gradients += 1
            if -float(loss.detach()) > best[0]:
                best[0], best[1] = -float(loss.detach()), flat.detach().clone()
            return loss

        try:
            opt.step(closure)
        except FloatingPointError:
            pass
        with torch.no_grad():
            flat.copy_(best[1])
        return best[0]

    def find_map(self, settings: SamplerSettings) -> dict:
        """The MAP: ``settings.starts`` prior draws screened by a quarter of ``map_iterations``
        of L-BFGS each, the best :data:`REFINED` of them refined by ``map_iterations`` more, then
        the best one's mirror images in the viewing angles (:meth:`_mirrors`) refined too.

        Returns:
            ``{"z": flat z of the best, "log_posterior", "optima": every refined optimum's
            ln posterior (best first), "screened": every screened value, "seconds"}``.
        """
        gen = torch.Generator().manual_seed(settings.seed)
        t0, screened = time.perf_counter(), []
        for _ in range(settings.starts):
            flat = torch.tensor(self.flatten(self.prior_draw(gen)), dtype=self.dtype, requires_grad=True)
            value = self._optimise(flat, max(5, settings.map_iterations // 4), self.lowpass[0])
            screened.append((value, flat))
        screened.sort(key=lambda t: -t[0])
        optima = []
        for _, flat in screened[:REFINED]:
            for cut in self.lowpass[1:]:
                self._optimise(flat, settings.map_iterations // 2, cut)
            optima.append((self._optimise(flat, settings.map_iterations), flat.detach().numpy().copy()))
        optima.sort(key=lambda t: -t[0])
        for flat in self._mirrors(torch.tensor(optima[0][1], dtype=self.dtype)):
            flat.requires_grad_(True)
            for cut in self.lowpass[1:]:
                self._optimise(flat, settings.map_iterations // 2, cut)
            optima.append((self._optimise(flat, settings.map_iterations), flat.detach().numpy().copy()))
        optima.sort(key=lambda t: -t[0])
        log.info(
            "MAP: ln posterior %s (screened: best %.6g of %d starts)",
            [round(v, 2) for v, _ in optima],
            screened[0][0],
            len(screened),
        )
        return {
            "z": optima[0][1],
            "log_posterior": optima[0][0],
            "optima": [v for v, _ in optima],
            "screened": [v for v, _ in screened],
            "seconds": time.perf_counter() - t0,
        }

    def _mirrors(self, flat: torch.Tensor) -> list[torch.Tensor]:
        """The viewing geometry's near-symmetric partners of ``flat``: the position angle turned
        by 180 degrees (its 2-vector negated), the inclination mirrored (cos i negated: z -> -z
        for its symmetric interval), and both; none without viewing angles."""
        slices, i = {}, 0
        for prior in self.priors:
            n = 2 if prior.kind == "circle" else 1
            slices[prior.parameter] = slice(i, i + n)
            i += n
        which = [p for p in ("position_angle", "inclination") if p in slices]
        out = []
        for k in range(1, 2 ** len(which)):
            mirrored = flat.detach().clone()
            for bit, name in enumerate(which):
                if k >> bit & 1:
                    mirrored[slices[name]] = -mirrored[slices[name]]
            out.append(mirrored)
        return out

    def _split(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        out, i = {}, 0
        for s in self.sites:
            n = 2 if s.endswith("_xy") else 1
            out[s] = flat[i : i + n] if n == 2 else flat[i]
            i += n
        return out

    # --- NUTS -------------------------------------------------------------------------------------
    def laplace(self, start: np.ndarray) -> np.ndarray:
        """(K, K) matrix ``L`` with ``L L^T`` the inverse Hessian of the potential at ``start``.

        Also sets ``laplace_ln_evidence``, the Laplace approximation of ln Z there (a Gaussian of
        that Hessian around ``start``): a cross-check of the harmonic mean estimate, exact for a
        Gaussian posterior, poor for a skewed or multimodal one.

        Eigenvalues are floored at 1e-8 of the largest (in absolute value), so a saddle or a
        flat direction still gives a usable, if poor, preconditioner.
        """
        flat = torch.tensor(start, dtype=self.dtype)
        hessian = torch.autograd.functional.hessian(lambda f: -self.log_density(self._split(f)), flat)
        values, vectors = torch.linalg.eigh(0.5 * (hessian + hessian.T))
        values = torch.clamp(values.abs(), min=1e-8 * float(values.abs().max()))
        self.laplace_ln_evidence = (
            float(self.log_density(self._split(flat)))
            + 0.5 * len(start) * math.log(2 * math.pi)
            - 0.5 * float(torch.log(values).sum())
        )
        return (vectors * values.rsqrt()).numpy()

    def sample(self, start: np.ndarray, settings: SamplerSettings) -> Chains:
        """``settings.chains`` NUTS chains from ``start`` (flat z, e.g. the MAP).

        NUTS runs in coordinates ``u`` whitened by the Laplace approximation at ``start``
        (``z = start + L u``, :meth:`laplace`), where the posterior is close to a unit normal,
        each chain from ``u`` ~ N(0, 0.5^2 I) with its own seed; the diagonal mass matrix and
        step size are adapted in the warm-up. Samples are returned in ``z``.
        """
        import pyro
        from pyro.infer import MCMC, NUTS

        rng = np.random.default_rng(settings.seed)
        t0 = time.perf_counter()
        centre = torch.tensor(start, dtype=self.dtype)
        scale = torch.tensor(self.laplace(start), dtype=self.dtype)

        def potential(u):
            return self.potential_fn(self._split(centre + scale @ u["u"]))

        z_chains, divergences, steps = [], [], []
        for c in range(settings.chains):
            pyro.set_rng_seed(settings.seed * 1000 + c)
            init = {"u": torch.tensor(0.5 * rng.standard_normal(start.shape), dtype=self.dtype)}
            kernel = NUTS(potential_fn=potential, max_tree_depth=settings.max_tree_depth)
            mcmc = MCMC(
                kernel,
                num_samples=settings.samples,
                warmup_steps=settings.warmup,
                initial_params=init,
                disable_progbar=True,
            )
            mcmc.run()
            u = mcmc.get_samples()["u"].detach()
            z_chains.append((centre + u @ scale.T).numpy())
            diag = mcmc.diagnostics()
            divergences.append(len(diag["divergences"]["chain 0"]))
            steps.append(float(kernel.step_size))
            log.info("chain %d: %d divergences, step size %.3g", c, divergences[-1], steps[-1])
        z = np.stack(z_chains)
        log_density, log_likelihood = np.empty(z.shape[:2]), np.empty(z.shape[:2])
        values = {p: np.empty(z.shape[:2]) for p in self.family.free}
        with torch.no_grad():
            for c in range(z.shape[0]):
                for d in range(z.shape[1]):
                    zd = self.unflatten(z[c, d])
                    params = self.parameters(zd)
                    ll = self.log_likelihood(self.forward(params))
                    log_likelihood[c, d] = float(ll)
                    log_density[c, d] = float(self.log_density(zd))
                    for p in self.family.free:
                        values[p][c, d] = float(params[p])
        return Chains(
            self.sites,
            self.priors,
            z,
            log_density,
            log_likelihood,
            values,
            divergences,
            time.perf_counter() - t0,
            {"step_size": steps, "laplace_ln_evidence": self.laplace_ln_evidence},
        )


def convergence(chains: Chains) -> dict:
    """Split-R-hat and bulk ESS (arviz) of every parameter and z coordinate over the chains."""
    import arviz as az

    out = {}
    for name, v in {
        **chains.values,
        **{f"z{i}": chains.z[..., i] for i in range(chains.z.shape[-1])},
    }.items():
        data = az.convert_to_dataset(v[None] if v.ndim == 1 else v)
        out[name] = {
            "r_hat": float(az.rhat(data)["x"]) if chains.z.shape[0] > 1 else float("nan"),
            "ess_bulk": float(az.ess(data)["x"]),
        }
    periodic = {p.parameter for p in chains.priors if p.kind == "circle"}  # R-hat of their z instead
    worst = max(
        (d["r_hat"] for k, d in out.items() if k not in periodic and np.isfinite(d["r_hat"])),
        default=float("nan"),
    )
    return {
        "parameters": out,
        "max_r_hat": worst,
        "divergences": int(sum(chains.divergences)),
        "converged": bool(np.isfinite(worst) and worst <= RHAT_LIMIT and sum(chains.divergences) == 0),
    }
