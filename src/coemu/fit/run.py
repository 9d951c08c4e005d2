"""``coemu fit``: one observation, one or more families: MAP, NUTS, evidence, Bayes factors, outputs.

For each family (in order): the forward model (:mod:`coemu.fit.forward`),
the likelihood (:mod:`coemu.fit.likelihood`), the MAP and the NUTS chains
(:mod:`coemu.fit.sample`), the log evidence (:mod:`coemu.fit.evidence`), the
time per likelihood gradient, and the outputs (:mod:`coemu.fit.outputs`).
Then the log Bayes factor of the first family against each other one, and
``summary.json`` (written last: its presence means the fit finished) with a
markdown table ``summary.md``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from coemu.fit.data import Observation, header_card, read_observation
from coemu.fit.evidence import ln_bayes_factor, ln_evidence
from coemu.fit.family import FAMILIES, UNITS, Family, site_value, truth_values
from coemu.fit.forward import ForwardModel
from coemu.fit.likelihood import GaussianLikelihood
from coemu.fit.sample import FIT_DEFAULTS, Chains, Posterior, SamplerSettings, convergence
from coemu.io.atomic import atomic_output
from coemu.io.errors import CoemuInputError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FitSettings:
    """The ``fit`` config section; the defaults are the schema's (:data:`FIT_DEFAULTS`), and so
    are the descriptions (``coemu/config.schema.yaml``)."""

    enabled: bool = FIT_DEFAULTS["enabled"]
    families: tuple[str, ...] = tuple(FIT_DEFAULTS["families"])
    free: Mapping[str, Sequence[str]] | None = FIT_DEFAULTS["free"]
    backend: str = FIT_DEFAULTS["backend"]
    supersample: int = FIT_DEFAULTS["supersample"]
    noise: float | None = FIT_DEFAULTS["noise"]
    noise_model: str = FIT_DEFAULTS["noise_model"]
    line_free: int = FIT_DEFAULTS["line_free"]
    chains: int = FIT_DEFAULTS["chains"]
    warmup: int = FIT_DEFAULTS["warmup"]
    samples: int = FIT_DEFAULTS["samples"]
    starts: int = FIT_DEFAULTS["starts"]
    map_iterations: int = FIT_DEFAULTS["map_iterations"]
    max_tree_depth: int = FIT_DEFAULTS["max_tree_depth"]
    evidence_epochs: int = FIT_DEFAULTS["evidence_epochs"]
    random_seed: int = FIT_DEFAULTS["random_seed"]

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> FitSettings:
        """From a completed config (``coemu.settings.complete``): its ``fit`` section."""
        return cls(**{**config["fit"], "families": tuple(config["fit"]["families"])})

    @property
    def sampler(self) -> SamplerSettings:
        """The sampler's settings (the same names; ``seed`` is ``random_seed``)."""
        return SamplerSettings.from_fit_section(vars(self))


def gradient_seconds(posterior: Posterior, z: np.ndarray, repeats: int = 3) -> float:
    """Wall time of one log-likelihood value and gradient at ``z`` (the mean of ``repeats``)."""
    flat = torch.tensor(z, dtype=posterior.dtype, requires_grad=True)
    posterior.log_likelihood_at(posterior._split(flat)).backward()  # warm-up
    t0 = time.perf_counter()
    for _ in range(repeats):
        flat.grad = None
        posterior.log_likelihood_at(posterior._split(flat)).backward()
    return (time.perf_counter() - t0) / repeats


def _stats(values: np.ndarray) -> dict:
    """Mean, standard deviation and the 5, 16, 50, 84 and 95 percentiles of ``values``."""
    q = np.percentile(values.reshape(-1), [5, 16, 50, 84, 95])
    return {
        "mean": float(values.mean()),
        "std": float(values.std()),
        **{k: float(x) for k, x in zip(("q05", "q16", "q50", "q84", "q95"), q, strict=True)},
    }


def forward_model(
    obs: Observation,
    family: Family,
    line,
    settings: FitSettings,
    images: Mapping,
    backend=None,
    emulator=None,
) -> ForwardModel:
    """The forward model of ``family`` for ``obs`` with the fit's and the images' settings
    (``backend``: the fit's unless given)."""
    return ForwardModel(
        obs,
        family,
        line,
        backend or settings.backend,
        emulator,
        settings.supersample,
        images["v_turbulence"],
        images["background"],
    )


def fit_family(
    obs: Observation,
    family: Family,
    line,
    settings: FitSettings,
    out_dir: Path,
    images: Mapping,
    emulator=None,
    truths: Mapping[str, float] | None = None,
) -> dict:
    """Fit one family to ``obs``; write its outputs; return its part of the summary.

    Args:
        images: the config's ``images`` section (turbulence, background).
        emulator: a loaded emulator (with ``fit.backend`` emulator).
        truths: the true parameter values (a mock's or a synthetic model's), if known.
    """
    forward = forward_model(obs, family, line, settings, images, emulator=emulator)
    likelihood = GaussianLikelihood.of(obs, settings.noise_model)
    posterior = Posterior(family, forward, likelihood)
    t0 = time.perf_counter()
    found = posterior.find_map(settings.sampler)
    chains = posterior.sample(found["z"], settings.sampler)
    diagnostics = convergence(chains)
    if not diagnostics["converged"]:
        log.warning(
            "%s: the chains did not converge: max R-hat %.4f (limit 1.01), %d divergences",
            family.name,
            diagnostics["max_r_hat"],
            diagnostics["divergences"],
        )
    evidence = ln_evidence(chains.z, chains.log_density, settings.evidence_epochs, settings.random_seed)
    evidence["laplace_ln_evidence"] = chains.diagnostics["laplace_ln_evidence"]
    wall = time.perf_counter() - t0
    with torch.no_grad():
        best = posterior.parameters(posterior.unflatten(found["z"]))
        model = forward(best)
    _write_family_outputs(obs, family, chains, model, out_dir / family.name, truths)
    part = {
        "family": family.to_dict(),
        "noise_model": likelihood.noise_model,
        "map": {p: float(best[p]) for p in family.free},
        "map_log_posterior": found["log_posterior"],
        "map_optima": found["optima"],
        "chi2_per_pixel_at_map": float(likelihood.chi2(model)) / obs.data.size,
        "posterior": {p: _stats(chains.values[p]) for p in family.free},
        "convergence": diagnostics,
        "divergences_per_chain": chains.divergences,
        "evidence": evidence,
        "timing": {
            "gradient_seconds": gradient_seconds(posterior, found["z"]),
            "map_seconds": found["seconds"],
            "nuts_seconds": chains.seconds,
            "fit_seconds": wall,
        },
        "units": {p: UNITS.get(p, "1") for p in family.free},
    }
    if truths is not None:
        part |= _at_truth(posterior, likelihood, obs, family, truths)
    if settings.backend == "emulator":
        part["emulator_error"] = emulator_error(obs, family, line, images, settings, best, model)
    return part


def _write_family_outputs(
    obs: Observation, family: Family, chains: Chains, model, stem: Path, truths
) -> None:
    """``STEM.posterior.nc``, ``STEM.corner.png`` and ``STEM.channels.png`` (the data, the
    model at the MAP, ``model`` (F, Y, X), and the residual)."""
    from coemu.fit import outputs

    outputs.write_posterior(
        chains, family, f"{stem}.posterior.nc", {"family": family.name, "observation": obs.path}
    )
    outputs.corner_plot(chains, family, f"{stem}.corner.png", truths)
    outputs.channel_maps(obs.data, model.numpy(), obs.noise, obs.offsets, obs.unit, f"{stem}.channels.png")


def _at_truth(posterior: Posterior, likelihood, obs: Observation, family: Family, truths) -> dict:
    """The summary's ``truth`` (the free parameters' true values) and, when every free
    parameter has one, the log posterior and chi^2 per pixel there."""
    part = {"truth": {p: truths[p] for p in family.free if p in truths}}
    if all(p in truths for p in family.free):
        with torch.no_grad():
            z = posterior.unconstrained(
                {prior.site: site_value(prior, truths[prior.parameter]) for prior in family.priors}
            )
            part["log_posterior_at_truth"] = float(posterior.log_posterior(z))
            model = posterior.forward(posterior.parameters(z))
            part["chi2_per_pixel_at_truth"] = float(likelihood.chi2(model)) / obs.data.size
    return part


def emulator_error(obs, family, line, images, settings, best, model) -> dict:
    """The emulator's error budget at the MAP: (emulator - solver) over the noise rms."""
    solver = forward_model(obs, family, line, settings, images, backend="solver")
    with torch.no_grad():
        diff = (model - solver(best)).numpy() / obs.noise
    return {"rms_over_noise": float(np.sqrt(np.mean(diff**2))), "max_over_noise": float(np.abs(diff).max())}


def fit_observation(
    path: str | Path,
    out_dir: str | Path,
    config: Mapping[str, Any],
    truth: str | Mapping[str, float] | None = None,
    fixed: Mapping[str, float] | None = None,
    emulator: str | Path | None = None,
    distance: float | None = None,
    v_sys: float | None = None,
    rotation: int = 0,
) -> dict:
    """Fit every family of ``config['fit']`` to the observation ``path``; write to ``out_dir``.

    Args:
        config: a completed config (``images`` for the line and solver, ``fit``, ``seed``).
        truth: a synthetic model id, or parameter values (a mock's): the fixed parameters take
            its values, and the summary and plots show them.
        fixed: parameter -> value for the parameters not fitted (over the truth's and defaults).
        emulator: a model.pt (with ``fit.backend`` emulator).
        distance: pc, v_sys: km/s, over the header's; rotation: of an image netCDF.

    Returns:
        The summary (also ``OUT_DIR/summary.json``).

    Raises:
        CoemuInputError: a header keyword, file or setting that does not fit, before any fit runs.
    """
    from coemu.rt.lamda import load_line

    require_fit_extra()
    path, truth = resolve_observation(path, truth)
    settings = FitSettings.from_config(config)
    images = config["images"]
    line = load_line(images["molecule"], images["transition"], images["datafile"])
    obs = read_observation(
        path, line.frequency, settings.noise, distance, v_sys, settings.line_free, rotation
    )
    truths = truth_values(config["seed"], truth) if isinstance(truth, str) else truth
    families = make_families(settings, {**(truths or {}), **dict(fixed or {})})
    model = load_emulator(emulator) if settings.backend == "emulator" else None
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = {
        "observation": str(path),
        "unit": obs.unit,
        "noise": obs.noise,
        "noise_source": obs.noise_source,
        "grid": obs.grid,
        "channels": len(obs.offsets),
        "backend": settings.backend,
        "sampler": {f.name: getattr(settings.sampler, f.name) for f in fields(SamplerSettings)},
        "truth_model": truth if isinstance(truth, str) else None,
        "families": {},
    }
    for family in families:
        log.info("fitting the %s family (free: %s)", family.name, ", ".join(family.free))
        summary["families"][family.name] = fit_family(
            obs, family, line, settings, out_dir, images, emulator=model, truths=truths
        )
    first = families[0].name
    summary["ln_bayes_factors"] = {
        f"{first}/{f.name}": ln_bayes_factor(
            summary["families"][first]["evidence"], summary["families"][f.name]["evidence"]
        )
        for f in families[1:]
    }
    write_summary(summary, out_dir)
    return summary


def make_families(settings: FitSettings, values: Mapping[str, float]) -> list[Family]:
    """The families of ``settings`` (``fit.families``, ``fit.free``), the parameters not fitted
    at ``values`` or the defaults; every one checked before the first fit starts.

    Raises:
        CoemuInputError: an unknown family, or a free or fixed parameter a family does not use.
    """
    for name in settings.families:
        if name not in FAMILIES:
            raise CoemuInputError(
                None, "fit.families", f"'{name}' is not one of {', '.join(FAMILIES)}", "config key"
            )
    return [Family.make(name, (settings.free or {}).get(name), values) for name in settings.families]


def load_emulator(path: str | Path | None):
    """The trained emulator ``path`` on the CPU, frozen (the fit differentiates its inputs only).

    Raises:
        CoemuInputError: no path given.
    """
    if path is None:
        raise CoemuInputError(
            None, "fit.backend", "is emulator, but no --emulator model.pt given", "config key"
        )
    from coemu.nn import Emulator

    model = Emulator.load(path, "cpu")
    model.source = str(path)
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model


def write_summary(summary: Mapping[str, Any], out_dir: Path) -> None:
    """``summary.tsv``, ``summary.md`` and, last (its presence means the fit finished),
    ``summary.json`` in ``out_dir``."""
    with atomic_output(out_dir / "summary.tsv") as tmp:
        tmp.write_text(summary_table(summary))
    with atomic_output(out_dir / "summary.md") as tmp:
        tmp.write_text(summary_markdown(summary))
    with atomic_output(out_dir / "summary.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2))


def require_fit_extra() -> None:
    """Raise a clear error where the fit extra (pyro-ppl, arviz, corner, harmonic) is missing."""
    import importlib.util

    missing = [m for m in ("pyro", "arviz", "corner", "harmonic") if importlib.util.find_spec(m) is None]
    if missing:
        raise CoemuInputError(
            None,
            "fit",
            f"coemu fit needs the fit extra ({', '.join(missing)} missing): bash scripts/install.sh dev,fit",
            "config key",
        )


def resolve_observation(path: str | Path, truth):
    """The FITS file to fit and the truth: ``manifest.json`` of the observations export means its
    first test model's rotation 0; ``truth`` ``OBJECT`` means the header's model id (rotation 0
    only: the viewing angles of rotation 0 are all 0)."""
    path = Path(path)
    if path.name == "manifest.json":
        from coemu.io.validation import read_json

        files = read_json(path).get("files") or {}
        if not files:
            raise CoemuInputError(path, "files", "the observations manifest lists no FITS file")
        path = Path(next(iter(files.values()))[0])
    if truth == "OBJECT":
        from astropy.io import fits

        header = fits.getheader(path)
        if int(header.get("ROTATION", -1)) != 0:
            raise CoemuInputError(path, "ROTATION", "--truth OBJECT needs rotation 0 (known viewing angles)")
        truth = str(header_card(header, "OBJECT", path, "the synthetic model id"))
    return path, truth


def summary_table(summary: Mapping[str, Any]) -> str:
    """Tab-separated: one row per family (ln Z, convergence), one per Bayes factor (the report's)."""
    rows = ["quantity\tvalue\terror\tmax R-hat\tdivergences\tconverged"]
    for name, part in summary["families"].items():
        conv, ev = part["convergence"], part["evidence"]
        rows.append(
            f"ln Z {name}\t{ev['ln_evidence']:.3f}\t{ev['error']:.3f}\t{conv['max_r_hat']:.4f}"
            f"\t{conv['divergences']}\t{conv['converged']}"
        )
    for pair, bf in summary["ln_bayes_factors"].items():
        rows.append(f"ln B {pair}\t{bf['ln_bayes_factor']:.3f}\t{bf['error']:.3f}\t\t\t")
    return "\n".join(rows) + "\n"


def summary_markdown(summary: Mapping[str, Any]) -> str:
    """The fit's summary as markdown tables (the report's caption reads it)."""
    lines = [
        f"Fit of `{Path(summary['observation']).name}` ({summary['grid']}^3 cells, {summary['channels']}"
        f" channels, noise {summary['noise']:.4g} {summary['unit']} from {summary['noise_source']};"
        f" forward model: {summary['backend']}).",
        "",
    ]
    for name, part in summary["families"].items():
        conv, ev, t = part["convergence"], part["evidence"], part["timing"]
        lines += [
            f"**{name}**: ln Z = {ev['ln_evidence']:.2f} +- {ev['error']:.2f} (Laplace"
            f" {ev['laplace_ln_evidence']:.2f}); max R-hat {conv['max_r_hat']:.3f},"
            f" {conv['divergences']} divergences ({'converged' if conv['converged'] else 'NOT converged'});"
            f" chi2/pixel at the MAP {part['chi2_per_pixel_at_map']:.3f};"
            f" {t['gradient_seconds'] * 1e3:.0f} ms"
            f" per gradient, fit {t['fit_seconds']:.0f} s.",
            "",
            "| parameter | truth | MAP | median | 68% interval |",
            "|---|---|---|---|---|",
        ]
        for p, s in part["posterior"].items():
            truth = part.get("truth", {}).get(p)
            lines.append(
                f"| {p} [{part['units'][p]}] | {'' if truth is None else f'{truth:.4g}'}"
                f" | {part['map'][p]:.4g}"
                f" | {s['q50']:.4g} | {s['q16']:.4g} - {s['q84']:.4g} |"
            )
        lines.append("")
    for pair, bf in summary["ln_bayes_factors"].items():
        lines.append(f"ln Bayes factor {pair} = {bf['ln_bayes_factor']:.2f} +- {bf['error']:.2f}")
    return "\n".join(lines) + "\n"
