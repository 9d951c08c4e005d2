"""``coemu fit``: one observation, one or more families: posterior, evidence, Bayes factors, outputs.

For each family (in order): the forward model (:mod:`coemu.fit.forward`),
the likelihood (:mod:`coemu.fit.likelihood`), then with ``fit.sampler``

* ``nested`` (the default): nested sampling over the whole prior
  (:func:`coemu.fit.nested.run_nested`, nautilus or ultranest, the batched
  likelihood :class:`coemu.fit.likelihood.BatchedLogLikelihood`): the
  posterior's equal-weight draws, the sampler's ln Z with its error, and the
  learned harmonic mean of the same draws beside it
  (:func:`coemu.fit.evidence.ln_evidence_from_nested`); the "MAP" is the
  sampled point of highest ln L; for the binary family with known viewing
  angles, the posterior mass near the true view and its partners
  (:func:`coemu.fit.symmetry.pair_mass`);
* ``nuts``: the MAP and the NUTS chains (:mod:`coemu.fit.sample`) and the
  harmonic evidence of the chains (:func:`coemu.fit.evidence.ln_evidence`),

the timing, and the outputs (:mod:`coemu.fit.outputs`).
Then the log Bayes factor of the first family against each other one, and
``summary.json`` (written last: its presence means the fit finished) with a
markdown table ``summary.md``.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from coemu.fit.data import Observation, header_card, read_observation
from coemu.fit.evidence import ln_bayes_factor, ln_evidence, ln_evidence_from_nested
from coemu.fit.family import FAMILIES, UNITS, Family, site_value, truth_values
from coemu.fit.forward import ForwardModel
from coemu.fit.likelihood import BatchedLogLikelihood, GaussianLikelihood
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
    sampler: str = FIT_DEFAULTS["sampler"]
    nested_sampler: str = FIT_DEFAULTS["nested_sampler"]
    live_points: int | None = FIT_DEFAULTS["live_points"]
    min_ess: int | None = FIT_DEFAULTS["min_ess"]
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
    def nuts(self) -> SamplerSettings:
        """The MAP's and NUTS's settings (the same names; ``seed`` is ``random_seed``)."""
        return SamplerSettings.from_fit_section(vars(self))

    def sampler_summary(self) -> dict:
        """The summary's ``sampler``: ``method`` (nested or nuts) and that method's settings."""
        if self.sampler == "nuts":
            return {"method": "nuts", **{f.name: getattr(self.nuts, f.name) for f in fields(SamplerSettings)}}
        from coemu.fit.nested import HARMONIC_MIN_ESS, LIVE_POINTS

        return {
            "method": "nested",
            "nested_sampler": self.nested_sampler,
            "live_points": self.live_points or LIVE_POINTS[self.nested_sampler],
            "min_ess": self.min_ess or HARMONIC_MIN_ESS[self.nested_sampler],
            "evidence_epochs": self.evidence_epochs,
            "seed": self.random_seed,
        }


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

    With ``settings.sampler`` nested: :func:`fit_family_nested`; with nuts: the MAP, NUTS and
    harmonic's evidence of the chains.

    Args:
        images: the config's ``images`` section (turbulence, background).
        emulator: a loaded emulator (with ``fit.backend`` emulator).
        truths: the true parameter values (a mock's or a synthetic model's), if known.
    """
    forward = forward_model(obs, family, line, settings, images, emulator=emulator)
    likelihood = GaussianLikelihood.of(obs, settings.noise_model)
    if settings.sampler == "nested":
        return fit_family_nested(
            obs, family, line, settings, out_dir, images, forward, likelihood, emulator, truths
        )
    posterior = Posterior(family, forward, likelihood)
    t0 = time.perf_counter()
    found = posterior.find_map(settings.nuts)
    chains = posterior.sample(found["z"], settings.nuts)
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
    model at the MAP, ``model`` (F, Y, X), and the residual) of NUTS ``chains``."""
    from coemu.fit import outputs

    outputs.write_posterior(
        chains.values,
        family,
        f"{stem}.posterior.nc",
        {"family": family.name, "observation": obs.path, "sampler": "nuts"},
        {"lp": chains.log_density, "log_likelihood": chains.log_likelihood},
    )
    title = f"{family.name} family: {chains.z.shape[0]} chains x {chains.z.shape[1]} draws"
    outputs.corner_plot(chains.values, family, f"{stem}.corner.png", truths, title)
    outputs.channel_maps(obs.data, model.numpy(), obs.noise, obs.offsets, obs.unit, f"{stem}.channels.png")


#: The half width (degrees of rotation) of the regions of :func:`coemu.fit.symmetry.pair_mass`.
PAIR_WIDTH_DEG = 20.0


def fit_family_nested(
    obs: Observation,
    family: Family,
    line,
    settings: FitSettings,
    out_dir: Path,
    images: Mapping,
    forward: ForwardModel,
    likelihood: GaussianLikelihood,
    emulator=None,
    truths: Mapping[str, float] | None = None,
) -> dict:
    """Nested sampling of one family (``fit.nested_sampler``): its part of the summary, and its
    outputs (the equal-weight draws as one chain of M draws).

    The part: ``posterior`` (statistics of the M equal-weight draws, physical units);
    ``evidence``: the nested sampler's ``ln_evidence`` and ``error`` (``method``, and how the
    error was estimated) with harmonic's ln Z of the same draws in ``harmonic`` (or its
    ``reason``); ``convergence``: the sampler's own stopping criterion (``converged``,
    ``stopped_by``, ``ess``, ``failed``, its ``diagnostics``); ``map``: the sampled point of
    highest ln L (``map_method`` says so: not a maximum of the posterior); ``timing``
    (seconds): ``likelihood_seconds_batched`` (the run's likelihood time per parameter vector),
    ``likelihood_seconds_single`` (one unbatched ln L, no gradient), ``nested_seconds``,
    ``fit_seconds`` (the wall time of the family's fit); ``pair_mass`` (binary family, known
    viewing angles, both fitted): the mass near the true view and its partners, and
    ``pair_mass_description``. A failed sampler leaves ``posterior`` and ``map`` None, writes
    no outputs, and says why in ``convergence.failed`` and ``evidence.reason`` (logged).
    """
    from coemu.fit.nested import HARMONIC_MIN_ESS, run_nested

    name = settings.nested_sampler
    # before the run: the batched likelihood's inference mode leaves the forward model's cached
    # tensors unusable for autograd (the truth's log posterior goes through pyro)
    at_truth = {}
    if truths is not None:
        at_truth = _at_truth(Posterior(family, forward, likelihood), likelihood, obs, family, truths)
    batched = BatchedLogLikelihood(family, forward, likelihood)
    t0 = time.perf_counter()
    result = run_nested(
        batched,
        family.priors,
        sampler=name,
        live_points=settings.live_points,
        seed=settings.random_seed,
        min_ess=settings.min_ess or HARMONIC_MIN_ESS[name],
    )
    harmonic = ln_evidence_from_nested(result, family.priors, settings.evidence_epochs, settings.random_seed)
    wall = time.perf_counter() - t0
    convergence_part = {
        "converged": bool(result.converged and not result.failed),
        "stopped_by": result.diagnostics.get("stopped_by"),
        "ess": result.diagnostics.get("ess"),
        "failed": result.failed,
        "n_calls": result.n_calls,
        "n_samples": int(len(result.samples)),
        "diagnostics": result.diagnostics,
    }
    if result.failed:
        log.error("%s: %s failed: %s", family.name, name, result.failed)
    elif not result.converged:
        log.warning(
            "%s: %s did not converge (stopped by %s, ESS %.0f)",
            family.name,
            name,
            convergence_part["stopped_by"],
            convergence_part["ess"] or 0.0,
        )
    evidence = {
        "ln_evidence": None if result.failed else float(result.log_z),
        "error": None if result.failed else float(result.log_z_error),
        "method": name,
        "error_method": result.log_z_error_method,
        "harmonic": {
            k: harmonic[k]
            for k in (
                "ln_evidence",
                "error",
                "error_low",
                "error_high",
                "delta_sigma",
                "diagnostic_passed",
                "chains_used",
                "draws_per_chain",
                "reason",
            )
        },
    }
    if result.failed:
        evidence["reason"] = f"{name} failed: {result.failed}"
    part = {
        "family": family.to_dict(),
        "noise_model": likelihood.noise_model,
        "map": None,
        "map_method": "the sampled point of highest ln L (prior not included; not an optimum)",
        "map_log_likelihood": None,
        "chi2_per_pixel_at_map": None,
        "posterior": None,
        "convergence": convergence_part,
        "evidence": evidence,
        "timing": {
            "likelihood_seconds_batched": batched.seconds / batched.n_vectors if batched.n_vectors else None,
            "likelihood_seconds_single": None,
            "likelihood_calls": batched.n_calls,
            "likelihood_vectors": batched.n_vectors,
            "nested_seconds": result.seconds,
            "fit_seconds": wall,
        },
        "units": {p: UNITS.get(p, "1") for p in family.free},
    }
    if at_truth:
        part |= at_truth
    if result.failed or len(result.samples) == 0:
        return part
    top = int(np.argmax(result.weighted_log_likelihood))
    theta = result.weighted_samples[top]
    best = {k: torch.tensor(v, dtype=forward.dtype) for k, v in family.fixed.items()}
    best |= {p: torch.tensor(float(theta[j]), dtype=forward.dtype) for j, p in enumerate(family.free)}
    with torch.no_grad():
        model = forward(best)
    part["map"] = {p: float(theta[j]) for j, p in enumerate(family.free)}
    part["map_log_likelihood"] = float(result.weighted_log_likelihood[top])
    part["chi2_per_pixel_at_map"] = float(likelihood.chi2(model)) / obs.data.size
    part["posterior"] = {p: _stats(result.samples[:, j]) for j, p in enumerate(family.free)}
    part["timing"]["likelihood_seconds_single"] = likelihood_seconds(forward, likelihood, best)
    view = _pair_mass(family, result, truths)
    if view is not None:
        part["pair_mass"], part["pair_mass_description"] = view
    _write_nested_outputs(obs, family, result, model, out_dir / family.name, truths)
    if settings.backend == "emulator":
        part["emulator_error"] = emulator_error(obs, family, line, images, settings, best, model)
    return part


def likelihood_seconds(forward: ForwardModel, likelihood, params: Mapping, repeats: int = 3) -> float:
    """Wall time (s) of one unbatched ln L at ``params`` (0-d tensors), no gradient (the mean of
    ``repeats`` after a warm-up)."""
    with torch.no_grad():
        likelihood(forward(params))
        t0 = time.perf_counter()
        for _ in range(repeats):
            likelihood(forward(params))
    return (time.perf_counter() - t0) / repeats


def _pair_mass(family: Family, result, truths) -> tuple[dict, str] | None:
    """:func:`coemu.fit.symmetry.pair_mass` of the nested run's weighted points around the true
    view, and its one line; None unless the binary family fits both angles and they are known."""
    from coemu.fit import symmetry

    angles = ("inclination", "position_angle")
    if family.single or truths is None or not all(a in family.free and a in truths for a in angles):
        return None
    columns = {a: result.weighted_samples[:, family.free.index(a)] for a in angles}
    view = (float(truths["inclination"]), float(truths["position_angle"]) % 360.0)
    mass = symmetry.pair_mass(columns, view, PAIR_WIDTH_DEG, weights=np.exp(result.log_weights))
    return mass, symmetry.describe(mass, "the true view")


def _write_nested_outputs(obs: Observation, family: Family, result, model, stem: Path, truths) -> None:
    """``STEM.posterior.nc`` (the M equal-weight draws as one chain), ``STEM.corner.png`` and
    ``STEM.channels.png`` (the data, the model at the highest-ln L point, ``model`` (F, Y, X),
    and the residual) of a nested run."""
    from coemu.fit import outputs

    draws = {p: result.samples[None, :, j] for j, p in enumerate(family.free)}
    outputs.write_posterior(
        draws,
        family,
        f"{stem}.posterior.nc",
        {
            "family": family.name,
            "observation": obs.path,
            "sampler": result.sampler,
            "ln_evidence": result.log_z,
        },
        {"log_likelihood": result.log_likelihood[None]},
    )
    title = f"{family.name} family: {len(result.samples)} equal-weight draws ({result.sampler})"
    outputs.corner_plot(draws, family, f"{stem}.corner.png", truths, title)
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

    settings = FitSettings.from_config(config)
    require_fit_extra(settings.nested_sampler if settings.sampler == "nested" else None)
    path, truth = resolve_observation(path, truth)
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
        "sampler": settings.sampler_summary(),
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
    ``summary.json`` in ``out_dir`` (no NaN: :func:`json_ready`)."""
    summary = json_ready(summary)
    with atomic_output(out_dir / "summary.tsv") as tmp:
        tmp.write_text(summary_table(summary))
    with atomic_output(out_dir / "summary.md") as tmp:
        tmp.write_text(summary_markdown(summary))
    with atomic_output(out_dir / "summary.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2, allow_nan=False))


def require_fit_extra(nested_sampler: str | None = None) -> None:
    """Raise a clear error where the fit extra (pyro-ppl, arviz, corner, harmonic, and the
    ``nested_sampler`` if given: nautilus or ultranest) is missing."""
    import importlib.util

    modules = ("pyro", "arviz", "corner", "harmonic", *((nested_sampler,) if nested_sampler else ()))
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
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


def _num(value, fmt: str = ".3f", missing: str = "n/a") -> str:
    """``value`` formatted, or ``missing`` where it is None or not finite."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return missing
    return format(value, fmt)


def json_ready(value):
    """``value`` with every non-finite float as None and numpy scalars and arrays as Python
    values: ``summary.json`` holds no NaN (a missing number is null, with a reason beside it)."""
    if isinstance(value, Mapping):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_ready(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _convergence_cells(conv: Mapping) -> tuple[str, str]:
    """(the convergence measure, the divergences) of NUTS or a nested sampler, as table cells."""
    if "max_r_hat" in conv:
        return _num(conv["max_r_hat"], ".4f"), str(conv["divergences"])
    return f"ESS {_num(conv.get('ess'), '.0f')}", ""


def summary_table(summary: Mapping[str, Any]) -> str:
    """Tab-separated: one row per family (ln Z, convergence), one per Bayes factor (the report's);
    ``n/a`` for a missing number. The convergence column: NUTS's max R-hat, or the nested
    sampler's ESS."""
    rows = ["quantity\tvalue\terror\tmax R-hat\tdivergences\tconverged"]
    for name, part in summary["families"].items():
        conv, ev = part["convergence"], part["evidence"]
        measure, divergences = _convergence_cells(conv)
        rows.append(
            f"ln Z {name}\t{_num(ev['ln_evidence'])}\t{_num(ev['error'])}\t{measure}"
            f"\t{divergences}\t{conv['converged']}"
        )
    for pair, bf in summary["ln_bayes_factors"].items():
        rows.append(f"ln B {pair}\t{_num(bf['ln_bayes_factor'])}\t{_num(bf['error'])}\t\t\t")
    return "\n".join(rows) + "\n"


def _family_line(name: str, part: Mapping[str, Any]) -> str:
    """The markdown line of one family's evidence, convergence and timing."""
    conv, ev, t = part["convergence"], part["evidence"], part["timing"]
    chi2 = f" chi2/pixel at the MAP {_num(part['chi2_per_pixel_at_map'])};"
    if "max_r_hat" in conv:
        return (
            f"**{name}**: ln Z = {_num(ev['ln_evidence'], '.2f')} +- {_num(ev['error'], '.2f')} (Laplace"
            f" {_num(ev['laplace_ln_evidence'], '.2f')}); max R-hat {_num(conv['max_r_hat'])},"
            f" {conv['divergences']} divergences ({'converged' if conv['converged'] else 'NOT converged'});"
            f"{chi2} {_num(t['gradient_seconds'] * 1e3, '.0f')} ms"
            f" per gradient, fit {t['fit_seconds']:.0f} s."
        )
    h = ev["harmonic"]
    harmonic = (
        f"harmonic {_num(h['ln_evidence'], '.2f')} +- {_num(h['error'], '.2f')}"
        f" ({_num(h['delta_sigma'], '.1f')} sigma)"
        if h["reason"] is None
        else f"harmonic: none ({h['reason']})"
    )
    state = "converged" if conv["converged"] else f"NOT converged ({conv['failed'] or conv['stopped_by']})"
    single, batched = t["likelihood_seconds_single"], t["likelihood_seconds_batched"]
    return (
        f"**{name}**: ln Z = {_num(ev['ln_evidence'], '.2f')} +- {_num(ev['error'], '.2f')}"
        f" ({ev['method']}; {harmonic}); {conv['n_calls']} likelihood calls, ESS {_num(conv['ess'], '.0f')}"
        f" ({state});{chi2} ln L {_num(batched * 1e3 if batched else None, '.2f')}"
        f" ms per vector batched, {_num(single * 1e3 if single else None, '.1f')} ms single;"
        f" fit {t['fit_seconds']:.0f} s."
    )


def summary_markdown(summary: Mapping[str, Any]) -> str:
    """The fit's summary as markdown tables (the report's caption reads it)."""
    lines = [
        f"Fit of `{Path(summary['observation']).name}` ({summary['grid']}^3 cells, {summary['channels']}"
        f" channels, noise {summary['noise']:.4g} {summary['unit']} from {summary['noise_source']};"
        f" forward model: {summary['backend']}).",
        "",
    ]
    for name, part in summary["families"].items():
        lines += [_family_line(name, part), ""]
        if part.get("pair_mass_description"):
            lines += [f"Viewing angles: {part['pair_mass_description']}.", ""]
        if part["posterior"] is None:
            continue
        lines += ["| parameter | truth | MAP | median | 68% interval |", "|---|---|---|---|---|"]
        for p, s in part["posterior"].items():
            truth = part.get("truth", {}).get(p)
            lines.append(
                f"| {p} [{part['units'][p]}] | {'' if truth is None else f'{truth:.4g}'}"
                f" | {part['map'][p]:.4g}"
                f" | {s['q50']:.4g} | {s['q16']:.4g} - {s['q84']:.4g} |"
            )
        lines.append("")
    for pair, bf in summary["ln_bayes_factors"].items():
        if bf["ln_bayes_factor"] is None:
            lines.append(f"ln Bayes factor {pair}: none ({bf['reason']})")
        else:
            lines.append(f"ln Bayes factor {pair} = {bf['ln_bayes_factor']:.2f} +- {bf['error']:.2f}")
    return "\n".join(lines) + "\n"
