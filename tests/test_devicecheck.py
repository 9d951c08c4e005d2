"""The device check (devicecheck/, scripts/gpu-check.sh): its code paths on the CPU, a clear failure
without CUDA, and sizes for every emulator kind."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest
import torch
from conftest import REPO

if str(REPO) not in sys.path:  # devicecheck/ is a folder of the repository, not of the package
    sys.path.insert(0, str(REPO))


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_the_device_check_runs_every_path_on_the_cpu(tmp_path):
    out = tmp_path / "check"
    proc = subprocess.run(
        ["bash", str(REPO / "scripts" / "gpu-check.sh"), str(out), "--device", "cpu"],
        capture_output=True,
        text=True,
        timeout=1100,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    record = json.loads((out / "gpu-check.json").read_text())
    assert record["passed"] and record["meta"]["device"] == "cpu" and record["meta"]["size"] == "small"
    checks = {(c["section"], c["name"]): c for c in record["checks"]}
    assert all(c["passed"] for c in checks.values())
    for section, name in [
        ("pipeline", "coemu render-many"),
        ("pipeline", "coemu stats"),
        ("ddp", "killed after its first checkpoint, before the end"),
        ("ddp", "the second run resumed from last.pt"),
        ("ddp", "killed and resumed run ends with the reference's weights"),
        ("pipeline", "coemu predict on cpu vs cpu"),
        ("pipeline", "timing: rows on cpu"),
        ("solver", "float64 images, cpu vs cpu"),
        ("solver", "float32 images, cpu vs cpu"),
        ("emulators", "column: bf16 autocast forward vs float32"),
        ("emulators", "coemunet: bf16 training steps, finite loss"),
    ]:
        assert (section, name) in checks, (section, name)
    assert checks[("ddp", "ranks end with identical weights")]["value"].endswith("(process group: gloo)")
    # the solver's chunked path against the CPU's chunks: a real comparison, float64 to 1e-10
    assert checks[("solver", "float64 images, cpu vs cpu")]["value"] <= 1e-10
    sections = record["sections"]
    assert {r["dtype"] for r in sections["solver"]["throughput"]} == {"float32", "float64"}
    inference = sections["emulators"]["inference"]
    assert {(r["kind"], r["precision"]) for r in inference} == {
        (k, p) for k in ("column", "coemunet") for p in ("float32", "bf16")
    }
    assert all(r["ms_per_sample"] > 0 for r in inference)
    assert all(r["samples_per_second"] > 0 for r in sections["emulators"]["training"])
    assert [row["epoch"] for row in sections["ddp"]["history"]] == [float(e) for e in range(1, 9)]
    assert "| coemu-solver | cpu |" in sections["timing stage"]["markdown"]
    table = (out / "gpu-check.md").read_text()
    assert table.startswith("# Device check: cpu (small sizes), PASSED")
    assert "| ddp | killed and resumed run ends with the reference's weights | pass |" in table


def test_stages_take_the_machine_s_cores_shared_among_torchrun_processes(tmp_path, monkeypatch):
    """A plain stage gets every core; the processes of a torchrun share them (at least 1
    thread each), whatever OMP_NUM_THREADS the check itself was started with."""
    import os

    from devicecheck.pipeline import Stages, machine_cores, threads_per_process
    from devicecheck.report import Report

    monkeypatch.setenv("OMP_NUM_THREADS", "7")  # not the stages' number
    cores = len(os.sched_getaffinity(0))
    assert machine_cores() == cores
    assert [threads_per_process(n, 16) for n in (1, 2, 3, 8, 32)] == [16, 8, 5, 2, 1]
    stages = Stages(tmp_path, {}, Report("cpu", "small"))
    assert stages.env()["OMP_NUM_THREADS"] == str(cores)
    assert stages.env(2)["OMP_NUM_THREADS"] == str(max(1, cores // 2))
    assert stages.env(4 * cores)["OMP_NUM_THREADS"] == "1"


def test_the_check_reads_csv_files_as_csv(tmp_path):
    """history.csv and timing.csv by csv.DictReader: a quoted field may hold a comma."""
    from devicecheck.pipeline import read_rows

    path = tmp_path / "timing.csv"
    path.write_text('method,device,ms_per_image_median\r\n"coemunet, paper",cpu,1.5\r\ncolumn,cpu,0.25\r\n')
    assert read_rows(path) == [
        {"method": "coemunet, paper", "device": "cpu", "ms_per_image_median": "1.5"},
        {"method": "column", "device": "cpu", "ms_per_image_median": "0.25"},
    ]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the failure on machines without CUDA")
def test_without_cuda_the_check_fails_and_writes_why(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "devicecheck", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,  # as scripts/gpu-check.sh runs it
    )
    assert proc.returncode == 1
    assert "FAILED environment: CUDA available" in proc.stderr
    record = json.loads((tmp_path / "gpu-check.json").read_text())
    assert record["passed"] is False
    assert [c["name"] for c in record["checks"]] == ["CUDA available"]
    assert "sees no CUDA device" in (tmp_path / "gpu-check.md").read_text()


def test_a_kind_the_presets_do_not_list_gets_sizes_without_an_edit():
    """A new emulator kind needs no entry in devicecheck/sizes.py: the smallest listed batch caps,
    and its constructor's defaults (paper) or the schema's (small); every registered kind has sizes."""
    from coemu.nn import emulator_kinds
    from coemu.settings import section
    from devicecheck.sizes import PRESETS

    paper, small = PRESETS["paper"], PRESETS["small"]
    assert (paper.infer_cap("new"), paper.train_cap("new"), paper.kind_settings("new")) == (1024, 256, {})
    assert (small.infer_cap("new"), small.train_cap("new"), small.kind_settings("new")) == (4, 4, {})
    assert paper.train_cap("coemunet") == 512 and small.kind_settings("column") == {"hidden": 8, "layers": 1}
    schema = section("training")["model"]
    assert dataclasses.replace(small, kinds={}).kind_settings("coemunet") == schema["coemunet"]
    for kind in emulator_kinds():
        for sizes in PRESETS.values():
            assert sizes.infer_cap(kind) >= 1 and sizes.train_cap(kind) >= 2
            assert isinstance(sizes.kind_settings(kind), dict)
