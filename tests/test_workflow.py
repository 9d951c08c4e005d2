"""The Snakemake workflow itself, run for real in a temporary directory."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import xarray as xr
from conftest import REPO, run_cli

pytestmark = [pytest.mark.workflow, pytest.mark.slow]


def snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", *args], cwd=workdir, capture_output=True, text=True, env=env
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture()
def workdir(tmp_path):
    """A copy of the workflow (Snakefile, rules, schemas, configs, profiles)."""
    for name in ("Snakefile", "workflow", "config", "profiles", "envs"):
        src = REPO / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / name)
    return tmp_path


def test_default_config_end_to_end(workdir):
    """The default pipeline, configured by nothing: models to a fine-tuned COEmuNet."""
    snakemake(workdir, "--cores", "2")
    config = {"count": 12, "rotations": 4, "grid": 64}  # config/config.yaml
    sphere = json.loads((workdir / "results/sphere.json").read_text())
    assert sphere["n_models"] == config["count"]
    cubes = sorted((workdir / "results/cubes").glob("*.nc"))
    assert [p.stem for p in cubes] == [f"m{i:05d}" for i in range(config["count"])]
    for path in cubes:
        ds = xr.open_dataset(path)
        assert ds.temperature.shape == (config["rotations"],) + (config["grid"],) * 3
        assert ds.attrs["sphere_radius"] == pytest.approx(sphere["radius"])
        assert (workdir / "logs/cubes" / f"{path.stem}.log").exists()
        assert (workdir / "benchmarks/cubes" / f"{path.stem}.tsv").exists()
    split = json.loads((workdir / "results/split.json").read_text())
    assert split["counts"] == {"train": 10, "validation": 1, "test": 1}
    for stage, n_freq in (("pretrain", 1), ("finetune", 7)):
        saved = torch.load(workdir / f"results/train/{stage}/model.pt", weights_only=False)
        assert saved["run"]["n_freq"] == n_freq and saved["run"]["world_size"] == 2
        rows = (workdir / f"results/train/{stage}/history.csv").read_text().splitlines()
        assert len(rows) == 1 + saved["run"]["settings"]["epochs"]
    assert "weights identical on 2 rank(s)" in (workdir / "logs/train/finetune.log").read_text()
    for stage, n_samples in (("pretrain", 1), ("finetune", 4)):  # 1 test model x rotations
        metrics = json.loads((workdir / f"results/evaluation/{stage}/metrics.json").read_text())
        assert metrics["n_samples"] == n_samples and metrics["test_models"] == split["test"]
        assert (workdir / f"results/evaluation/{stage}/examples.png").exists()
    timing = (workdir / "results/timing/timing.md").read_text()
    assert "| coemu-solver | cpu | 7 | 1 |" in timing and "| coemunet | cpu | 7 | 8 |" in timing
    # a second run has nothing to do
    proc = snakemake(workdir, "-n")
    assert "Nothing to be done" in proc.stdout + proc.stderr
    # a self-contained report with the figures, tables and captions
    snakemake(workdir, "--report", "report.html")
    html = (workdir / "report.html").read_text()
    assert len(html) > 100_000 and "paper figure 5" in html and "like with like" in html
    assert "stage finetune" in html and "stage pretrain" in html


def test_directory_source(workdir):
    models = workdir / "models"
    for i in (2, 5, 7):
        run_cli(
            "hydro",
            models / f"wind{i}.nc",
            "--index",
            str(i),
            "--seed",
            "3",
            "--n-base",
            "12",
            "--levels",
            "3",
        )
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
    assert (workdir / "logs/images/b0000.log").exists()  # one image job: 3 models, models_per_job 4
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


def test_unknown_config_key_is_refused(workdir):
    (workdir / "bad.yaml").write_text("cubes: {rotation: 3}\n")
    proc = snakemake(workdir, "-n", "--configfile", "bad.yaml", check=False)
    assert proc.returncode != 0 and "rotation" in proc.stdout + proc.stderr


def test_paper_config_lists_every_cube_and_image_job(workdir):
    proc = snakemake(workdir, "--summary", "--configfile", "config/paper.yaml")
    lines = [line for line in proc.stdout.splitlines() if line.startswith("results/cubes/")]
    assert len(lines) == 10903
    assert all("\tcubes\t" in line for line in lines)
    images = [line for line in proc.stdout.splitlines() if line.startswith("results/images/")]
    assert len(images) == 10903 and all("\timages_b" in line for line in images)
    assert len({line.split("\t")[2] for line in images}) == 55  # blocks of 200 models
    assert any(line.startswith("results/stats/global.json\t") for line in proc.stdout.splitlines())
