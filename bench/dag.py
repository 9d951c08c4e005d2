"""Paper-scale DAG inspection: wall time of Snakemake dry runs on config/paper.yaml.

Side by side in one run:
  coemu   : this workflow, `snakemake -n -q --configfile config/paper.yaml`
            and `snakemake --summary --configfile config/paper.yaml`
  floor   : a minimal Snakefile with the same jobs (one fan-in, one cube job per
            model, one image job per block of 200 models, `touch` rules, no
            log/benchmark/resources/conda), i.e. what
            Snakemake itself costs for a DAG of this size

Usage: python bench/dag.py [--repeat 2]   (run from the repository root)
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FLOOR = """
MODELS = [f"m{i:05d}" for i in range(10903)]
BLOCKS = {f"b{k // 200:04d}": MODELS[k : k + 200] for k in range(0, len(MODELS), 200)}
rule all:
    input: expand("results/{k}/{m}.nc", k=["images", "faceon"], m=MODELS)
rule sphere:
    output: "results/sphere.json"
    shell: "touch {output}"
rule cubes:
    input: "results/sphere.json"
    output: "results/cubes/{m}.nc"
    shell: "touch {output}"
for block, models in BLOCKS.items():
    rule:
        name: f"images_{block}"
        input: expand("results/cubes/{m}.nc", m=models)
        output: expand("results/images/{m}.nc", m=models), expand("results/faceon/{m}.nc", m=models)
        shell: "touch {output}"
"""


def wall(cmd: list[str], cwd: Path, repeat: int) -> tuple[float, str]:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
        times.append(time.perf_counter() - t0)
        if proc.returncode != 0:
            sys.exit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return statistics.median(times), proc.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    repo = Path(__file__).resolve().parents[1]
    sm = [sys.executable, "-m", "snakemake"]
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "Snakefile").write_text(FLOOR)
        t_floor, _ = wall([*sm, "-n", "-q", "--cores", "1"], Path(tmp), args.repeat)
    t_quiet, _ = wall([*sm, "-n", "-q", "--configfile", "config/paper.yaml"], repo, args.repeat)
    t_summary, out = wall([*sm, "--summary", "--configfile", "config/paper.yaml"], repo, args.repeat)
    n_cubes = sum(line.startswith("results/cubes/") for line in out.splitlines())
    n_images = sum(line.startswith("results/images/") for line in out.splitlines())
    print(f"# paper-scale dry runs, {os.cpu_count()} cores, median of {args.repeat}")
    print(f"outputs listed by --summary: {n_cubes} cube files, {n_images} image files")
    print(f"{'run':34s} {'seconds':>8s} {'ms/job':>7s}")
    n_jobs = n_cubes + -(-n_images // 200) + 2
    for name, t in (
        ("floor: minimal Snakefile, -n -q", t_floor),
        ("coemu: -n -q", t_quiet),
        ("coemu: --summary", t_summary),
    ):
        print(f"{name:34s} {t:8.2f} {1e3 * t / n_jobs:7.2f}")
    print(f"ratio coemu/floor (-n -q): {t_quiet / t_floor:.2f}x; target: < 15 s")


if __name__ == "__main__":
    main()
