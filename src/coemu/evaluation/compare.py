"""One table of every trained emulator kind's evaluation (``coemu compare``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from coemu.io.validation import read_json


def compare_table(metrics: Sequence[str | Path]) -> str:
    """Markdown rows of kind, stage, test models, samples, MaxRel median and p95, ZNCC, SSIM.

    Args:
        metrics: metrics.json files written by :func:`coemu.evaluation.evaluate.evaluate`.
    """
    lines = [
        "| kind | stage | test models | samples | MaxRel median (%) | MaxRel p95 (%) | ZNCC mean |"
        " SSIM mean | file |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for path in metrics:
        m = read_json(path)
        lines.append(
            f"| {m.get('kind', '')} | {m.get('stage', '')} | {m.get('n_test_models', '')} |"
            f" {m['n_samples']} | {m['maxrel_percent_median']:.2f} | {m['maxrel_percent_p95']:.2f} |"
            f" {m['zncc_mean']:.4f} | {m['ssim_mean']:.4f} | {path} |"
        )
    return "\n".join(lines) + "\n"


def write_compare_table(metrics: Sequence[str | Path], out: str | Path) -> str:
    """:func:`compare_table` written atomically to ``out``."""
    from coemu.io.atomic import atomic_output

    text = compare_table(metrics)
    with atomic_output(out) as tmp:
        tmp.write_text(text)
    return text
