"""The emulator kinds side by side on one data set, one split and one wall-clock budget.

For every kind (``--kinds``): parameters; training samples per second; the
held-out accuracy after fixed wall-clock budgets (a learning curve: MaxRel
median, ZNCC mean and SSIM mean on every sample of the test models, every
``--eval-every`` minutes of training, evaluation time not counted); inference
ms per sample at batch 1 and at a large batch; and the solver's ms per image
of the same cubes on the same device. Each kind trains with Adam on the MSE
of the normalised targets, a cosine learning rate over its budget, the same
samples (fine-tuning data: every rotation and channel of the training models)
and the same seed.

The data set is a pipeline's: make one with the configuration you want to
measure (``bench/emulators-paper.yaml`` is the paper's geometry, 64^3 of a
128-cell box and 7 channels), in a checkout or worktree of its own::

    snakemake --cores 2 --configfile bench/emulators-paper.yaml results/stats/global.json
    python bench/emulators.py --workdir . --minutes 60 --out bench/results/emulators-DATE.json

Goal (issue 15): within 60 minutes of training on 2 CPU cores at paper
geometry the best kind beats table 1 on held-out synthetic models (MaxRel
median <= 6.9 %, ZNCC >= 0.97, SSIM >= 0.91); the table says whether it was met.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import math
import os
import time
from pathlib import Path

import torch

from coemu.data.dataset import EmulatorDataset
from coemu.data.description import describe
from coemu.data.transform import Preprocessing
from coemu.evaluation.metrics import maxrel_percent, ssim, zncc
from coemu.io.blocks import read_manifests
from coemu.io.validation import read_json
from coemu.nn import emulator_kinds
from coemu.rt.lamda import load_line
from coemu.rt.solver import line_images
from coemu.rt.spectral import velocity_to_frequency

TABLE1 = {"maxrel": 6.9, "zncc": 0.97, "ssim": 0.91}
DEFAULTS = {
    "column": {"settings": {"hidden": 32, "layers": 2}, "batch": 4, "lr": 1.0e-2},
    "coemunet": {"settings": {}, "batch": 8, "lr": 1.0e-3},
}


def load(workdir: Path):
    split = read_json(workdir / "results/split.json")
    prep = Preprocessing.from_file(workdir / "results/stats/global.json")
    files = read_manifests(sorted(glob.glob(str(workdir / "results/blocks/images/*.json"))))
    train = EmulatorDataset(split["train"], files, prep, "finetune")
    test = EmulatorDataset(split["test"], files, prep, "finetune")
    first = files[split["train"][0]]
    data = describe(first["image"], first["cube"], prep, read_json(workdir / "results/stats/global.json"))
    stack = lambda ds: [torch.stack(t) for t in zip(*(ds[i] for i in range(len(ds))), strict=True)]  # noqa: E731
    return data, prep, stack(train), stack(test), split


def autocast(device: torch.device, bf16: bool):
    return torch.autocast("cuda", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


@torch.no_grad()
def evaluate(model, prep, test, device, bf16, batch=8) -> dict:
    model.eval()
    x, y = test
    preds = []
    for i in range(0, len(x), batch):
        with autocast(device, bf16):
            preds.append(model(x[i : i + batch].to(device)).float().cpu())
    model.train()
    p = torch.cat(preds).double()
    t = y.double()
    physical = prep.intensity_inverse(t), prep.intensity_inverse(p)
    return {
        "maxrel_median": float(maxrel_percent(*physical, prep.intensity_floor).median()),
        "zncc_mean": float(zncc(t, p).mean()),
        "ssim_mean": float(ssim(t.float(), p.float()).mean()),
    }


def train_curve(kind, model, prep, train, test, device, minutes, eval_every, batch, lr, bf16, seed):
    """Train for ``minutes`` of wall clock (evaluations not counted); the learning curve rows."""
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    x, y = train
    budget, spent, samples, rows = 60.0 * minutes, 0.0, 0, []
    next_eval = 60.0 * eval_every
    while spent < budget:
        perm = torch.randperm(len(x))
        for i in range(0, len(x) - batch + 1, batch):
            t0 = time.perf_counter()
            for g in opt.param_groups:
                g["lr"] = lr * 0.5 * (1.0 + math.cos(math.pi * min(spent / budget, 1.0)))
            idx = perm[i : i + batch]
            with autocast(device, bf16):
                prediction = model(x[idx].to(device))
            loss = torch.nn.functional.mse_loss(prediction.float(), y[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if device.type == "cuda":
                torch.cuda.synchronize()
            spent += time.perf_counter() - t0
            samples += batch
            if spent >= next_eval or spent >= budget:
                row = {"kind": kind, "minutes": spent / 60.0, "samples_seen": samples} | evaluate(
                    model, prep, test, device, bf16
                )
                row["samples_per_second"] = samples / spent
                rows.append(row)
                print(json.dumps(row), flush=True)
                next_eval += 60.0 * eval_every
            if spent >= budget:
                break
    return rows


@torch.no_grad()
def inference_ms(model, test, device, batch, bf16, repeats=3) -> float:
    model.eval()
    x = test[0][[i % len(test[0]) for i in range(batch)]].to(device)
    times = []
    for r in range(repeats + 1):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with autocast(device, bf16):
            model(x)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if r:
            times.append(time.perf_counter() - t0)
    return 1e3 * sorted(times)[len(times) // 2] / batch


def solver_ms(workdir: Path, split, data, device, n=4) -> float:
    import xarray as xr

    files = read_manifests(sorted(glob.glob(str(workdir / "results/blocks/images/*.json"))))
    with xr.open_dataset(files[split["test"][0]]["cube"]) as cube:
        arrays = [
            torch.as_tensor(cube[k].values[:n], device=device)
            for k in ("temperature", "number_density_co", "velocity_z")
        ]
    line = load_line(data.molecule, data.transition, data.datafile or None)
    freqs = velocity_to_frequency(data.channel_velocities, line.frequency)
    line_images(line, *(a[:1] for a in arrays), freqs, data.cell_size)  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for i in range(arrays[0].shape[0]):
        line_images(line, *(a[i : i + 1] for a in arrays), freqs, data.cell_size)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return 1e3 * (time.perf_counter() - t0) / arrays[0].shape[0]


def markdown(results: dict, meta: dict) -> str:
    lines = [
        f"# Emulator kinds: {meta['grid']}^3, {meta['n_freq']} channels, {meta['train_samples']} training"
        f" samples ({meta['train_models']} models), {meta['test_samples']} test samples"
        f" ({meta['test_models']} held-out models); {meta['device']}, {meta['threads']} threads,"
        f" {meta['minutes']} min per kind; solver {meta['solver_ms']:.1f} ms per image",
        "",
        "| kind | parameters | train samples/s | infer ms/sample batch 1 | infer ms/sample batch"
        f" {meta['large_batch']} | minutes | MaxRel median (%) | ZNCC mean | SSIM mean | table 1 met |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for kind, r in results.items():
        for row in r["curve"]:
            met = (
                row["maxrel_median"] <= TABLE1["maxrel"]
                and row["zncc_mean"] >= TABLE1["zncc"]
                and row["ssim_mean"] >= TABLE1["ssim"]
            )
            lines.append(
                f"| {kind} | {r['parameters']:,} | {row['samples_per_second']:.2f} | {r['ms_batch1']:.1f} |"
                f" {r['ms_large']:.1f} | {row['minutes']:.1f} | {row['maxrel_median']:.2f} |"
                f" {row['zncc_mean']:.4f} | {row['ssim_mean']:.4f} | {'yes' if met else 'no'} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", type=Path, default=Path("."), help="folder holding a pipeline's results/")
    ap.add_argument("--kinds", nargs="+", default=["column", "coemunet"])
    ap.add_argument("--minutes", type=float, default=10.0, help="training wall clock per kind")
    ap.add_argument("--eval-every", type=float, default=2.0, help="minutes between test evaluations")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--bf16", action="store_true", help="bf16 autocast (CUDA)")
    ap.add_argument("--large-batch", type=int, default=8)
    ap.add_argument("--settings", type=json.loads, default={}, help='JSON {"kind": {constructor args}}')
    ap.add_argument("--batch", type=json.loads, default={}, help='JSON {"kind": batch size}')
    ap.add_argument("--lr", type=json.loads, default={}, help='JSON {"kind": learning rate}')
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--out", type=Path, help="JSON of every figure (the table goes beside it as .md)")
    args = ap.parse_args()
    out = args.out.resolve() if args.out else None
    os.chdir(args.workdir)  # the manifests hold paths relative to the pipeline's folder
    args.workdir = Path(".")
    device = torch.device(args.device)
    data, prep, train, test, split = load(args.workdir)
    meta = {
        "grid": data.grid,
        "n_freq": data.n_freq,
        "train_samples": len(train[0]),
        "train_models": len(split["train"]),
        "test_samples": len(test[0]),
        "test_models": len(split["test"]),
        "device": torch.cuda.get_device_name() if device.type == "cuda" else f"cpu ({os.cpu_count()} cores)",
        "threads": torch.get_num_threads(),
        "minutes": args.minutes,
        "large_batch": args.large_batch,
        "torch": torch.__version__,
        "solver_ms": solver_ms(args.workdir, split, data, device),
    }
    results = {}
    for kind in args.kinds:
        d = DEFAULTS.get(kind, {"settings": {}, "batch": 4, "lr": 1e-3})
        torch.manual_seed(args.seed)
        model = emulator_kinds()[kind].from_data(data, **args.settings.get(kind, d["settings"])).to(device)
        curve = train_curve(
            kind,
            model,
            prep,
            train,
            test,
            device,
            args.minutes,
            args.eval_every,
            args.batch.get(kind, d["batch"]),
            args.lr.get(kind, d["lr"]),
            args.bf16,
            args.seed,
        )
        results[kind] = {
            "parameters": sum(p.numel() for p in model.parameters()),
            "kwargs": {k: v for k, v in model.kwargs.items() if k != "preprocessing"},
            "curve": curve,
            "ms_batch1": inference_ms(model, test, device, 1, args.bf16),
            "ms_large": inference_ms(model, test, device, args.large_batch, args.bf16),
        }
    table = markdown(results, meta)
    print(table)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"meta": meta, "results": results}, indent=1))
        out.with_suffix(".md").write_text(table)


if __name__ == "__main__":
    main()
