"""The device check (scripts/gpu-check.sh): its code paths on the CPU, and a clear failure without CUDA."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from conftest import REPO


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


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the failure on machines without CUDA")
def test_without_cuda_the_check_fails_and_writes_why(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "coemu.devicecheck", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1
    assert "FAILED environment: CUDA available" in proc.stderr
    record = json.loads((tmp_path / "gpu-check.json").read_text())
    assert record["passed"] is False
    assert [c["name"] for c in record["checks"]] == ["CUDA available"]
    assert "sees no CUDA device" in (tmp_path / "gpu-check.md").read_text()
