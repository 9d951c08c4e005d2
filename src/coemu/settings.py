"""The configuration: one schema for the pipeline and for ``coemu`` run by hand.

``config.schema.yaml`` (beside this module, shipped with the package) is the one
source of every setting and its default, and the defaults are the embedded default
run (config/config.yaml repeats none of them; config/paper.yaml sets only what the
paper's scale changes):

* the workflow validates its config against it (``snakemake.utils.validate``)
  and calls :func:`check` before any job runs: the cross-field checks, section by
  section; the observation settings' one validation (:func:`check_observations`) is
  also the API's (``coemu.observe.fits.ObservationSettings``);
* each rule passes the sections its stage reads (:func:`stage_config`) as one
  JSON document to ``coemu <subcommand> --config``;
* the subcommands' per-setting options (``--channels``, ``--rotations``, ...)
  are generated from the schema by :func:`add_options`, with its descriptions
  and defaults, and :func:`from_args` merges them over ``--config`` and the
  schema's defaults (flags > ``--config`` > schema).

So a new setting is a schema entry and the code that uses it: it reaches that
code from the config file, from ``--config`` and from its generated option.

Light on purpose (yaml and jsonschema only): the Snakefile imports it.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
from collections.abc import Iterable, Mapping
from functools import cache
from pathlib import Path
from typing import Any

from coemu.io.errors import CoemuInputError

SCHEMA_PATH = Path(__file__).with_name("config.schema.yaml")

#: Training settings that size the job, not the model it trains (they rerun nothing).
JOB_SIZE_KEYS = ("mem_mb", "cpus_per_gpu", "threads_per_process")
TRAINING_STAGES = ("pretrain", "finetune")
CONFIG_KEY = "config key"


@cache
def _schema() -> dict:
    import yaml

    return yaml.safe_load(SCHEMA_PATH.read_text())


def schema() -> dict:
    """The configuration schema (a copy: callers may change it)."""
    return copy.deepcopy(_schema())


def _fill_defaults_validator():
    from jsonschema import Draft202012Validator, validators

    properties = Draft202012Validator.VALIDATORS["properties"]

    def fill_defaults(validator, props, instance, sub_schema):
        if isinstance(instance, dict):
            for name, prop in props.items():
                if "default" in prop:
                    instance.setdefault(name, copy.deepcopy(prop["default"]))
        yield from properties(validator, props, instance, sub_schema)

    return validators.extend(Draft202012Validator, {"properties": fill_defaults})


def _validator():
    return _fill_defaults_validator()(_schema())


@cache
def _section_validator(name: str):
    from jsonschema import Draft202012Validator

    return Draft202012Validator(_schema()["properties"][name])


def _first_error(validator, instance) -> tuple[str | None, str] | None:
    """(key path within ``instance``, or None for the whole; the problem) of the most relevant
    schema error, or None when there is none."""
    from jsonschema.exceptions import best_match

    error = best_match(validator.iter_errors(instance))
    if error is None:
        return None
    if error.validator == "enum":  # 'mJy' is not one of Jy/pixel, Jy/beam, K
        problem = f"{error.instance!r} is not one of {', '.join(map(str, error.validator_value))}"
    else:
        problem = error.message
    return ".".join(str(p) for p in error.absolute_path) or None, problem


def complete(config: Mapping[str, Any] | None = None, source: str | Path | None = None) -> dict:
    """``config`` validated against the schema, with every default filled in (a new dict).

    Raises:
        CoemuInputError: naming ``source`` (the config file, if any) and the key, e.g.
            ``config.yaml: config key 'cubes.rotations': 0 is less than the minimum of 1``.
    """
    out = copy.deepcopy(dict(config or {}))
    if (error := _first_error(_validator(), out)) is not None:
        raise CoemuInputError(source, error[0] or "config", error[1], kind=CONFIG_KEY)
    return _as_schema_types(_schema(), out)


def _as_schema_types(schema: dict, value: Any) -> Any:
    """Integers where the schema says ``number`` become floats (``300`` and ``300.0`` are one setting)."""
    if isinstance(value, dict):
        props = schema.get("properties", {})
        return {k: _as_schema_types(props.get(k, {}), v) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_schema_types(schema.get("items", {}), v) for v in value]
    types = schema.get("type", [])
    types = [types] if isinstance(types, str) else types
    if (
        isinstance(value, int)
        and not isinstance(value, bool)
        and "number" in types
        and "integer" not in types
    ):
        return float(value)
    return value


def section(name: str, values: Mapping[str, Any] | None = None) -> dict:
    """One section (``images``, ``cubes``, ...) with the schema's defaults for what ``values`` leaves out."""
    return complete({name: dict(values or {})})[name]


def training_processes(training: Mapping[str, Any]) -> int:
    """torchrun processes of a training job: one per GPU, or ``processes`` CPU processes."""
    return training_gpus(training) or int(training["processes"])


def training_gpus(training: Mapping[str, Any]) -> int:
    """GPUs a training job asks for (0 when it runs on the CPU)."""
    return int(training["gpus"]) if training["device"] != "cpu" else 0


# --- cross-field checks ------------------------------------------------------------------------


def _problem(key: str, problem: str) -> CoemuInputError:
    """A config check's error; :func:`check` adds the config file's name."""
    return CoemuInputError(None, key, problem, kind=CONFIG_KEY)


def check_observations(values: Mapping[str, Any]) -> None:
    """The one validation of the observation settings: the pipeline's :func:`check` and the
    API (:class:`coemu.observe.fits.ObservationSettings`, :func:`coemu.observe.fits.observation`)
    both run it. Every value against the schema's ``observations`` section (types, ranges: a
    distance > 0 pc, RA in [0, 360) deg, Dec in [-90, 90] deg, beam axes > 0 arcsec, noise
    >= 0; the names of the units, temperature scales and spectral axes), every number finite,
    then the rules between them: Jy/beam needs a beam, the beam's minor axis is at most its
    major axis, clipping needs the noise rms. What depends on the image's pixel (a beam
    smaller than a pixel) is checked where the pixel is known
    (:meth:`~coemu.observe.fits.ObservationSettings.check`).

    Light: the Snakefile's check runs it (no astropy, no torch).

    Args:
        values: every setting of the section (a completed ``observations`` section, or the
            fields of an ObservationSettings).

    Raises:
        CoemuInputError: naming the setting as its key in the section (``distance``; :func:`check`
            reports it as ``observations.distance``), with no file (the caller's to add).
    """
    for name, value in values.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise CoemuInputError(None, name, f"{value} is not a finite number")
    if (error := _first_error(_section_validator("observations"), dict(values))) is not None:
        raise CoemuInputError(None, error[0] or "observations", error[1])
    major, minor = values["beam_major"], values["beam_minor"]
    if major is None and values["unit"] == "Jy/beam":
        raise CoemuInputError(None, "beam_major", "is null (no beam), but unit is Jy/beam")
    if minor is not None and major is not None and minor > major:
        raise CoemuInputError(None, "beam_minor", f"{minor} arcsec is larger than beam_major {major}")
    if values["clip"] is not None and not values["noise"]:
        raise CoemuInputError(None, "clip", "clipping at n sigma needs the noise rms (noise)")


def _check_models(config: Mapping[str, Any]) -> None:
    models = config.get("models")
    if models and models["source"] == "synthetic" and models.get("directory"):
        raise _problem(
            "models.directory", "is set, but models.source is synthetic (set source: directory to use it)"
        )


def _check_split(config: Mapping[str, Any]) -> None:
    if split := config.get("split"):
        total = split["train"] + split["validation"] + split["test"]
        if abs(total - 1) > 1e-9:
            raise _problem("split", f"train + validation + test = {total:g}: the fractions must sum to 1")


def _check_cubes(config: Mapping[str, Any]) -> None:
    cubes = config.get("cubes")
    if cubes and cubes["grid"] > cubes["box_cells"]:
        raise _problem(
            "cubes.grid",
            f"{cubes['grid']} central cells cannot be kept of cubes.box_cells {cubes['box_cells']}",
        )


def _check_training_jobs(config: Mapping[str, Any]) -> None:
    """How the workflow sizes the training jobs: GPUs for the device, the global batch sizes
    over the processes."""
    if not (training := config.get("training")):
        return
    if training["device"] == "cpu" and training["gpus"] > 0:
        raise _problem("training.gpus", f"asks for {training['gpus']} GPUs, but training.device is cpu")
    if training["device"] == "cuda" and training["gpus"] == 0:
        raise _problem("training.gpus", "is 0, but training.device is cuda: the job would get no GPU")
    n = training_processes(training)
    by = "training.gpus" if training_gpus(training) else "training.processes"
    for stage in TRAINING_STAGES:
        batch = training[stage]["batch_size"]
        if batch % n:
            raise _problem(
                f"training.{stage}.batch_size", f"{batch} is not divisible by the {n} processes ({by})"
            )


def _check_observations(config: Mapping[str, Any]) -> None:
    """:func:`check_observations` (as ``observations.<key>``), and a test split to export."""
    if not (obs := config.get("observations")):
        return
    try:
        check_observations(obs)
    except CoemuInputError as err:
        raise _problem(f"observations.{err.variable}", err.problem) from None
    split = config.get("split")
    if obs["export"] and split and split["test"] == 0:
        raise _problem("observations.export", "exports the test models' images, but split.test is 0")


def _check_fit(config: Mapping[str, Any]) -> None:
    """A fit in the pipeline needs a noisy exported observation; ``fit.free`` names fitted
    families and their parameters."""
    if not (fit := config.get("fit")):
        return
    obs = config.get("observations")
    if fit["enabled"] and not (obs and obs["export"]):
        raise _problem(
            "fit.enabled", "fits the exported observation of a test model, but observations.export is off"
        )
    if fit["enabled"] and not obs["noise"]:
        raise _problem("fit.enabled", "a fit needs a noisy mock: set observations.noise (rms per channel)")
    if not fit["free"]:
        return
    from coemu.fit.family import Family  # imports torch: only when there is something to check

    for family, free in fit["free"].items():
        if family not in fit["families"]:
            raise _problem(f"fit.free.{family}", f"is not one of fit.families {fit['families']}")
        try:
            Family.make(family, free)
        except CoemuInputError as err:
            raise _problem(f"fit.free.{family}", err.problem) from None


def _check_emulator_grid(config: Mapping[str, Any]) -> None:
    training, cubes = config.get("training"), config.get("cubes")
    if training and cubes and cubes["grid"] % 8 and "coemunet" in emulator_kinds(training):
        raise _problem(
            "cubes.grid", f"{cubes['grid']}: COEmuNet needs a multiple of 8 (its decoder upsamples 3 times)"
        )


def _check_paths(config: Mapping[str, Any], workdir: Path) -> None:
    for key, path, folder in named_paths(config):
        if problem := _path_problem(path, folder, workdir):
            raise _problem(key, problem)


def check(
    config: Mapping[str, Any],
    source: str | Path | None = None,
    sections: Iterable[str] | None = None,
    jobs: bool = True,
    workdir: str | Path | None = None,
) -> None:
    """Cross-field checks the schema cannot express, on a completed config, section by section
    (the first problem found is raised).

    Args:
        sections: check only these sections and the pairs among them (default: all).
        jobs: also check how the workflow sizes the training jobs (GPUs for the device,
            the global batch sizes over the processes); ``coemu train`` run by hand
            checks its real number of processes instead.
        workdir: the folder relative paths of the config are read from (default: the
            working directory, Snakemake's workdir).

    Raises:
        CoemuInputError: naming ``source`` and the key at fault.
    """
    if sections is not None:
        config = {k: v for k, v in config.items() if k in set(sections)}
    checks = [_check_models, _check_split, _check_cubes]
    checks += [_check_training_jobs] * jobs + [_check_observations, _check_fit, _check_emulator_grid]
    try:
        for one in checks:
            one(config)
        _check_paths(config, Path.cwd() if workdir is None else Path(workdir))
    except CoemuInputError as err:
        raise CoemuInputError(source, err.variable, err.problem, kind=CONFIG_KEY) from None


def named_paths(config: Mapping[str, Any]) -> list[tuple[str, str, bool]]:
    """(key, path, is a folder) of every setting of a completed config that names a file or
    folder to read: ``models.directory`` (source directory), ``images.datafile`` (the LAMDA
    file; null = the shipped one) and the PEM files of ``dask.security``."""
    named = []
    models = config.get("models")
    if models and models["source"] == "directory":
        named.append(("models.directory", models.get("directory"), True))
    if images := config.get("images"):
        named.append(("images.datafile", images.get("datafile"), False))
    security = (config.get("dask") or {}).get("security")
    if isinstance(security, Mapping):
        named += [(f"dask.security.{key}", security.get(key), False) for key in ("ca_file", "cert", "key")]
    return [(key, str(path), folder) for key, path, folder in named if path is not None]


def _path_problem(path: str, folder: bool, workdir: Path) -> str | None:
    """Why ``path`` (relative: to ``workdir``) cannot be read as a folder or a file; None when it can."""
    p = workdir / path  # an absolute path stays as it is
    where = "" if Path(path).is_absolute() else f" (relative to {workdir})"
    if not p.exists():
        return f"no such {'folder' if folder else 'file'}: {path}{where}"
    if folder and not p.is_dir():
        return f"not a folder: {path}{where}"
    if not folder and p.is_dir():
        return f"a folder, not a file: {path}{where}"
    return None


def emulator_kinds(training: Mapping[str, Any]) -> list[str]:
    """The kinds ``training.model.kind`` names, in order (the first is the pipeline's emulator)."""
    kind = training["model"]["kind"]
    return [kind] if isinstance(kind, str) else list(kind)


def pipeline_emulator(training: Mapping[str, Any]) -> str:
    """The pipeline's own emulator: the first kind ``training.model.kind`` names (the timing,
    the fit with the emulator backend and ``coemu check-run`` use it; the workflow's
    ``EMULATOR``)."""
    return emulator_kinds(training)[0]


def stage_config(config: Mapping[str, Any], stage: str, kind: str | None = None) -> dict:
    """The part of a completed config that stage ``stage``'s code reads.

    For a training stage, ``kind`` (default: the first configured) selects the
    emulator: only its settings are kept, so changing another kind's settings
    does not retrain this one.

    A rule passes it as its ``--config`` (and as a parameter), so a change to
    any other setting does not rerun the stage. Training leaves out the job's
    size (:data:`JOB_SIZE_KEYS`), the other stage and its own time limit: a
    longer time limit resumes a run instead of restarting it.
    """
    models = config["models"]
    if stage == "sphere":
        keys = ("source", "count") if models["source"] == "synthetic" else ("source", "directory")
        return {"seed": config["seed"], "models": {k: models[k] for k in keys}}
    if stage == "cubes":
        keys = ("n_base", "levels", "finest_spacing") if models["source"] == "synthetic" else ()
        return {"seed": config["seed"], "models": {k: models[k] for k in keys}, "cubes": config["cubes"]}
    if stage == "evaluation":  # the data's own error: the solver, and which models are synthetic
        return {
            "seed": config["seed"],
            "models": {"source": models["source"]},
            "evaluation": config["evaluation"],
            "images": config["images"],
        }
    if stage in TRAINING_STAGES:
        other = TRAINING_STAGES[1 - TRAINING_STAGES.index(stage)]
        training = {k: v for k, v in config["training"].items() if k not in (other, *JOB_SIZE_KEYS)}
        training[stage] = {k: v for k, v in training[stage].items() if k != "runtime"}
        kind = kind or pipeline_emulator(config["training"])
        training["model"] = {"kind": kind, kind: config["training"]["model"][kind]}
        return {"training": training}
    sections = {
        "images": ("images",),
        "split": ("split",),
        "stats": ("dask", "preprocessing"),
        "timing": ("timing",),
        "observations": ("observations",),
        "fit": ("fit", "images"),
    }
    if stage not in sections:
        raise ValueError(f"unknown stage '{stage}'")
    return {name: config[name] for name in sections[stage]}


def to_json(config: Mapping[str, Any]) -> str:
    """Canonical JSON (sorted keys): equal settings give equal text, so equal rule parameters."""
    return json.dumps(config, sort_keys=True)


# --- the command line --------------------------------------------------------------------------

#: Prefix of the generated options' destinations (``args.<_DEST>images.channels``).
_DEST = "config:"


def _option_type(prop: dict):
    types = prop.get("type", [])
    types = [types] if isinstance(types, str) else list(types)
    if "enum" in prop:
        types += sorted({type(v).__name__ for v in prop["enum"] if v is not None})

    def parse(text: str):
        if "null" in types and text.lower() in ("null", "none"):
            return None
        if "integer" in types or "int" in types:
            return int(text)
        if "number" in types or "float" in types:
            return float(text)
        if "object" in types or "array" in types:
            try:
                return _load_text(text, json_first=True)
            except ValueError as err:
                raise argparse.ArgumentTypeError(f"not JSON or YAML: {err}") from None
        return text

    parse.__name__ = "/".join(t for t in types if t != "null") or "value"
    return parse


def add_options(parser: argparse.ArgumentParser, name: str | None, only: Iterable[str] | None = None) -> None:
    """Options for the settings of config section ``name`` (or top-level scalar ``only`` if ``name`` is None).

    One option per setting, ``--v-turbulence`` for ``images.v_turbulence``,
    with the schema's description and default in its help; objects and lists
    are given as JSON or YAML text. An option left out keeps the value from
    ``--config`` or, failing that, the schema's default.
    """
    props = _schema()["properties"] if name is None else _schema()["properties"][name]["properties"]
    title = f"{name} settings (config file section '{name}')" if name else "top-level settings"
    group = parser.add_argument_group(title)
    for key in only or props:
        prop = props[key]
        dest = _DEST + (key if name is None else f"{name}.{key}")
        flag = "--" + key.replace("_", "-")
        metavar = key.upper()
        text = f"{prop.get('description', '')} (default: {json.dumps(prop.get('default'))})".strip()
        text = text.replace("%", "%%")
        if prop.get("type") == "boolean":
            group.add_argument(
                flag, dest=dest, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=text
            )
        else:
            choices = prop.get("enum")
            group.add_argument(
                flag,
                dest=dest,
                type=_option_type(prop),
                choices=choices,
                default=argparse.SUPPRESS,
                metavar=None if choices else metavar,
                help=text,
            )


def add_config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        help="a config file (YAML or JSON, as config/config.yaml) or a JSON document of sections; "
        "options given on the command line win over it, the schema's defaults fill what both leave out",
    )


def _load_text(text: str, json_first: bool) -> Any:
    """JSON (exactly, ``1e-05`` a number) when ``json_first`` and it parses; YAML otherwise.

    Raises:
        ValueError: neither.
    """
    import yaml

    if json_first:
        try:
            return json.loads(text)
        except ValueError:
            pass
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ValueError(str(err)) from None


def read_config(text: str | None) -> tuple[dict, str | None]:
    """The ``--config`` value: a YAML/JSON file, or inline JSON (starting with ``{``); and its source name."""
    if not text:
        return {}, None
    if text.lstrip().startswith("{"):
        source, content = "--config", text
    else:
        source = text
        try:
            content = Path(text).read_text()
        except OSError as err:
            raise CoemuInputError(text, None, f"config file cannot be read ({err.strerror})") from None
    json_first = source == "--config" or source.endswith(".json")
    try:
        config = _load_text(content, json_first) or {}
    except ValueError as err:
        raise CoemuInputError(source, None, f"not YAML or JSON ({err})") from None
    if not isinstance(config, dict):
        raise CoemuInputError(source, None, "must be a mapping of config sections")
    return config, source


def from_args(args: argparse.Namespace) -> dict:
    """The completed, checked config: schema defaults, under ``--config``, under the options given."""
    config, source = read_config(getattr(args, "config", None))
    given = False
    for dest, value in vars(args).items():
        if not dest.startswith(_DEST):
            continue
        given, dest = True, dest[len(_DEST) :]
        if "." not in dest:
            config[dest] = value
        else:
            name, key = dest.split(".", 1)
            config.setdefault(name, {})
            if not isinstance(config[name], dict):
                raise CoemuInputError(source, name, "must be a mapping", kind=CONFIG_KEY)
            old = config[name].get(key)
            # an object option (training.pretrain, dask.slurm, ...) sets keys over --config's
            config[name][key] = (
                {**old, **value} if isinstance(old, dict) and isinstance(value, dict) else value
            )
    where = " and ".join([source] * bool(source) + ["the command line"] * given) or None
    completed = complete(config, where)
    check(completed, where, sections=config, jobs=False)
    return completed
