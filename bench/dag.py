"""Paper-scale DAG inspection: wall time of Snakemake dry runs on config/paper.yaml.

Side by side in one run:
  coemu      : this workflow on config/paper.yaml (10,903 models, 200 per cube and
               image job): `-n` (every job listed), `-n -q`, `--summary`,
               `--rulegraph` and `--dag` (rendered to SVG when graphviz's `dot` is
               installed)
  start-up   : `-n` again with every block's cube and image manifest in place (110 + 110
               manifests listing the 10,903 models' cube, image and face-on files, empty
               files here), which the workflow checks at start-up against their recorded
               sizes and times (coemu.io.blocks.mark_changed_blocks); and that check alone,
               in this process
  per-model  : a minimal Snakefile with the previous layout, i.e. what Snakemake costs
               when every model is a job and the fan-in rules list every model's files
               (one cube job per model, one image job per block of 200, `all` and stats
               and two training rules on the models' files; `touch` rules only)

Usage: python bench/dag.py [--repeat 2]   (run from the repository root)
Targets: `snakemake -n --configfile config/paper.yaml` within 15 s on a 2-core machine (3 s
with every manifest in place), the start-up check of the manifests' files within 1 s.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PER_MODEL = """
MODELS = [f"m{i:05d}" for i in range(10903)]
TRAIN = MODELS[: 8722]
FIT = MODELS[: 9812]
BLOCKS = {f"b{k // 200:04d}": MODELS[k : k + 200] for k in range(0, len(MODELS), 200)}
rule all:
    input:
        "results/stats.json",
        "results/pretrain.pt",
        "results/finetune.pt",
        expand("results/images/{m}.nc", m=MODELS),
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
rule stats:
    input: expand("results/cubes/{m}.nc", m=TRAIN), expand("results/images/{m}.nc", m=TRAIN)
    output: "results/stats.json"
    shell: "touch {output}"
rule pretrain:
    input: "results/stats.json", expand("results/cubes/{m}.nc", m=FIT), expand("results/faceon/{m}.nc", m=FIT)
    output: "results/pretrain.pt"
    shell: "touch {output}"
rule finetune:
    input:
        "results/pretrain.pt",
        expand("results/cubes/{m}.nc", m=FIT),
        expand("results/images/{m}.nc", m=FIT),
    output: "results/finetune.pt"
    shell: "touch {output}"
"""


def wall(cmd: list[str], cwd: Path, repeat: int) -> tuple[float, str]:
    """Median wall time (s) of ``repeat`` runs of ``cmd`` in an empty results folder, and its stdout."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
        times.append(time.perf_counter() - t0)
        if proc.returncode != 0:
            sys.exit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return statistics.median(times), proc.stdout


def write_paper_manifests(work: Path) -> tuple[int, float]:
    """Every block's cube and image manifest of config/paper.yaml in ``work``, listing empty
    per-model files made there; returns the number of files and the median time (s) of 3
    start-up checks of them."""
    import yaml

    from coemu import settings
    from coemu.hydro.catalog import model_blocks, model_ids
    from coemu.io.blocks import mark_changed_blocks, write_manifest

    config = settings.complete(yaml.safe_load((work / "config/paper.yaml").read_text()))
    blocks = model_blocks(model_ids(config["models"]), config["models"]["per_job"])
    cwd = os.getcwd()
    os.chdir(work)  # manifests list paths relative to the workflow's folder
    try:
        kinds = ("cubes", "images", "faceon")
        for kind in kinds:
            Path("results", kind).mkdir(parents=True)
        files = {}
        for block, models in blocks.items():
            for model in models:
                for kind in kinds:
                    Path("results", kind, f"{model}.nc").touch()
            cubes = {m: {"cube": f"results/cubes/{m}.nc"} for m in models}
            write_manifest(f"results/blocks/cubes/{block}.json", block, cubes)
            images = {
                m: {**cubes[m], "image": f"results/images/{m}.nc", "faceon": f"results/faceon/{m}.nc"}
                for m in models
            }
            write_manifest(f"results/blocks/images/{block}.json", block, images)
            files |= {path: 1 for entry in images.values() for path in entry.values()}
        manifests = [
            f"results/blocks/{kind}/{block}.json" for kind in ("cubes", "images") for block in blocks
        ]
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            marked = mark_changed_blocks(manifests)
            times.append(time.perf_counter() - t0)
            assert not marked, marked
    finally:
        os.chdir(cwd)
    return len(files), statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    repo = Path(__file__).resolve().parents[1]
    sm = [sys.executable, "-m", "snakemake"]
    paper = ["--configfile", "config/paper.yaml"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "coemu"  # a copy, so that no results/ of a real run are consulted
        work.mkdir()
        for name in ("Snakefile", "workflow", "config", "profiles", "envs"):
            (shutil.copytree if (repo / name).is_dir() else shutil.copy)(repo / name, work / name)
        t, out = wall([*sm, "-n", *paper], work, args.repeat)
        n_jobs = int(next(line.split()[1] for line in out.splitlines() if line.startswith("total")))
        rows.append(("coemu: -n (every job listed)", t))
        rows.append(("coemu: -n -q", wall([*sm, "-n", "-q", *paper], work, args.repeat)[0]))
        rows.append(("coemu: --summary", wall([*sm, "--summary", *paper], work, args.repeat)[0]))
        for graph in ("--rulegraph", "--dag"):
            t, dot_text = wall([*sm, graph, *paper], work, args.repeat)
            rows.append((f"coemu: {graph}", t))
            if shutil.which("dot"):
                t0 = time.perf_counter()
                svg = subprocess.run(
                    ["dot", "-Tsvg"], input=dot_text, capture_output=True, text=True, check=True
                )
                rows.append(
                    (f"  dot -Tsvg of {graph} ({len(svg.stdout) // 1000} kB)", time.perf_counter() - t0)
                )
        n_files, t_check = write_paper_manifests(work)
        t_full = wall([*sm, "-n", *paper], work, args.repeat)[0]
        rows.append((f"coemu: -n, 220 manifests of {n_files} files", t_full))
        rows.append(("  of which the start-up check (in process)", t_check))
        floor = Path(tmp) / "per-model"
        floor.mkdir()
        (floor / "Snakefile").write_text(PER_MODEL)
        t_floor, out = wall([*sm, "-n", "--cores", "1"], floor, args.repeat)
        n_floor = int(next(line.split()[1] for line in out.splitlines() if line.startswith("total")))
        rows.append((f"per-model layout: -n ({n_floor} jobs)", t_floor))
    print(f"# paper-scale dry runs, {os.cpu_count()} cores, median of {args.repeat}; coemu: {n_jobs} jobs")
    print(f"{'run':44s} {'seconds':>8s}")
    for name, t in rows:
        print(f"{name:44s} {t:8.2f}")
    t_coemu = rows[0][1]
    print(
        f"ratio per-model / coemu (-n): {t_floor / t_coemu:.1f}x; target: coemu -n < 15 s: "
        f"{'met' if t_coemu < 15 else 'NOT met'}"
    )


if __name__ == "__main__":
    main()
