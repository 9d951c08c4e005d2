"""``coemu check-run``: a finished pipeline run against what the README states.

After ``snakemake`` (README command 1) the run's folder holds ``results/``; this
check lists every output the configuration asks for and reads the fine-tuned
emulator's figures from ``results/evaluation/{kind}/finetune/metrics.json`` (the first
kind of ``training.model.kind``). It fails
when an output is missing or empty, or when a figure falls below its bar:

* the emulator's ZNCC mean >= 0.95 and MaxRel median <= 10 % (the default
  run's bar, README "What it does"),
* on >= 32 test samples of >= 2 held-out models,
* the data's own error (synthetic models: the pipeline's images against the
  images of the analytic cubes) MaxRel median <= 0.5 %.

The configuration is read the way Snakemake reads it: ``config/config.yaml``
beside ``results/`` with every ``--configfile`` over it, the schema's
defaults filling the rest.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from snakemake.utils import update_config

from coemu import settings
from coemu.hydro.catalog import list_model_files, model_blocks, model_ids
from coemu.io.errors import CoemuInputError

#: The README's bars for the default run (``coemu check-run`` options of the same names).
BARS = {
    "min_zncc": 0.95,  # ZNCC mean of the fine-tuned emulator
    "max_maxrel": 10.0,  # MaxRel median, percent
    "min_samples": 32,  # test samples the figures are measured on
    "min_test_models": 2,  # held-out models they come from
    "max_data_maxrel": 0.5,  # the data's own error, MaxRel median, percent
}

EVALUATION_FILES = ("metrics.json", "samples.nc", "table.md", "cdf.png", "examples.png", "spectra.png")
EVALUATION_FILES += ("loss.png",)


@dataclass
class RunCheck:
    """What the check found: expected outputs missing, the figures, and the bars they failed."""

    expected: int = 0
    missing: list[str] = field(default_factory=list)
    figures: list[tuple[str, Any, str, bool | None]] = field(default_factory=list)  # name, value, bar, ok

    @property
    def failures(self) -> list[str]:
        out = [f"missing or empty: {path}" for path in self.missing]
        return out + [
            f"{name} = {_fmt(value)}, bar {bar}" for name, value, bar, ok in self.figures if ok is False
        ]

    @property
    def passed(self) -> bool:
        return not self.failures

    def report(self) -> str:
        """A markdown table of the figures, then the outcome and every failure."""
        lines = [
            f"outputs: {self.expected - len(self.missing)} of {self.expected} expected present",
            "",
            "| figure | value | bar | |",
            "|---|---|---|---|",
        ]
        for name, value, bar, ok in self.figures:
            lines.append(
                f"| {name} | {_fmt(value)} | {bar} | {'' if ok is None else 'ok' if ok else 'FAILED'} |"
            )
        lines.append("")
        lines.append("PASSED" if self.passed else "FAILED")
        lines += [f"  {failure}" for failure in self.failures]
        return "\n".join(lines) + "\n"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "missing" if value is None else str(value)


def read_run_config(run_dir: Path, configfiles: Sequence[Path] = ()) -> dict:
    """The run's configuration as Snakemake built it: ``run_dir/config/config.yaml``, each of
    ``configfiles`` over it (nested keys merged), the schema's defaults for the rest."""
    sources = [run_dir / "config" / "config.yaml", *map(Path, configfiles)]
    config: dict = {}
    for source in sources:
        if not source.is_file():
            raise CoemuInputError(source, None, "no such config file")
        update_config(config, yaml.safe_load(source.read_text()) or {})  # as Snakemake merges them
    completed = settings.complete(config, ", ".join(map(str, sources)))
    settings.check(completed, ", ".join(map(str, sources)), workdir=run_dir)  # paths as the run read them
    return completed


def expected_outputs(run_dir: Path, config: Mapping[str, Any]) -> list[str]:
    """Every file the run's ``rule all`` asks for, with the per-model files of every block,
    relative to ``run_dir`` (the observation files as the export's manifest lists them)."""
    models_section = config["models"]
    models = model_ids(models_section) if models_section["source"] == "synthetic" else None
    if models is None:
        models = list(list_model_files(run_dir / models_section["directory"]))  # relative: to the run
    paths = ["results/sphere.json", "results/split.json", "results/stats/global.json"]
    for block in model_blocks(models, models_section["per_job"]):
        paths += [f"results/blocks/{kind}/{block}.json" for kind in ("cubes", "images")]
    paths += [f"results/{kind}/{model}.nc" for model in models for kind in ("cubes", "images", "faceon")]
    kinds = settings.emulator_kinds(config["training"])
    for kind in kinds:
        for stage in settings.TRAINING_STAGES:
            paths += [f"results/train/{kind}/{stage}/{name}" for name in ("model.pt", "history.csv")]
            paths += [f"results/evaluation/{kind}/{stage}/{name}" for name in EVALUATION_FILES]
    paths += ["results/timing/timing.csv", "results/timing/timing.md"]
    if len(kinds) > 1:
        paths.append("results/evaluation/kinds.md")
    if config["observations"]["export"]:
        manifest = run_dir / "results/observations/manifest.json"
        paths += ["results/observations/manifest.json"]
        paths += ["results/observations/moment0.png", "results/observations/channels.png"]
        if manifest.is_file():
            for files in json.loads(manifest.read_text())["files"].values():
                paths += [p for path in files for p in (path, path.replace(".fits", ".mom0.fits"))]
    if config["fit"]["enabled"]:
        paths.append("results/fit/summary.json")
    return paths


def _bar(check: RunCheck, name: str, value: Any, op: str, limit: float) -> None:
    ok = None if value is None else (value >= limit if op == ">=" else value <= limit)
    check.figures.append((name, value, f"{op} {limit:g}", False if value is None else ok))


def check_run(
    results: Path,
    configfiles: Sequence[Path] = (),
    bars: Mapping[str, float] | None = None,
) -> RunCheck:
    """Check the run whose ``results/`` folder is ``results`` (see the module docstring).

    Args:
        results: the run's results folder; its parent holds ``config/config.yaml``.
        configfiles: the run's ``--configfile`` files, in order.
        bars: the figures' bars (keys of :data:`BARS`; missing keys take its values).
    """
    results = Path(results)
    if not results.is_dir():
        raise CoemuInputError(results, None, "no such results folder")
    run_dir = results.resolve().parent
    config = read_run_config(run_dir, configfiles)
    bars = {**BARS, **(bars or {})}
    check = RunCheck()
    paths = expected_outputs(run_dir, config)
    check.expected = len(paths)
    check.missing = [p for p in paths if not (run_dir / p).is_file() or (run_dir / p).stat().st_size == 0]

    kind = settings.pipeline_emulator(config["training"])
    metrics_path = run_dir / f"results/evaluation/{kind}/finetune/metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
    where = f"({kind}, finetune)"
    _bar(check, f"emulator ZNCC mean {where}", metrics.get("zncc_mean"), ">=", bars["min_zncc"])
    _bar(
        check,
        f"emulator MaxRel median % {where}",
        metrics.get("maxrel_percent_median"),
        "<=",
        bars["max_maxrel"],
    )
    check.figures.append((f"emulator SSIM mean {where}", metrics.get("ssim_mean"), "reported", None))
    _bar(check, "test samples", metrics.get("n_samples"), ">=", bars["min_samples"])
    _bar(check, "held-out test models", metrics.get("n_test_models"), ">=", bars["min_test_models"])
    if config["models"]["source"] == "synthetic":
        data = metrics.get("data_maxrel_percent_median")
        _bar(check, "data's own MaxRel median %", data, "<=", bars["max_data_maxrel"])
        check.figures.append(("data's own error: samples", metrics.get("data_n_samples"), "reported", None))
    return check
