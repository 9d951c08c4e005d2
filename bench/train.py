"""COEmuNet training throughput: samples per second of a full step (forward, loss, backward, Adam).

The paper-size model (143,294,737 parameters) and the default config's small
model side by side, on the CPU (threads as torch sets them) and, with --gpu,
on CUDA at the paper's per-GPU batch (--gpu-batch, default 512; bf16
autocast with --bf16). Inputs are random tensors of the real shapes, so the
figures are the model's cost, not the data pipeline's.

Usage: python bench/train.py [--batch 4] [--steps 3] [--gpu] [--gpu-batch 512] [--bf16]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import time

import torch
import yaml

from coemu.nn import COEmuNet
from coemu.training.losses import EmulatorLoss


def throughput(model, batch: int, steps: int, device: str, bf16: bool = False) -> float:
    model = model.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    loss_fn = EmulatorLoss(0.8, 0.2)  # the paper's weights (config/paper.yaml)
    x = torch.randn(batch, 3, model.grid, model.grid, model.grid, device=device)
    y = torch.rand(batch, model.n_freq, model.grid, model.grid, device=device)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()

    def step():
        opt.zero_grad(set_to_none=True)
        with autocast:
            prediction = model(x)
        loss_fn(prediction, y).backward()
        opt.step()

    step()  # warm-up
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    return batch * steps / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--gpu", action="store_true")
    ap.add_argument("--gpu-batch", type=int, default=512)
    ap.add_argument("--bf16", action="store_true")
    args = ap.parse_args()
    with open("config/config.yaml") as f:
        small = yaml.safe_load(f)["training"]["model"]["coemunet"]
    models = {"paper": {}, "default config": small}
    print(
        f"# COEmuNet training step, 7 channels, 64^3; {os.cpu_count()} cores, "
        f"{torch.get_num_threads()} threads"
    )
    rates = {}
    for name, widths in models.items():
        torch.manual_seed(0)
        model = COEmuNet(n_freq=7, **widths)
        n = sum(p.numel() for p in model.parameters())
        rates[name] = throughput(model, args.batch, args.steps, "cpu")
        print(f"{name:15s} {n:12,d} parameters  batch {args.batch}: {rates[name]:8.2f} samples/s (CPU)")
    print(f"default / paper: {rates['default config'] / rates['paper']:.1f}x")
    if args.gpu and torch.cuda.is_available():
        for name, widths in models.items():
            torch.manual_seed(0)
            rate = throughput(COEmuNet(n_freq=7, **widths), args.gpu_batch, args.steps, "cuda", args.bf16)
            print(
                f"{name:15s} batch {args.gpu_batch}: {rate:8.1f} samples/s on {torch.cuda.get_device_name()}"
            )


if __name__ == "__main__":
    main()
