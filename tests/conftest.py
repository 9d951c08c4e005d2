"""Shared fixtures: small synthetic models, CLI runner, repository paths, and the tiny
pipeline run (tests/configs/tiny.yaml) that the workflow tests start from."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import yaml
from snakemake.utils import update_config

from coemu.data.variables import DEFAULT_INTENSITY_FLOOR, INPUT_VARIABLES, transformed_values

# threads per pytest-xdist worker, and the modules that share a run kept in one worker
pytest_plugins = ["xdist_sharing"]

REPO = Path(__file__).resolve().parents[1]
#: Overrides of config/config.yaml for the workflow and SLURM tests (6 models, 2 rotations, 16^3).
TINY_CONFIG = REPO / "tests" / "configs" / "tiny.yaml"


def run_cli(*args: str, cwd: Path | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``coemu ARGS`` in a subprocess (the way the rules call it)."""
    proc = subprocess.run(
        [sys.executable, "-m", "coemu.cli", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"coemu {' '.join(map(str, args))} failed:\n{proc.stderr}")
    return proc


def make_cube(folder: Path, rotations: int = 3, box_cells: int = 48, grid: int = 24) -> Path:
    """Synthetic model m00001 (seed 5, n_base 16, 4 levels) as a cube file in ``folder``, by the CLI."""
    sphere = folder / "sphere.json"
    run_cli("sphere", sphere, "--count", "2", "--seed", "5")
    out = folder / "m00001.nc"
    options = {"--seed": 5, "--n-base": 16, "--levels": 4, "--sphere": sphere, "--rotations": rotations}
    options |= {"--box-cells": box_cells, "--grid": grid}
    run_cli("cubes", out, "--synthetic", "--model", "m00001", *(str(x) for kv in options.items() for x in kv))
    return out


@pytest.fixture(scope="session")
def small_model():
    """A synthetic model with few points (n_base 16, 3 levels), for fast tests."""
    from coemu.hydro.synthetic import synthetic_model

    return synthetic_model(seed=7, index=3, n_base=16, levels=3)


@pytest.fixture()
def model_nc(tmp_path, small_model):
    """The small model written as a hydro-model netCDF file."""
    from coemu.hydro.model import hydro_to_dataset
    from coemu.io.atomic import write_netcdf_atomic

    path = tmp_path / "models" / "m00003.nc"
    write_netcdf_atomic(hydro_to_dataset(small_model), path)
    return path


GRID, ROTATIONS, CHANNELS = 16, 3, 3


def _stats(values, variable, floors):
    x = np.concatenate([v.ravel() for v in values]).astype(np.float64)
    t = transformed_values(variable, x, floors)

    def s(a):
        return {
            "count": a.size,
            "mean": a.mean(),
            "variance": a.var(),
            "min": a.min(),
            "max": a.max(),
            "median": float(np.median(a)),
            "median_of_medians": float(np.median(a)),
        }

    return s(x) | {"transformed": s(t)}


def cube_image_statistics(cube: Path, image: Path) -> dict:
    """global.json's statistics of one cube file and its image file (the default floors)."""
    floors = {"number_density_co": 1.0, "intensity": DEFAULT_INTENSITY_FLOOR}
    with xr.open_dataset(cube) as c, xr.open_dataset(image) as i:
        return {
            "cubes": {v: _stats([c[v].values], v, floors) for v in INPUT_VARIABLES},
            "images": {"intensity": _stats([i["intensity"].values], "intensity", floors)},
            "floors": floors,
        }


@pytest.fixture(scope="session")
def small_results(tmp_path_factory):
    """A small results folder in the pipeline's layout: 8 models, 16^3 cubes, 3-channel images."""
    root = tmp_path_factory.mktemp("results")
    rng = np.random.default_rng(0)
    models = [f"m{i:05d}" for i in range(8)]
    cubes, images = [], []
    yy, xx = np.meshgrid(np.arange(GRID), np.arange(GRID), indexing="ij")
    for k, m in enumerate(models):
        dims = ("rotation", "x", "y", "z")
        shape = (ROTATIONS, GRID, GRID, GRID)
        t = rng.lognormal(5.5, 0.4, shape).astype(np.float32)
        n = (10 ** rng.uniform(8, 12, shape)).astype(np.float32)
        v = rng.normal(0, 3e3, shape).astype(np.float32)
        cube = xr.Dataset({"temperature": (dims, t), "number_density_co": (dims, n), "velocity_z": (dims, v)})
        cube.attrs = {"model": m, "cell_size": 2.0e11, "sphere_radius": 1.6e13}  # as the contract has
        blob = np.exp(-((xx - 4 - k) ** 2 + (yy - 8) ** 2) / 10.0)
        intensity = np.stack(
            [[1e-14 * blob * (1 + r + c) + 1e-17 for c in range(CHANNELS)] for r in range(ROTATIONS)]
        )
        line = {"setting_molecule": "CO", "transition_index": 1, "setting_background": "zero"}
        velocities = (np.arange(CHANNELS) - (CHANNELS - 1) / 2) * 300.0
        coords = {"frequency": 230.538e9 * (1 - velocities / 2.99792458e8)}
        coords["velocity"] = ("frequency", velocities)
        image = xr.Dataset(
            {"intensity": (("rotation", "frequency", "x", "y"), intensity.astype(np.float32))},
            coords=coords,
            attrs=line,
        )
        mid = {"frequency": coords["frequency"][1:2], "velocity": ("frequency", velocities[1:2])}
        faceon = xr.Dataset(
            {"intensity": (("rotation", "frequency", "x", "y"), intensity[:1, 1:2].astype(np.float32))},
            coords=mid,
            attrs=line,
        )
        for folder, ds in (("cubes", cube), ("images", image), ("faceon", faceon)):
            (root / folder).mkdir(exist_ok=True)
            ds.to_netcdf(root / folder / f"{m}.nc")
        cubes.append(cube)
        images.append(intensity)
    from coemu.io.blocks import write_manifest

    kinds = {"cube": "cubes", "image": "images", "faceon": "faceon"}
    files = {m: {kind: root / folder / f"{m}.nc" for kind, folder in kinds.items()} for m in models}
    write_manifest(root / "blocks" / "images" / "b0000.json", "b0000", files)  # as an image job writes it
    split = {"train": models[:6], "validation": models[6:7], "test": models[7:]}
    (root / "split.json").write_text(json.dumps(split))
    floors = {"number_density_co": 1.0, "intensity": DEFAULT_INTENSITY_FLOOR}
    stats = {
        "cubes": {v: _stats([c[v].values for c in cubes[:6]], v, floors) for v in INPUT_VARIABLES},
        "images": {"intensity": _stats(images[:6], "intensity", floors)},
        "floors": floors,
    }
    (root / "stats").mkdir()
    (root / "stats" / "global.json").write_text(json.dumps(stats, default=float))
    return root


def trained_inputs(root: Path) -> dict:
    """What the rules give training, evaluation and timing for a results folder like ``small_results``."""
    return {
        "split": root / "split.json",
        "stats": root / "stats" / "global.json",
        "manifests": sorted((root / "blocks" / "images").glob("*.json")),
    }


def snakemake(
    workdir: Path, *args: str, check: bool = True, env: dict | None = None
) -> subprocess.CompletedProcess:
    """Run ``snakemake ARGS`` in ``workdir`` with this interpreter's environment."""
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        **(env or {}),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", *args], cwd=workdir, capture_output=True, text=True, env=env
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def tiny_config() -> dict:
    """config/config.yaml with tests/configs/tiny.yaml over it (merged as Snakemake merges them)."""
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    update_config(config, yaml.safe_load(TINY_CONFIG.read_text()))
    return config


def copy_workflow(dest: Path, tiny: bool = True) -> Path:
    """A copy of the workflow (Snakefile, rules, configs, profiles) in ``dest``; with ``tiny``,
    its config/config.yaml is the default with tests/configs/tiny.yaml over it."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("Snakefile", "workflow", "config", "profiles", "envs"):
        src = REPO / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, dest / name)
    if tiny:
        (dest / "config" / "config.yaml").write_text(yaml.safe_dump(tiny_config(), sort_keys=False))
    return dest


def planned_jobs(workdir: Path, *args: str) -> dict[str, int]:
    """Rule name -> number of jobs of a dry run (empty when there is nothing to do)."""
    out = snakemake(workdir, "-n", *args).stdout
    if "Nothing to be done" in out:
        return {}
    table = out[out.index("Job stats:") :].splitlines()[3:]
    jobs = {}
    for line in table:
        name, count = line.split()
        if name == "total":
            return jobs
        jobs[name] = int(count)
    raise AssertionError(f"no job table in:\n{out}")


def copy_run(run: Path, dest: Path) -> Path:
    """A copy of a finished run's folder: file times kept (copy2), so Snakemake sees it as it was."""
    shutil.copytree(run, dest, symlinks=True)
    return dest


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """The pipeline on the tiny config, run to the end once per session (local, 2 cores).
    Tests must not change it: take ``tiny_copy`` to work on a run."""
    workdir = copy_workflow(tmp_path_factory.mktemp("tiny") / "run")
    snakemake(workdir, "--cores", "2")
    return workdir


@pytest.fixture()
def tiny_copy(tiny_run, tmp_path) -> Path:
    """This test's own copy of the finished tiny run."""
    return copy_run(tiny_run, tmp_path / "run")
