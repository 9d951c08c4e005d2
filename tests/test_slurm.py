"""The SLURM profile against a real single-node SLURM (scripts/slurm-local.sh starts one).

These tests fail, not skip, where no SLURM answers: deselect them with -m "not slurm"
on a machine without one.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import pytest
from conftest import copy_run, copy_workflow, planned_jobs, snakemake, tiny_config

pytestmark = [pytest.mark.slurm, pytest.mark.workflow, pytest.mark.slow]

# What a site without an accounting database sets (and a short first status check; the plugin
# then waits 10 s longer after each check that finds no job finished).
SITE = [
    "--slurm-status-command",
    "squeue",
    "--slurm-init-seconds-before-status-checks",
    "2",
    "--slurm-no-account",
]
# "... submitted with SLURM jobid 12 (log: .../logs/slurm/rule_evaluate/kind_column/stage_finetune/12.log)."
SUBMITTED = re.compile(
    r"has been submitted with SLURM jobid (\d+) \(log: [^)]*?/rule_([A-Za-z0-9_]+)/(?:[^)/]+/)*\d+\.log\)"
)


@pytest.fixture(scope="module", autouse=True)
def slurm():
    if shutil.which("sinfo") is None:
        pytest.fail("no SLURM on this machine: run `bash scripts/slurm-local.sh` as root, or -m 'not slurm'")
    state = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True)
    if state.returncode != 0 or not re.search(r"idle|mixed|allocated", state.stdout):
        pytest.fail(f"SLURM is not ready (sinfo: {state.stdout.strip()} {state.stderr.strip()})")


def slurm_jobs(output: str) -> dict[str, list[str]]:
    """Rule name -> SLURM job ids, from Snakemake's submission messages."""
    jobs: dict[str, list[str]] = {}
    for jobid, rule in SUBMITTED.findall(output):
        jobs.setdefault(rule, []).append(jobid)
    return jobs


def job_info(jobid: str) -> dict[str, str]:
    """State, CPUs, memory, time limit and partition of a (finished) SLURM job, from squeue."""
    out = subprocess.run(
        ["squeue", "-h", "-t", "all", "-j", jobid, "-o", "%T|%C|%m|%l|%P"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    state, cpus, mem, limit, partition = out.split("|")
    return {"state": state, "cpus": cpus, "mem": mem, "limit": limit, "partition": partition}


@pytest.fixture(scope="module")
def slurm_run(tmp_path_factory):
    """The pipeline on the tiny config run once through `snakemake --profile profiles/slurm`."""
    workdir = copy_workflow(tmp_path_factory.mktemp("slurm-run"))
    proc = snakemake(workdir, "--profile", "profiles/slurm", *SITE)
    return workdir, proc.stdout + proc.stderr


def test_tiny_pipeline_through_the_slurm_profile(slurm_run):
    """`snakemake --profile profiles/slurm`: every job but `all` goes through sbatch."""
    workdir, output = slurm_run
    jobs = slurm_jobs(output)
    expected = {"sphere", "cubes", "images", "split", "stats", "train", "evaluate", "timing"}
    expected |= {"observations"}  # observations.export in config/config.yaml
    assert set(jobs) == expected and len(jobs["evaluate"]) == 2
    assert len(jobs["cubes"]) == len(jobs["images"]) == 3  # 6 models, 2 per job
    infos = {rule: job_info(ids[0]) for rule, ids in jobs.items()}
    assert {info["state"] for info in infos.values()} == {"COMPLETED"}
    # the rules' resources became the jobs' requests, in the default partition
    assert infos["train"] == {
        "state": "COMPLETED",
        "cpus": "2",
        "mem": "4000M",
        "limit": "30:00",
        "partition": "debug",
    }
    assert infos["cubes"]["cpus"] == "1" and infos["images"]["cpus"] == "2"
    # and the outputs are those of a local run
    tiny = tiny_config()
    metrics = json.loads((workdir / "results/evaluation/column/finetune/metrics.json").read_text())
    assert metrics["n_samples"] == tiny["cubes"]["rotations"] == 2  # 1 test model
    assert sorted(p.stem for p in (workdir / "results/images").glob("*.nc")) == [
        f"m{i:05d}" for i in range(tiny["models"]["count"])
    ]
    assert planned_jobs(workdir) == {}


def test_set_resources_and_forcerun_address_a_stage(slurm_run, tmp_path):
    """The README's way to send a stage to another partition, with a forced rerun of that
    stage: every image job in partition gpu, then what follows them; no cube job (on a copy of
    the SLURM run)."""
    workdir = copy_run(slurm_run[0], tmp_path / "run")
    proc = snakemake(
        workdir,
        "--profile",
        "profiles/slurm",
        *SITE,
        "--forcerun",
        "images",
        "--set-resources",
        "images:slurm_partition=gpu",
    )
    jobs = slurm_jobs(proc.stdout + proc.stderr)
    assert set(jobs) == {"images", "stats", "train", "evaluate", "timing", "observations"}
    assert len(jobs["images"]) == 3
    assert {job_info(i)["partition"] for i in jobs["images"]} == {"gpu"}
    assert {job_info(ids[0])["partition"] for rule, ids in jobs.items() if rule != "images"} == {"debug"}
    assert planned_jobs(workdir) == {}


def test_profile_by_name_from_the_user_config_directory(tmp_path):
    """`snakemake --profile slurm` once profiles/slurm is linked into the user's config dir."""
    (tmp_path / "run").mkdir()
    workdir = copy_workflow(tmp_path / "run")
    config_home = tmp_path / "config"
    (config_home / "snakemake").mkdir(parents=True)
    os.symlink(workdir / "profiles" / "slurm", config_home / "snakemake" / "slurm")
    env = {"XDG_CONFIG_HOME": str(config_home)}
    proc = snakemake(workdir, "results/blocks/cubes/b0000.json", "--profile", "slurm", *SITE, env=env)
    out = proc.stdout + proc.stderr
    assert "Using profiles slurm" in out or "Using profile slurm" in out
    jobs = slurm_jobs(out)
    assert set(jobs) == {"sphere", "cubes"}
    assert all(job_info(ids[0])["state"] == "COMPLETED" for ids in jobs.values())
    assert len(list((workdir / "results/cubes").glob("*.nc"))) == tiny_config()["models"]["per_job"]


def test_statistics_on_a_dask_slurm_cluster(tmp_path):
    """`dask.cluster: slurm`: the Dask workers are SLURM jobs (dask_jobqueue.SLURMCluster), over TLS."""
    import numpy as np
    from test_stats import FLOORS, check_equal, collect_refused_clients, numpy_reference, write_pair

    from coemu.stats.cluster import dask_client
    from coemu.stats.global_stats import global_statistics

    rng = np.random.default_rng(7)
    names = [f"m{i:05d}" for i in range(3)]
    pairs = [write_pair(tmp_path, name, rng) for name in names]
    job_name = f"coemu-dask-{os.getpid()}"
    slurm = {
        "jobs": 1,
        "cores": 1,
        "processes": 1,
        "memory": "1GiB",
        "walltime": "00:10:00",
        "job_name": job_name,
        "log_directory": str(tmp_path / "dask-logs"),
    }
    with dask_client({"cluster": "slurm", "slurm": slurm}) as client:
        client.wait_for_workers(1, timeout=180)
        # TLS with temporary credentials (dask.security auto): a plain client is refused
        address = client.scheduler.address
        assert address.startswith("tls://")
        from distributed import Client

        for plain in (address, address.replace("tls://", "tcp://")):
            with pytest.raises(Exception):  # noqa: B017 (refused, whatever the layer that refuses)
                Client(plain, timeout=5)
            collect_refused_clients()
        running = subprocess.run(
            ["squeue", "-h", "-n", job_name, "-o", "%T"], capture_output=True, text=True, check=True
        ).stdout.split()
        stats = global_statistics(
            client,
            [str(tmp_path / "cubes" / f"{n}.nc") for n in names],
            [str(tmp_path / "images" / f"{n}.nc") for n in names],
            FLOORS,
        )
    assert running == ["RUNNING"]  # the worker was a SLURM job while the statistics ran
    check_equal(stats["cubes"]["temperature"], numpy_reference([c["temperature"].values for c, _ in pairs]))
    check_equal(stats["images"]["intensity"], numpy_reference([i["intensity"].values for _, i in pairs]))
