"""Every default in one place (issue 28, 3): the schema's defaults are the embedded default run,
config/config.yaml repeats none of them, config/paper.yaml (and every other config file) sets
only what differs, and ``coemu`` run by hand makes the default run's data.

A value equal to its default is allowed only on a line that says why, with the marker
:data:`DELIBERATE` (``seed: 1234  # deliberate: keeps this file a mapping``)."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import yaml
from conftest import REPO
from snakemake.utils import update_config

from coemu import settings

#: The comment that marks a value equal to its default as deliberate (with the reason after it).
DELIBERATE = "# deliberate:"
DEFAULT_CONFIG = REPO / "config" / "config.yaml"
PAPER_CONFIG = REPO / "config" / "paper.yaml"
#: Every config file of the repository: the pipeline's, the benchmarks' and the tests'.
CONFIG_FILES = sorted(
    {*REPO.glob("config/*.yaml"), *REPO.glob("bench/*.yaml"), *REPO.glob("tests/configs/*.yaml")}
)


def _same(value, default) -> bool:
    """Equal as settings: ``300`` is ``300.0``, ``true`` is not ``1``."""
    return value == default and isinstance(value, bool) == isinstance(default, bool)


def _repeats(node: yaml.MappingNode, data: dict, schema: dict, lines: list[str], key: str = "") -> list[str]:
    """``line N: key = value`` for every value of ``data`` (composed as ``node``) equal to the
    schema's default and whose key's line has no :data:`DELIBERATE` marker; into a mapping whose
    schema lists its keys, key by key (a free-form mapping or a list is one value)."""
    found = []
    for key_node, value_node in node.value:
        name = key_node.value
        value, prop = data[name], schema.get("properties", {}).get(name, {})
        path = f"{key}.{name}" if key else name
        if isinstance(value, dict) and value and "properties" in prop:
            found += _repeats(value_node, value, prop, lines, path)
        elif "default" in prop and _same(value, prop["default"]):
            line = key_node.start_mark.line
            if DELIBERATE not in lines[line]:
                found.append(f"line {line + 1}: {path} = {value!r}")
    return found


def repeated_defaults(text: str) -> list[str]:
    """The values of a config file's ``text`` that repeat the schema's default without a
    :data:`DELIBERATE` comment on their line (``line N: key = value``)."""
    node = yaml.compose(text)
    if node is None:
        return []
    return _repeats(node, yaml.safe_load(text), settings.schema(), text.splitlines())


def _load(path: Path) -> dict:
    return yaml.safe_load(path.read_text()) or {}


def _over_default(path: Path) -> dict:
    """``path`` over config/config.yaml, merged as Snakemake merges ``--configfile``."""
    config = _load(DEFAULT_CONFIG)
    if path != DEFAULT_CONFIG:
        update_config(config, _load(path))
    return config


def test_the_check_finds_a_repeated_default_and_honours_the_marker():
    text = (
        "seed: 1234  # deliberate: shown on purpose\n"
        "cubes: {grid: 32, box_cells: 128}\n"
        "images:\n"
        "  channels: 7\n"
        "  spacing: 300   # the integer is the default 300.0\n"
        "dask: {slurm: {}, security: auto}\n"
        "observations: {export: 1}\n"  # not a repeat: 1 is not true (and not valid either)
    )
    assert repeated_defaults(text) == [
        "line 2: cubes.grid = 32",
        "line 4: images.channels = 7",
        "line 5: images.spacing = 300",
        "line 6: dask.slurm = {}",
        "line 6: dask.security = 'auto'",
    ]
    assert repeated_defaults("# only comments\n") == []


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_config_files_repeat_no_default_unless_deliberate(path):
    repeats = repeated_defaults(path.read_text())
    assert not repeats, (
        f"{path.relative_to(REPO)} repeats the schema's defaults (src/coemu/config.schema.yaml); "
        f"remove them, or say why on the line with '{DELIBERATE}': {repeats}"
    )


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_config_files_are_valid_over_the_default(path):
    """Each file, over config/config.yaml as the pipeline reads it, passes the schema and the checks."""
    settings.check(settings.complete(_over_default(path), path), path)


def test_the_default_run_is_the_schema_defaults():
    """config/config.yaml sets nothing the schema does not: `coemu` by hand (the schema's
    defaults) makes the default run's data, e.g. 32^3 cubes of a 64-cell box."""
    default = settings.complete(_load(DEFAULT_CONFIG))
    assert default == settings.complete({})
    cubes, models = default["cubes"], default["models"]
    assert (cubes["grid"], cubes["box_cells"], cubes["rotations"], models["count"]) == (32, 64, 16, 20)
    assert settings.emulator_kinds(default["training"]) == ["column"]


def test_the_paper_config_is_the_paper_scale():
    """config/paper.yaml alone is the paper's run (config/config.yaml under it changes nothing):
    64^3 of a 128-cell box, 200 rotations of 10,903 models, and COEmuNet as published (its
    constructor's defaults, 143,294,737 parameters)."""
    from coemu.nn import COEmuNet

    paper = settings.complete(_load(PAPER_CONFIG))
    assert settings.complete(_over_default(PAPER_CONFIG)) == paper
    assert paper["cubes"] == {"rotations": 200, "box_cells": 128, "grid": 64, "method": "reconstruct"}
    assert (paper["models"]["count"], paper["models"]["finest_spacing"]) == (10903, 0.2)
    assert paper["training"]["model"]["kind"] == "coemunet"
    published = inspect.signature(COEmuNet.__init__).parameters
    for name, value in paper["training"]["model"]["coemunet"].items():
        default = published[name].default
        assert value == (list(default) if isinstance(default, tuple) else default), name
