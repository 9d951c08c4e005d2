"""The device check's record: pass/fail checks and measurements, written as one JSON and one Markdown file."""

from __future__ import annotations

import json
import math
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from coemu.io.atomic import atomic_output
from coemu.io.validation import plain


@dataclass
class Check:
    """One pass/fail check: ``value`` against ``limit`` (text such as ``<= 1e-10 of the peak``)."""

    section: str
    name: str
    passed: bool
    value: float | int | str | None = None
    limit: str = ""
    detail: str = ""


class Deadline:
    """Seconds left of the check's budget (the throughput searches stop when it runs short)."""

    def __init__(self, seconds: float):
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()


class Report:
    """Checks and measurements of one run (``meta``: the machine and the versions)."""

    def __init__(self, device: str, size: str):
        self.meta: dict[str, Any] = {"device": device, "size": size, **environment()}
        self.checks: list[Check] = []
        self.sections: dict[str, dict[str, Any]] = {}

    def check(
        self, section: str, name: str, passed: bool, value=None, limit: str = "", detail: str = ""
    ) -> bool:
        self.checks.append(Check(section, name, bool(passed), plain(value), limit, detail))
        return bool(passed)

    def record(self, section: str, key: str, value: Any) -> None:
        self.sections.setdefault(section, {})[key] = plain(value)

    def rows(self, section: str, key: str) -> list[dict]:
        return self.sections.setdefault(section, {}).setdefault(key, [])

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.passed for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "meta": self.meta,
            "passed": self.passed,
            "checks": [asdict(c) for c in self.checks],
            "sections": self.sections,
        }

    def write(self, out_dir: str | Path, name: str = "gpu-check") -> tuple[Path, Path]:
        """``name``.json and ``name``.md in ``out_dir`` (atomically; the folder is made)."""
        out_dir = Path(out_dir)
        paths = out_dir / f"{name}.json", out_dir / f"{name}.md"
        with atomic_output(paths[0]) as tmp:
            tmp.write_text(json.dumps(self.to_dict(), indent=1, allow_nan=True) + "\n")
        with atomic_output(paths[1]) as tmp:
            tmp.write_text(markdown(self.to_dict()))
        return paths


def environment() -> dict[str, Any]:
    """The GPU(s), torch, CUDA, cuDNN and NCCL versions, the CPU and Python."""
    meta: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "python": sys.version.split()[0],
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "cuda_available": torch.cuda.is_available(),
    }
    if torch.cuda.is_available():
        try:
            meta |= _gpu()
        except Exception as err:  # a version query that fails must not stop the check
            meta["gpu_error"] = repr(err)
    return meta


def _gpu() -> dict[str, Any]:
    """The first GPU's name, memory and compute capability; cuDNN, NCCL and TF32 settings."""
    props = torch.cuda.get_device_properties(0)
    nccl = torch.cuda.nccl.version() if hasattr(torch.cuda, "nccl") else None
    return {
        "gpu": torch.cuda.get_device_name(0),
        "gpu_count": torch.cuda.device_count(),
        "gpu_memory_gib": props.total_memory / 2**30,
        "compute_capability": f"{props.major}.{props.minor}",
        "cudnn": torch.backends.cudnn.version(),
        "nccl": ".".join(map(str, nccl)) if isinstance(nccl, tuple) else nccl,
        "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
        "tf32_cudnn": torch.backends.cudnn.allow_tf32,
    }


def _fmt(value: Any) -> str:
    """A table cell: numbers to 4 significant digits, '|' escaped."""
    if isinstance(value, str):
        return value.replace("|", "\\|")
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        return f"{value:.3g}" if abs(value) < 1e-2 or abs(value) >= 1e5 else f"{value:.4g}"
    return str(value)


def _table(rows: list[dict], columns: list[str] | None = None) -> list[str]:
    if not rows:
        return []
    columns = columns or list(dict.fromkeys(k for r in rows for k in r))
    lines = ["| " + " | ".join(columns) + " |", "| " + " | ".join("---" for _ in columns) + " |"]
    lines += ["| " + " | ".join(_fmt(r.get(c)) for c in columns) + " |" for r in rows]
    return lines + [""]


def markdown(report: dict[str, Any]) -> str:
    """The record as Markdown: the machine, every check, then each section's measurements."""
    m = report["meta"]
    gpu = m.get("gpu", "none")
    lines = [
        f"# Device check: {m['device']} ({m['size']} sizes), {'PASSED' if report['passed'] else 'FAILED'}",
        "",
        f"GPU: {gpu}"
        + (
            f" x {m['gpu_count']}, {m['gpu_memory_gib']:.0f} GiB, compute {m['compute_capability']}"
            if gpu != "none"
            else ""
        )
        + f"; torch {m['torch']}, CUDA {m['cuda']}"
        + (f", cuDNN {m.get('cudnn')}, NCCL {m.get('nccl')}" if gpu != "none" else "")
        + f"; CPU {m['cpu']}, {m['cpu_count']} cores, {m['threads']} threads"
        + f"; Python {m['python']}; {m['date']}.",
        "",
        "## Checks",
        "",
    ]
    lines += _table(
        [
            {
                "section": c["section"],
                "check": c["name"],
                "result": "pass" if c["passed"] else "FAIL",
                "value": c["value"],
                "limit": c["limit"],
                "detail": c["detail"].replace("\n", " ")[-300:],
            }
            for c in report["checks"]
        ]
    )
    for section, content in report["sections"].items():
        lines += [f"## {section}", ""]
        scalars = {k: v for k, v in content.items() if not isinstance(v, (list, dict)) and k != "markdown"}
        if scalars:
            lines += [f"- {k}: {_fmt(v)}" for k, v in scalars.items()] + [""]
        for key, value in content.items():
            if isinstance(value, list) and value and isinstance(value[0], dict):
                lines += [f"### {key}", ""] + _table(value)
            elif isinstance(value, dict):
                lines += [f"- {key}: {json.dumps(value)}", ""]
        if "markdown" in content:
            lines += [content["markdown"], ""]
    return "\n".join(lines).rstrip() + "\n"
