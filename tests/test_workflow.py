"""The Snakemake workflow itself, run for real in a temporary directory."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
from astropy.io import fits
from conftest import REPO, run_cli

pytestmark = [pytest.mark.workflow, pytest.mark.slow]


def snakemake(
    workdir: Path, *args: str, check: bool = True, env: dict | None = None
) -> subprocess.CompletedProcess:
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


def copy_workflow(dest: Path) -> Path:
    """A copy of the workflow (Snakefile, rules, schemas, configs, profiles) in ``dest``."""
    for name in ("Snakefile", "workflow", "config", "profiles", "envs"):
        src = REPO / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, dest / name)
    return dest


@pytest.fixture()
def workdir(tmp_path):
    return copy_workflow(tmp_path)


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


def write_models(folder: Path, indices) -> Path:
    """Small synthetic hydro-model files ``wind{i}.nc`` (seed 3) in ``folder``."""
    for i in indices:
        run_cli(
            "hydro",
            folder / f"wind{i}.nc",
            "--index",
            str(i),
            "--seed",
            "3",
            "--n-base",
            "12",
            "--levels",
            "3",
        )
    return folder


def mtimes(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in folder.glob("*.nc")}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """The default pipeline, configured by nothing, run to the end once for this module."""
    workdir = copy_workflow(tmp_path_factory.mktemp("default"))
    snakemake(workdir, "--cores", "2")
    return workdir


@pytest.mark.timeout(1800)  # the default pipeline runs in it (about 6 minutes alone)
def test_default_config_end_to_end(finished_run):
    """The default pipeline, configured by nothing: models to a fine-tuned emulator that emulates."""
    workdir = finished_run
    config = {"count": 20, "rotations": 16, "grid": 32, "per_job": 4}  # config/config.yaml
    sphere = json.loads((workdir / "results/sphere.json").read_text())
    assert sphere["n_models"] == config["count"]
    cubes = sorted((workdir / "results/cubes").glob("*.nc"))
    assert [p.stem for p in cubes] == [f"m{i:05d}" for i in range(config["count"])]
    for path in cubes:
        ds = xr.open_dataset(path)
        assert ds.temperature.shape == (config["rotations"],) + (config["grid"],) * 3
        assert ds.attrs["sphere_radius"] == pytest.approx(sphere["radius"])
        assert len(ds.attrs["coemu_fingerprint"]) == 16
    for block in ("b0000", "b0001", "b0002", "b0003", "b0004"):  # 20 models, 4 per job
        for kind in ("cubes", "images"):
            assert (workdir / f"logs/{kind}/{block}.log").exists()
            assert (workdir / f"benchmarks/{kind}/{block}.tsv").exists()
            manifest = json.loads((workdir / f"results/blocks/{kind}/{block}.json").read_text())
            assert manifest["n_models"] == config["per_job"]
    split = json.loads((workdir / "results/split.json").read_text())
    assert split["counts"] == {"train": 16, "validation": 2, "test": 2}
    for stage, n_freq in (("pretrain", 1), ("finetune", 7)):
        saved = torch.load(workdir / f"results/train/{stage}/model.pt", weights_only=True)
        assert saved["run"]["n_freq"] == n_freq and saved["run"]["world_size"] == 2
        assert saved["kind"] == "column" and saved["data"]["grid"] == config["grid"]
        rows = (workdir / f"results/train/{stage}/history.csv").read_text().splitlines()
        assert len(rows) == 1 + saved["run"]["settings"]["epochs"]
    assert "weights identical on 2 rank(s)" in (workdir / "logs/train/finetune.log").read_text()
    for stage, n_samples, n_data in (("pretrain", 2, 2), ("finetune", 32, 8)):  # 2 test models
        metrics = json.loads((workdir / f"results/evaluation/{stage}/metrics.json").read_text())
        assert metrics["n_samples"] == n_samples and metrics["test_models"] == split["test"]
        # the data's own error beside the emulator's (synthetic models)
        assert metrics["data_n_samples"] == n_data and metrics["data_maxrel_percent_median"] > 0
        assert "data's own error" in (workdir / f"results/evaluation/{stage}/table.md").read_text()
        for figure in ("examples", "loss"):
            assert (workdir / f"results/evaluation/{stage}/{figure}.png").exists()
    # the bar of issue 15: the default emulator emulates, on 32 samples of 2 held-out models
    metrics = json.loads((workdir / "results/evaluation/finetune/metrics.json").read_text())
    assert metrics["zncc_mean"] >= 0.95 and metrics["maxrel_percent_median"] <= 10.0, metrics
    assert len(metrics["per_channel"]["zncc_mean"]) == 7
    timing = (workdir / "results/timing/timing.md").read_text()
    assert "| coemu-solver | cpu | 7 | 1 |" in timing and "| column | cpu | 7 | 8 |" in timing
    # the test models' images as FITS cubes and moment-0 maps (observations.export in config.yaml)
    exported = json.loads((workdir / "results/observations/manifest.json").read_text())["files"]
    assert sorted(exported) == sorted(split["test"])
    assert all(len(paths) == config["rotations"] for paths in exported.values())
    with fits.open(workdir / exported[split["test"][0]][0]) as hdul:
        header = hdul[0].header
        assert header["BUNIT"] == "Jy/beam" and header["CTYPE3"] == "VRAD" and header["NAXIS3"] == 7
        assert header["BMAJ"] == pytest.approx(0.1 / 3600) and float(np.nanmax(hdul[0].data)) > 0
    assert (workdir / exported[split["test"][0]][0].replace(".fits", ".mom0.fits")).exists()
    # a second run has nothing to do
    assert planned_jobs(workdir) == {}
    # a self-contained report with the figures, tables and captions
    snakemake(workdir, "--report", "report.html")
    html = (workdir / "report.html").read_text()
    assert len(html) > 100_000 and "paper figure 5" in html and "like with like" in html
    assert "stage finetune" in html and "stage pretrain" in html
    assert "moment-0 map" in html and "channel maps" in html


def test_changed_solver_setting_reruns_images_and_after_but_no_cube(finished_run):
    (finished_run / "solver.yaml").write_text("images: {v_turbulence: 150.0}\n")
    jobs = planned_jobs(finished_run, "--configfile", "solver.yaml")
    after = {"stats": 1, "pretrain": 1, "finetune": 1, "evaluate": 2, "timing": 1, "all": 1}
    assert jobs == {"images": 5, "observations": 1} | after


def test_forcerun_and_until_name_the_stage(finished_run):
    """One rule per stage: `--forcerun images` reruns the image jobs and what follows, no
    cube job; `--until images` stops after them."""
    after = {"stats": 1, "pretrain": 1, "finetune": 1, "evaluate": 2, "timing": 1, "observations": 1}
    assert planned_jobs(finished_run, "--forcerun", "images") == {"images": 5, "all": 1} | after
    assert planned_jobs(finished_run, "--forcerun", "pretrain", "--until", "finetune") == {
        "pretrain": 1,
        "finetune": 1,
    }
    (finished_run.parent / "fresh").mkdir()
    fresh = copy_workflow(finished_run.parent / "fresh")
    assert planned_jobs(fresh, "--until", "images") == {"sphere": 1, "cubes": 5, "images": 5}


def test_changed_training_setting_reruns_that_training_and_evaluation_only(finished_run):
    (finished_run / "finetune.yaml").write_text("training: {finetune: {epochs: 3}}\n")
    jobs = planned_jobs(finished_run, "--configfile", "finetune.yaml")
    assert jobs == {"finetune": 1, "evaluate": 1, "timing": 1, "all": 1}
    (finished_run / "model.yaml").write_text("training: {model: {column: {hidden: 16}}}\n")
    jobs = planned_jobs(finished_run, "--configfile", "model.yaml")
    assert jobs == {"pretrain": 1, "finetune": 1, "evaluate": 2, "timing": 1, "all": 1}
    # another kind's settings: not this kind's training; a second kind: trained and compared beside it
    (finished_run / "other.yaml").write_text("training: {model: {coemunet: {latent: 64}}}\n")
    assert planned_jobs(finished_run, "--configfile", "other.yaml") == {}
    (finished_run / "two.yaml").write_text("training: {model: {kind: [column, coemunet]}}\n")
    jobs = planned_jobs(finished_run, "--configfile", "two.yaml")
    assert jobs == {"train_kind": 2, "evaluate_kind": 2, "compare_kinds": 1, "all": 1}
    # a longer time limit, more memory: not a reason to train again
    (finished_run / "runtime.yaml").write_text(
        "training: {finetune: {runtime: 600}, mem_mb: 5000, cpus_per_gpu: 4}\n"
    )
    assert planned_jobs(finished_run, "--configfile", "runtime.yaml") == {}


def test_added_models_compute_only_the_new_models(finished_run, tmp_path):
    """More models: the sphere is recomputed, so every block job runs, and each makes only
    the models it does not have (fingerprints), then what depends on every model runs."""
    workdir = tmp_path / "run"
    shutil.copytree(finished_run, workdir, symlinks=True)  # copy2 keeps the times Snakemake compares
    old_cubes, old_images = mtimes(workdir / "results/cubes"), mtimes(workdir / "results/images")
    radius = json.loads((workdir / "results/sphere.json").read_text())["radius"]
    fan_in = {"split": 1, "stats": 1, "pretrain": 1, "finetune": 1, "evaluate": 2, "timing": 1, "all": 1}
    fan_in |= {"observations": 1}

    (workdir / "more.yaml").write_text("models: {count: 22}\n")  # 20 -> 22: new block b0005
    blocks = {"cubes": 6, "images": 6}
    assert planned_jobs(workdir, "--configfile", "more.yaml") == {"sphere": 1} | blocks | fan_in
    blocks_done = [f"results/blocks/images/b000{k}.json" for k in range(6)]
    snakemake(workdir, *blocks_done, "--cores", "2", "--configfile", "more.yaml")
    assert json.loads((workdir / "results/sphere.json").read_text())["radius"] == radius
    for k in range(5):
        assert "0 of 4 cubes made, 4 kept" in (workdir / f"logs/cubes/b000{k}.log").read_text()
        assert "0 of 4 models rendered, 4 kept" in (workdir / f"logs/images/b000{k}.log").read_text()
    assert "2 of 2 cubes made" in (workdir / "logs/cubes/b0005.log").read_text()
    cubes, images = mtimes(workdir / "results/cubes"), mtimes(workdir / "results/images")
    assert (
        sorted(set(cubes) - set(old_cubes))
        == sorted(set(images) - set(old_images))
        == ["m00020.nc", "m00021.nc"]
    )
    assert all(cubes[name] == t for name, t in old_cubes.items())
    assert all(images[name] == t for name, t in old_images.items())
    assert planned_jobs(workdir, "--configfile", "more.yaml") == fan_in


def test_directory_source(workdir):
    models = write_models(workdir / "models", (2, 5, 7))
    (workdir / "dir.yaml").write_text(
        f"seed: 3\nmodels: {{source: directory, directory: {models}}}\n"
        "cubes: {rotations: 2, box_cells: 32, grid: 16}\n"
    )
    # up to the statistics: one training model is too few for a batch
    snakemake(workdir, "results/stats/global.json", "--cores", "2", "--configfile", "dir.yaml")
    sphere = json.loads((workdir / "results/sphere.json").read_text())
    assert sorted(sphere["models"]) == ["wind2", "wind5", "wind7"]
    for name in ("wind2", "wind5", "wind7"):
        ds = xr.open_dataset(workdir / f"results/cubes/{name}.nc")
        assert ds.attrs["model"] == name and ds.temperature.shape == (2, 16, 16, 16)
        img = xr.open_dataset(workdir / f"results/images/{name}.nc")
        assert img.intensity.shape == (2, 7, 16, 16) and img.attrs["model"] == name
        assert float(img.intensity.max()) > 0
        face = xr.open_dataset(workdir / f"results/faceon/{name}.nc")
        assert face.intensity.shape == (1, 1, 16, 16)
    assert (workdir / "logs/images/b0000.log").exists()  # one image job: 3 models, per_job 4
    split = json.loads((workdir / "results/split.json").read_text())
    assert split["counts"] == {"train": 1, "validation": 1, "test": 1}
    stats = json.loads((workdir / "results/stats/global.json").read_text())
    assert stats["models"] == split["train"]
    assert stats["cubes"]["temperature"]["count"] == 2 * 16**3
    assert (
        stats["images"]["intensity"]["transformed"]["max"]
        > stats["images"]["intensity"]["transformed"]["min"]
    )


def test_invalid_config_fails_before_any_job(workdir):
    (workdir / "bad.yaml").write_text("cubes: {rotations: 0}\n")
    proc = snakemake(workdir, "--cores", "1", "--configfile", "bad.yaml", check=False)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "rotations" in out and "minimum" in out
    assert not (workdir / "results").exists()


@pytest.mark.parametrize(
    "bad, key",
    [
        ("split: {train: 0.9}\n", "config key 'split': train + validation + test = 1.1"),
        ("training: {processes: 3}\n", "config key 'training.pretrain.batch_size': 4 is not divisible"),
        ("training: {gpus: 1}\n", "config key 'training.gpus': asks for 1 GPUs, but training.device is cpu"),
    ],
)
def test_inconsistent_settings_fail_before_any_job(workdir, bad, key):
    (workdir / "bad.yaml").write_text(bad)
    proc = snakemake(workdir, "--cores", "1", "--configfile", "bad.yaml", check=False)
    assert proc.returncode != 0 and key in proc.stdout + proc.stderr
    assert not (workdir / "results").exists()


def test_unknown_config_key_is_refused(workdir):
    (workdir / "bad.yaml").write_text("cubes: {rotation: 3}\n")
    proc = snakemake(workdir, "-n", "--configfile", "bad.yaml", check=False)
    assert proc.returncode != 0 and "rotation" in proc.stdout + proc.stderr


STAGES = ["sphere", "cubes", "images", "split", "stats", "pretrain", "finetune", "evaluate", "timing", "all"]


def test_paper_config_lists_every_block_job(workdir):
    """The whole paper-scale DAG: 10,903 models in 55 cube and 55 image jobs of 200 models,
    one rule per stage."""
    jobs = planned_jobs(workdir, "--configfile", "config/paper.yaml")
    assert jobs == {
        "sphere": 1,
        "cubes": 55,
        "images": 55,
        "split": 1,
        "stats": 1,
        "pretrain": 1,
        "finetune": 1,
        "evaluate": 2,
        "timing": 1,
        "all": 1,
    }
    summary = snakemake(workdir, "--summary", "--configfile", "config/paper.yaml").stdout.splitlines()
    manifests = [line for line in summary if line.startswith("results/blocks/cubes/")]
    assert len(manifests) == 55 and all(line.split("\t")[2] == "cubes" for line in manifests)
    rulegraph = snakemake(workdir, "--rulegraph", "--configfile", "config/paper.yaml").stdout
    labels = sorted(re.findall(r'label = "([A-Za-z_]+)"', rulegraph))
    assert rulegraph.lstrip().startswith("digraph") and labels == sorted(STAGES)
    for per_job in (1, 200):  # the rules do not depend on the block size
        (workdir / "per_job.yaml").write_text(f"models: {{per_job: {per_job}}}\n")
        listed = snakemake(
            workdir, "--list-rules", "--configfile", "config/paper.yaml", "per_job.yaml"
        ).stdout.split()
        extra = ["train_kind", "evaluate_kind", "compare_kinds", "observations", "fit"]
        assert sorted(listed) == sorted(STAGES + extra)


def test_failed_block_leaves_no_partial_output_and_a_rerun_recovers(workdir):
    """A corrupt model: the job fails with the file named in its log, no manifest and no
    half-written file are left, and the models made before the failure are kept."""
    models = write_models(workdir / "models", (2, 5))
    good = (models / "wind5.nc").read_bytes()
    with xr.open_dataset(models / "wind5.nc") as ds:  # NaN: the sphere job (positions) reads it,
        bad = ds.load()  # the cube job refuses it
    bad["temperature"][3] = float("nan")
    bad.to_netcdf(models / "wind5.nc")
    (workdir / "dir.yaml").write_text(
        f"seed: 3\nmodels: {{source: directory, directory: {models}}}\n"
        "cubes: {rotations: 2, box_cells: 32, grid: 16}\n"
    )
    target = "results/blocks/images/b0000.json"
    proc = snakemake(workdir, target, "--cores", "2", "--configfile", "dir.yaml", check=False)
    assert proc.returncode != 0
    log = (workdir / "logs/cubes/b0000.log").read_text()
    assert "wind5.nc" in log and "temperature" in log and "NaN" in log
    assert "wind5.nc" in proc.stdout + proc.stderr  # show-failed-logs prints the job's log
    assert not (workdir / "results/blocks/cubes/b0000.json").exists()
    assert not (workdir / "results/images").exists()
    left = sorted(p.name for p in (workdir / "results/cubes").iterdir())
    assert left == ["wind2.nc"]  # complete (written atomically), no temporary file
    assert xr.open_dataset(workdir / "results/cubes/wind2.nc").temperature.shape == (2, 16, 16, 16)
    made = (workdir / "results/cubes/wind2.nc").stat().st_mtime_ns

    (models / "wind5.nc").write_bytes(good)  # the model is mended
    snakemake(workdir, target, "--cores", "2", "--configfile", "dir.yaml")
    assert "1 of 2 cubes made, 1 kept" in (workdir / "logs/cubes/b0000.log").read_text()
    assert (workdir / "results/cubes/wind2.nc").stat().st_mtime_ns == made
    assert sorted(p.name for p in (workdir / "results/images").iterdir()) == ["wind2.nc", "wind5.nc"]
    assert planned_jobs(workdir, target, "--configfile", "dir.yaml") == {}


def test_paths_with_spaces_and_shell_metacharacters_run_and_run_no_command(tmp_path):
    """Every value that reaches a shell command is quoted: a work folder, a models folder and a
    LAMDA file whose names hold spaces, quotes and `; touch FILE` run end to end (to the
    statistics), and no FILE appears."""
    hostile = "a b; touch PWNED; 'q' $(touch PWNED) `touch PWNED`"  # run in a shell: a file PWNED
    workdir = tmp_path / f"work {hostile}"
    workdir.mkdir()
    copy_workflow(workdir)
    models = write_models(tmp_path / f"models {hostile}", (2, 5, 7))
    datafile = tmp_path / f"line data {hostile}" / "co data.dat"
    datafile.parent.mkdir()
    shutil.copy(REPO / "src/coemu/rt/data/co.dat", datafile)
    config = {
        "seed": 3,
        "models": {"source": "directory", "directory": str(models)},
        "cubes": {"rotations": 2, "box_cells": 32, "grid": 16},
        "images": {"datafile": str(datafile), "channels": 3},
    }
    (workdir / "odd.yaml").write_text(json.dumps(config))  # JSON is YAML
    snakemake(workdir, "results/stats/global.json", "--cores", "2", "--configfile", "odd.yaml")
    for name in ("wind2", "wind5", "wind7"):
        with xr.open_dataset(workdir / f"results/images/{name}.nc") as image:
            assert image.intensity.shape == (2, 3, 16, 16)
            assert image.attrs["setting_datafile"] == str(datafile)
    assert json.loads((workdir / "results/stats/global.json").read_text())["models"]
    assert not list(tmp_path.rglob("PWNED"))


def test_fit_rule_is_off_by_default_and_planned_when_enabled(workdir):
    """fit.enabled adds one fit job after the observations export; its command fits the export's
    manifest (the first test model's rotation 0) with the synthetic model's true values."""
    assert "fit" not in planned_jobs(workdir)
    (workdir / "fit.yaml").write_text("fit: {enabled: true}\nobservations: {noise: 0.001}\n")
    jobs = planned_jobs(workdir, "--configfile", "fit.yaml")
    assert jobs["fit"] == 1 and jobs["observations"] == 1
    out = snakemake(workdir, "-n", "-p", "--configfile", "fit.yaml", "--forcerun", "fit").stdout
    assert "coemu fit results/observations/manifest.json --out results/fit --truth OBJECT" in out
    (workdir / "nonoise.yaml").write_text("fit: {enabled: true}\n")
    proc = snakemake(workdir, "-n", "--configfile", "nonoise.yaml", check=False)
    assert proc.returncode != 0 and "observations.noise" in proc.stdout + proc.stderr
