"""Settings flow one way: the schema holds every default, the CLI's options come from it,
each stage reads its sections as one object, and cross-field checks name the key."""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import re
import shutil
import subprocess
import sys

import pytest
import xarray as xr
import yaml
from conftest import REPO, run_cli

from coemu import settings
from coemu.cli import build_parser
from coemu.geometry.cube_files import CubeSettings
from coemu.io.errors import CoemuInputError
from coemu.observe.fits import ObservationSettings
from coemu.rt.render import RenderSettings

TRAIN_ARGS = ("train", "--split", "s", "--stats", "g", "--manifests", "m", "--out", "o", "--stage")


def parsed(*argv: str) -> dict:
    return settings.from_args(build_parser().parse_args(list(argv)))


def test_cli_defaults_are_the_schema_defaults():
    defaults = settings.complete({})
    schema = settings.schema()["properties"]
    assert defaults["cubes"]["rotations"] == schema["cubes"]["properties"]["rotations"]["default"] == 16
    assert defaults["images"]["device"] == "cpu" and defaults["dask"]["memory_limit"] == "1GiB"
    config = parsed("cubes", "out.nc", "--synthetic", "--model", "m00001", "--sphere", "s.json")
    assert config == defaults
    assert parsed("stats", "split.json", "out.json", "--manifests", "b.json")["dask"] == defaults["dask"]
    helptext = run_cli("render", "--help").stdout
    assert "--v-turbulence" in helptext and "(default: 0.0)" in helptext and "--no-compile" in helptext


def test_flags_win_over_the_config_file_which_wins_over_the_schema(tmp_path):
    (tmp_path / "c.yaml").write_text("images: {channels: 5, spacing: 100.0}\ncubes: {grid: 32}\n")
    config = parsed("render", "c.nc", "i.nc", "--config", str(tmp_path / "c.yaml"), "--channels", "3")
    assert config["images"]["channels"] == 3  # the flag
    assert config["images"]["spacing"] == 100.0  # the file
    assert config["images"]["molecule"] == "CO"  # the schema
    inline = parsed("render", "c.nc", "i.nc", "--config", '{"images": {"compile": true}}', "--no-compile")
    assert inline["images"]["compile"] is False


def test_each_section_reaches_the_code_as_one_object():
    """The settings objects have exactly the schema's keys (a key on one side only fails here)."""
    props = settings.schema()["properties"]
    assert {f.name for f in dataclasses.fields(RenderSettings)} == set(props["images"]["properties"])
    cube_keys = set(props["cubes"]["properties"]) | {"seed", "n_base", "levels", "finest_spacing"}
    assert {f.name for f in dataclasses.fields(CubeSettings)} == cube_keys
    from coemu.fit.run import FitSettings

    assert {f.name for f in dataclasses.fields(FitSettings)} == set(props["fit"]["properties"])
    config = settings.complete({"images": {"channels": 3}})
    assert FitSettings.from_config(config).families == ("binary", "single")
    assert RenderSettings.from_config(config).channels == 3
    assert CubeSettings.from_config(config).rotations == 16
    obs = {f.name: f.default for f in dataclasses.fields(ObservationSettings)}
    assert obs == config["observations"]  # the fields and their defaults: the schema's


@pytest.mark.parametrize(
    "config, key, problem",
    [
        ({"split": {"train": 0.8, "validation": 0.2, "test": 0.2}}, "split", "must sum to 1"),
        ({"training": {"processes": 3}}, "training.pretrain.batch_size", "not divisible by the 3 processes"),
        ({"training": {"gpus": 2}}, "training.gpus", "training.device is cpu"),
        ({"training": {"device": "cuda"}}, "training.gpus", "the job would get no GPU"),
        ({"cubes": {"grid": 64, "box_cells": 32}}, "cubes.grid", "cannot be kept"),
        (
            {"cubes": {"grid": 20, "box_cells": 40}, "training": {"model": {"kind": "coemunet"}}},
            "cubes.grid",
            "multiple of 8",
        ),
        ({"models": {"directory": "/data"}}, "models.directory", "models.source is synthetic"),
        ({"observations": {"beam_major": None}}, "observations.beam_major", "unit is Jy/beam"),
        ({"observations": {"beam_minor": 0.2}}, "observations.beam_minor", "larger than beam_major"),
        ({"observations": {"clip": 3.0}}, "observations.clip", "needs the noise rms"),
        (
            {"observations": {"export": True}, "split": {"train": 0.9, "validation": 0.1, "test": 0.0}},
            "observations.export",
            "split.test is 0",
        ),
    ],
)
def test_cross_field_checks_name_the_key(config, key, problem):
    with pytest.raises(CoemuInputError, match=problem) as err:
        settings.check(settings.complete(config), "my.yaml")
    assert str(err.value).startswith(f"my.yaml: config key '{key}': ")


def test_schema_errors_name_the_key_and_the_cli_exits_2(tmp_path):
    with pytest.raises(CoemuInputError, match=r"x.yaml: config key 'images.channels': 0 is less than"):
        settings.complete({"images": {"channels": 0}}, "x.yaml")
    proc = run_cli("split", tmp_path / "s.json", tmp_path / "o.json", "--train", "0.9", check=False)
    assert proc.returncode == 2 and "config key 'split': train + validation + test = 1.1" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "o.json").exists()


def test_stage_config_leaves_out_what_does_not_change_the_result():
    config = settings.complete({})
    pretrain = settings.stage_config(config, "pretrain")["training"]
    assert "finetune" not in pretrain and "runtime" not in pretrain["pretrain"]
    assert not set(settings.JOB_SIZE_KEYS) & set(pretrain)
    assert settings.stage_config(config, "sphere") == {
        "seed": 1234,
        "models": {"source": "synthetic", "count": 20},
    }
    assert settings.stage_config(config, "images") == {"images": config["images"]}


@pytest.mark.slow
@pytest.mark.workflow
def test_a_new_solver_setting_needs_the_schema_and_the_code_that_uses_it(tmp_path):
    """Add `images.test_gain` to a copy of the package: one schema entry and one field of
    RenderSettings (the code that uses it). The pipeline's config file, the rule's --config
    and `coemu render --test-gain` all reach the solver settings, which the image files
    record, and a new value renders the images again."""
    src = tmp_path / "src"
    shutil.copytree(REPO / "src", src, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    schema_path = src / "coemu" / "config.schema.yaml"
    schema = yaml.safe_load(schema_path.read_text())
    schema["properties"]["images"]["properties"]["test_gain"] = {
        "type": "number",
        "default": 1.0,
        "description": "a setting added by a test",
    }
    schema_path.write_text(yaml.safe_dump(schema, sort_keys=False))
    render = src / "coemu" / "rt" / "render.py"
    text = render.read_text()
    assert text.count("    compile: bool\n") == 1
    render.write_text(text.replace("    compile: bool\n", "    compile: bool\n    test_gain: float\n"))

    env = {
        **os.environ,
        "PYTHONPATH": str(src),
        "PATH": f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}",
    }
    work = tmp_path / "work"
    work.mkdir()
    for name in ("Snakefile", "workflow", "config", "profiles", "envs"):
        (shutil.copytree if (REPO / name).is_dir() else shutil.copy)(REPO / name, work / name)
    small = {
        "models": {"count": 2, "n_base": 8, "levels": 2, "per_job": 2},
        "cubes": {"rotations": 1, "box_cells": 32, "grid": 16},
        "images": {"channels": 3, "test_gain": 2.5},
    }
    (work / "small.yaml").write_text(yaml.safe_dump(small))
    target = "results/blocks/images/b0000.json"

    def snakemake(*args):
        proc = subprocess.run(
            [sys.executable, "-m", "snakemake", target, "--cores", "2", "--configfile", "small.yaml", *args],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        return proc.stdout + proc.stderr

    snakemake()
    image = xr.open_dataset(work / "results/images/m00000.nc")
    assert image.attrs["setting_test_gain"] == 2.5
    first = image.attrs["coemu_fingerprint"]
    # a new value: the image job runs again (a parameter changed) and renders again (fingerprint)
    small["images"]["test_gain"] = 3.0
    (work / "small.yaml").write_text(yaml.safe_dump(small))
    out = snakemake("--printshellcmds")
    assert '"test_gain": 3.0' in out
    manifest = json.loads((work / target).read_text())
    assert manifest["models"]["m00000"]["image"]["fingerprint"] != first
    # and by hand, from the generated option
    cube = work / "results/cubes/m00000.nc"
    proc = subprocess.run(
        [sys.executable, "-m", "coemu.cli", "render", str(cube), str(tmp_path / "i.nc"), "--test-gain", "4"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert xr.open_dataset(tmp_path / "i.nc").attrs["setting_test_gain"] == 4.0


def test_numbers_are_canonical_and_objects_merge(tmp_path):
    """``300`` and ``300.0`` are one setting (one fingerprint); inline JSON keeps ``1e-05`` a
    number; an object option sets its keys over the config file's."""
    assert settings.complete({"images": {"spacing": 300}})["images"]["spacing"] == 300.0
    assert isinstance(settings.complete({"images": {"spacing": 300}})["images"]["spacing"], float)
    assert isinstance(settings.complete({"cubes": {"grid": 32}})["cubes"]["grid"], int)
    inline = json.dumps({"training": {"finetune": {"lr": 1e-5, "epochs": 7}}})
    config = parsed(*TRAIN_ARGS, "finetune", "--config", inline, "--finetune", "{batch_size: 16}")
    finetune = config["training"]["finetune"]
    assert (finetune["lr"], finetune["epochs"], finetune["batch_size"]) == (1e-5, 7, 16)
    proc = run_cli("stats", "s.json", "o.json", "--manifests", "m.json", "--slurm", "{a: [}", check=False)
    assert proc.returncode == 2 and "not JSON or YAML" in proc.stderr and "Traceback" not in proc.stderr


def test_by_hand_the_training_job_sizes_are_not_checked():
    """One process by hand: the workflow's process count does not refuse a batch size of 3."""
    config = parsed(*TRAIN_ARGS, "pretrain", "--pretrain", "{batch_size: 3}")
    assert config["training"]["pretrain"]["batch_size"] == 3
    with pytest.raises(CoemuInputError, match="not divisible by the 2 processes"):
        settings.check(config)  # as the workflow checks it


@pytest.mark.parametrize(
    "values, key, problem",
    [
        ({"distance": 0.0}, "distance", "less than or equal to the minimum of 0"),
        ({"distance": float("nan")}, "distance", "nan is not a finite number"),
        ({"unit": "mJy"}, "unit", "'mJy' is not one of Jy/pixel, Jy/beam, K"),
        ({"spectral_axis": "WAVE"}, "spectral_axis", "'WAVE' is not one of VRAD, FREQ"),
        ({"dec": 91.0}, "dec", "greater than the maximum of 90"),
        ({"noise": -1.0}, "noise", "less than the minimum of 0"),
        ({"beam_major": None}, "beam_major", "is null (no beam), but unit is Jy/beam"),
        ({"beam_minor": 0.2}, "beam_minor", "0.2 arcsec is larger than beam_major 0.1"),
        ({"clip": 3.0}, "clip", "clipping at n sigma needs the noise rms"),
    ],
)
def test_one_validation_of_the_observations_for_the_pipeline_and_the_api(values, key, problem):
    """ObservationSettings (the API) and the pipeline's config check refuse the same values with
    the same words: the check names the config key ``observations.<key>``."""
    with pytest.raises(CoemuInputError, match=re.escape(problem)) as api:
        ObservationSettings(**values).validate()
    assert api.value.variable == key
    config = settings.complete({})
    config["observations"] |= values  # as a config that passed the schema would not
    with pytest.raises(CoemuInputError, match=re.escape(problem)) as pipeline:
        settings.check(config, "my.yaml")
    assert str(pipeline.value).startswith(f"my.yaml: config key 'observations.{key}': ")
    assert pipeline.value.problem == api.value.problem


def test_the_schema_names_every_registered_emulator_kind():
    """training.model.kind's choices and its per-kind sections are the model registry's kinds."""
    from coemu.nn import emulator_kinds

    model = settings.schema()["properties"]["training"]["properties"]["model"]["properties"]
    one, many = model["kind"]["oneOf"]
    kinds = set(emulator_kinds())
    assert set(one["enum"]) == set(many["items"]["enum"]) == kinds
    assert set(model) - {"kind"} == kinds
    for kind, cls in emulator_kinds().items():  # each section's keys are constructor arguments
        assert set(model[kind]["properties"]) <= set(inspect.signature(cls.__init__).parameters), kind


def test_every_subcommand_comes_from_the_table():
    """``coemu``'s subcommands are :data:`coemu.cli.COMMANDS`, and the files a command reads
    and writes name arguments it has."""
    import argparse

    from coemu.cli import COMMANDS

    parser = build_parser()
    (sub,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert list(sub.choices) == [c.name for c in COMMANDS]
    for command in COMMANDS:
        dests = {a.dest for a in sub.choices[command.name]._actions}
        named = [n for n in (*command.writes, *command.reads, *command.named) if isinstance(n, str)]
        assert set(named) <= dests, command.name


def test_the_observation_names_the_code_knows_are_the_schemas():
    """The units, temperature scales and spectral axes the FITS writer handles are the ones the
    schema (so the one validation) accepts."""
    from coemu.observe import fits
    from coemu.observe import units as conv

    props = settings.schema()["properties"]["observations"]["properties"]
    assert tuple(props["unit"]["enum"]) == tuple(conv.UNITS)
    assert tuple(props["temperature_scale"]["enum"]) == tuple(conv.TEMPERATURE_SCALES)
    assert tuple(props["spectral_axis"]["enum"]) == tuple(fits.SPECTRAL_AXES)
