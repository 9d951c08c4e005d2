"""The Snakemake workflow itself, run for real in a temporary directory."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
from astropy.io import fits
from conftest import REPO, copy_workflow, planned_jobs, run_cli, snakemake, tiny_config

pytestmark = [pytest.mark.workflow, pytest.mark.slow]


@pytest.fixture()
def workdir(tmp_path):
    """A fresh copy of the workflow with its own config/config.yaml (the tests that run jobs
    in it give their own small data set in a --configfile)."""
    return copy_workflow(tmp_path, tiny=False)


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


def test_tiny_config_end_to_end(tiny_copy):
    """The default pipeline on the tiny config: models to a fine-tuned emulator, its evaluation,
    timing, the observations export and the report (the default run's figures: check-run)."""
    workdir = tiny_copy
    tiny = tiny_config()
    config = {key: tiny["cubes"][key] for key in ("rotations", "grid")}
    config |= {key: tiny["models"][key] for key in ("count", "per_job")}
    sphere = json.loads((workdir / "results/sphere.json").read_text())
    assert sphere["n_models"] == config["count"]
    cubes = sorted((workdir / "results/cubes").glob("*.nc"))
    assert [p.stem for p in cubes] == [f"m{i:05d}" for i in range(config["count"])]
    for path in cubes:
        ds = xr.open_dataset(path)
        assert ds.temperature.shape == (config["rotations"],) + (config["grid"],) * 3
        assert ds.attrs["sphere_radius"] == pytest.approx(sphere["radius"])
        assert len(ds.attrs["coemu_fingerprint"]) == 16
    blocks = [f"b{k:04d}" for k in range(config["count"] // config["per_job"])]
    assert blocks == ["b0000", "b0001", "b0002"]  # 6 models, 2 per job
    for block in blocks:
        for kind in ("cubes", "images"):
            assert (workdir / f"logs/{kind}/{block}.log").exists()
            assert (workdir / f"benchmarks/{kind}/{block}.tsv").exists()
            manifest = json.loads((workdir / f"results/blocks/{kind}/{block}.json").read_text())
            assert manifest["n_models"] == config["per_job"]
    split = json.loads((workdir / "results/split.json").read_text())
    assert split["counts"] == {"train": 4, "validation": 1, "test": 1}
    for stage, n_freq in (("pretrain", 1), ("finetune", 7)):
        saved = torch.load(workdir / f"results/train/column/{stage}/model.pt", weights_only=True)
        assert saved["run"]["n_freq"] == n_freq and saved["run"]["world_size"] == 2
        assert saved["kind"] == "column" and saved["data"]["grid"] == config["grid"]
        rows = (workdir / f"results/train/column/{stage}/history.csv").read_text().splitlines()
        assert len(rows) == 1 + saved["run"]["settings"]["epochs"]
    assert "weights identical on 2 rank(s)" in (workdir / "logs/train/column/finetune.log").read_text()
    n_test = len(split["test"])
    for stage, n_samples in (("pretrain", n_test), ("finetune", n_test * config["rotations"])):
        metrics = json.loads((workdir / f"results/evaluation/column/{stage}/metrics.json").read_text())
        assert metrics["n_samples"] == n_samples and metrics["test_models"] == split["test"]
        # the data's own error beside the emulator's (synthetic models)
        assert metrics["data_n_samples"] == n_samples and metrics["data_maxrel_percent_median"] > 0
        assert "data's own error" in (workdir / f"results/evaluation/column/{stage}/table.md").read_text()
        for figure in ("examples", "loss"):
            assert (workdir / f"results/evaluation/column/{stage}/{figure}.png").exists()
    metrics = json.loads((workdir / "results/evaluation/column/finetune/metrics.json").read_text())
    assert len(metrics["per_channel"]["zncc_mean"]) == 7
    timing = (workdir / "results/timing/timing.md").read_text()
    large = tiny["timing"]["large_batch"]
    assert "| coemu-solver | cpu | 7 | 1 |" in timing and f"| column | cpu | 7 | {large} |" in timing
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


def check_run(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    return run_cli("check-run", workdir / "results", *args, check=False)


def test_check_run_prints_the_figures_and_holds_the_run_to_the_readme(tiny_run):
    """`coemu check-run results/`: the tiny run is below the README's bar on the number of
    samples and models (and fails, naming them); at bars set to its own figures it passes, and
    a bar just past a figure fails on that figure alone."""
    proc = check_run(tiny_run)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    out = proc.stdout
    metrics = json.loads((tiny_run / "results/evaluation/column/finetune/metrics.json").read_text())
    assert "outputs: 54 of 54 expected present" in out
    assert f"| emulator ZNCC mean (column, finetune) | {metrics['zncc_mean']:.4g} | >= 0.95 |" in out
    assert "test samples = 2, bar >= 32" in out and "held-out test models = 1, bar >= 2" in out
    own = {
        "--min-zncc": metrics["zncc_mean"],
        "--max-maxrel": metrics["maxrel_percent_median"],
        "--min-samples": metrics["n_samples"],
        "--min-test-models": metrics["n_test_models"],
        "--max-data-maxrel": metrics["data_maxrel_percent_median"],
    }
    at_own = [str(x) for kv in own.items() for x in kv]
    passed = check_run(tiny_run, *at_own)
    assert passed.returncode == 0 and passed.stdout.rstrip().endswith("PASSED"), passed.stdout
    past = dict(own) | {"--min-zncc": metrics["zncc_mean"] + 1e-6}
    failed = check_run(tiny_run, *[str(x) for kv in past.items() for x in kv])
    assert failed.returncode == 1
    assert failed.stdout.count("bar >= ") == 1 and "emulator ZNCC mean (column, finetune) = " in failed.stdout


def test_check_run_names_missing_and_empty_outputs(tiny_copy):
    (tiny_copy / "results/images/m00003.nc").unlink()
    (tiny_copy / "results/train/column/finetune/model.pt").write_bytes(b"")
    exported = json.loads((tiny_copy / "results/observations/manifest.json").read_text())["files"]
    lost = Path(next(iter(exported.values()))[1].replace(".fits", ".mom0.fits"))
    (tiny_copy / lost).unlink()
    proc = check_run(tiny_copy)
    assert proc.returncode == 1
    assert "outputs: 51 of 54 expected present" in proc.stdout
    for path in ("results/images/m00003.nc", "results/train/column/finetune/model.pt", str(lost)):
        assert f"missing or empty: {path}" in proc.stdout
    # the run's other config files are read over config/config.yaml, as Snakemake reads them
    (tiny_copy / "more.yaml").write_text("models: {count: 8}\n")
    proc = check_run(tiny_copy, "--configfile", str(tiny_copy / "more.yaml"))
    assert "missing or empty: results/cubes/m00007.nc" in proc.stdout
    assert "missing or empty: results/blocks/images/b0003.json" in proc.stdout
    bad = check_run(tiny_copy, "--configfile", str(tiny_copy / "absent.yaml"))
    assert bad.returncode == 2 and "absent.yaml" in bad.stderr and "no such config file" in bad.stderr
    # a relative path in the run's config is read from the run's folder, wherever check-run runs
    shutil.copy(REPO / "src/coemu/rt/data/co.dat", tiny_copy / "co.dat")
    (tiny_copy / "line.yaml").write_text("images: {datafile: co.dat}\n")
    proc = check_run(tiny_copy, "--configfile", str(tiny_copy / "line.yaml"))
    assert proc.returncode == 1 and "outputs: 51 of 54 expected present" in proc.stdout, proc.stderr
    nowhere = run_cli("check-run", tiny_copy / "nowhere", check=False)
    assert nowhere.returncode == 2 and "nowhere" in nowhere.stderr
    assert "no such results folder" in nowhere.stderr


def test_changed_solver_setting_reruns_images_and_after_but_no_cube(tiny_copy):
    (tiny_copy / "solver.yaml").write_text("images: {v_turbulence: 150.0}\n")
    jobs = planned_jobs(tiny_copy, "--configfile", "solver.yaml")
    after = {"stats": 1, "train": 2, "evaluate": 2, "timing": 1, "all": 1}
    assert jobs == {"images": 3, "observations": 1} | after


def test_forcerun_and_until_name_the_stage(tiny_copy):
    """One rule per stage: `--forcerun images` reruns the image jobs and what follows, no
    cube job; `--until images` stops after them; a file forces one job of a rule."""
    after = {"stats": 1, "train": 2, "evaluate": 2, "timing": 1, "observations": 1}
    assert planned_jobs(tiny_copy, "--forcerun", "images") == {"images": 3, "all": 1} | after
    # one kind's stage of the train rule: its file; fine-tuning and both evaluations follow
    pretrain = "results/train/column/pretrain/model.pt"
    assert planned_jobs(tiny_copy, "--forcerun", pretrain) == {
        "train": 2,
        "evaluate": 2,
        "timing": 1,
        "all": 1,
    }
    fresh = copy_workflow(tiny_copy.parent / "fresh")
    assert planned_jobs(fresh, "--until", "images") == {"sphere": 1, "cubes": 3, "images": 3}


def test_changed_training_setting_reruns_that_training_and_evaluation_only(tiny_copy):
    (tiny_copy / "finetune.yaml").write_text("training: {finetune: {epochs: 3}}\n")
    jobs = planned_jobs(tiny_copy, "--configfile", "finetune.yaml")
    assert jobs == {"train": 1, "evaluate": 1, "timing": 1, "all": 1}
    (tiny_copy / "model.yaml").write_text("training: {model: {column: {hidden: 16}}}\n")
    jobs = planned_jobs(tiny_copy, "--configfile", "model.yaml")
    assert jobs == {"train": 2, "evaluate": 2, "timing": 1, "all": 1}
    # another kind's settings: not this kind's training; a second kind: trained and compared beside it
    (tiny_copy / "other.yaml").write_text("training: {model: {coemunet: {latent: 64}}}\n")
    assert planned_jobs(tiny_copy, "--configfile", "other.yaml") == {}
    (tiny_copy / "two.yaml").write_text("training: {model: {kind: [column, coemunet]}}\n")
    jobs = planned_jobs(tiny_copy, "--configfile", "two.yaml")
    assert jobs == {"train": 2, "evaluate": 2, "compare_kinds": 1, "all": 1}
    # a longer time limit, more memory: not a reason to train again
    (tiny_copy / "runtime.yaml").write_text(
        "training: {finetune: {runtime: 600}, mem_mb: 5000, cpus_per_gpu: 4}\n"
    )
    assert planned_jobs(tiny_copy, "--configfile", "runtime.yaml") == {}


def test_added_models_compute_only_the_new_models(tiny_copy):
    """More models: the sphere is recomputed, so every block job runs, and each makes only
    the models it does not have (fingerprints), then what depends on every model runs."""
    workdir = tiny_copy
    old_cubes, old_images = mtimes(workdir / "results/cubes"), mtimes(workdir / "results/images")
    radius = json.loads((workdir / "results/sphere.json").read_text())["radius"]
    fan_in = {"split": 1, "stats": 1, "train": 2, "evaluate": 2, "timing": 1, "all": 1}
    fan_in |= {"observations": 1}

    (workdir / "more.yaml").write_text("models: {count: 8}\n")  # 6 -> 8: new block b0003
    blocks = {"cubes": 4, "images": 4}
    assert planned_jobs(workdir, "--configfile", "more.yaml") == {"sphere": 1} | blocks | fan_in
    blocks_done = [f"results/blocks/images/b000{k}.json" for k in range(4)]
    snakemake(workdir, *blocks_done, "--cores", "2", "--configfile", "more.yaml")
    assert json.loads((workdir / "results/sphere.json").read_text())["radius"] == radius
    for k in range(3):
        assert "0 of 2 cubes made, 2 kept" in (workdir / f"logs/cubes/b000{k}.log").read_text()
        assert "0 of 2 models rendered, 2 kept" in (workdir / f"logs/images/b000{k}.log").read_text()
    assert "2 of 2 cubes made" in (workdir / "logs/cubes/b0003.log").read_text()
    cubes, images = mtimes(workdir / "results/cubes"), mtimes(workdir / "results/images")
    assert (
        sorted(set(cubes) - set(old_cubes))
        == sorted(set(images) - set(old_images))
        == ["m00006.nc", "m00007.nc"]
    )
    assert all(cubes[name] == t for name, t in old_cubes.items())
    assert all(images[name] == t for name, t in old_images.items())
    assert planned_jobs(workdir, "--configfile", "more.yaml") == fan_in


def test_a_lost_or_changed_per_model_file_reruns_its_block_and_what_follows(tiny_copy):
    """Per-model files deleted or truncated after the run (a scratch purge): a plain `snakemake`
    finds them at start-up, reruns their blocks' jobs, which remake only those files, then
    what follows, and ends with the same metrics."""
    workdir = tiny_copy
    metrics = workdir / "results/evaluation/column/finetune/metrics.json"
    before = json.loads(metrics.read_text())
    follows = {"stats": 1, "train": 2, "evaluate": 2, "timing": 1, "observations": 1}
    follows |= {"all": 1}
    kept = mtimes(workdir / "results/images")
    (workdir / "results/images/m00000.nc").unlink()  # block b0000
    assert planned_jobs(workdir) == {"images": 1} | follows
    (workdir / "results/cubes/m00002.nc").unlink()  # block b0001: its cube and image jobs
    assert planned_jobs(workdir) == {"cubes": 1, "images": 2} | follows
    truncated = workdir / "results/images/m00005.nc"  # block b0002
    truncated.write_bytes(truncated.read_bytes()[:1000])
    assert planned_jobs(workdir) == {"cubes": 1, "images": 3} | follows
    changed = json.loads((workdir / "results/blocks/images/b0002.changed.json").read_text())["changed"]
    assert list(changed) == ["results/images/m00005.nc"]
    assert changed["results/images/m00005.nc"].endswith(" -> 1000 bytes")
    snakemake(workdir, "--cores", "2")
    assert "1 of 2 cubes made, 1 kept" in (workdir / "logs/cubes/b0001.log").read_text()
    for block in ("b0000", "b0001", "b0002"):
        assert "1 of 2 models rendered, 1 kept" in (workdir / f"logs/images/{block}.log").read_text()
    now = mtimes(workdir / "results/images")
    remade = sorted(name for name, t in now.items() if kept.get(name) != t)
    assert remade == ["m00000.nc", "m00002.nc", "m00005.nc"] and sorted(now) == sorted(kept)
    with xr.open_dataset(truncated) as image:
        assert image.intensity.shape[0] == tiny_config()["cubes"]["rotations"]
    after = json.loads(metrics.read_text())
    for key in ("n_samples", "zncc_mean", "maxrel_percent_median", "ssim_mean"):
        assert after[key] == before[key], key
    assert planned_jobs(workdir) == {}


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


STAGES = ["sphere", "cubes", "images", "split", "stats", "train", "evaluate", "timing", "all"]


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
        "train": 2,
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
        extra = ["compare_kinds", "observations", "fit"]
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
    copy_workflow(workdir, tiny=False)
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
