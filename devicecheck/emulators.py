"""Every emulator kind at the check's geometry on the device: inference and training throughput.

For each kind (:func:`coemu.nn.emulator_kinds`, constructed from a data
description of the check's own cubes with the preset's settings, for
``coemunet`` at ``paper`` size the published widths):

* a forward pass in float32 and under bf16 autocast must give finite
  outputs of shape (batch, channels, G, G); bf16 must agree with float32 to
  ``BF16_TOLERANCE``;
* inference ms per sample at batch 1, 2, 4, ... up to the largest batch that
  fits (an error such as out of memory at a larger batch, the preset's cap,
  the step limit or the budget stop the doubling, and the report says which),
  float32 and bf16;
* training samples per second of a full step (forward, loss, backward, Adam)
  at growing batches, bf16 autocast (the paper's COEmuNet included) and float32,
  with peak GPU memory.

The outputs are compared in units of max(1, |float32 output|) (untrained
weights give outputs of any size). The inputs are the check's cubes
preprocessed, the targets their solver images: the figures are the models'
cost, not the data pipeline's.
"""

from __future__ import annotations

import contextlib
import functools
import math

import torch

from coemu.data.description import DataDescription
from coemu.evaluation.timing import time_call
from coemu.nn import emulator_kinds
from coemu.settings import section
from coemu.training.losses import EmulatorLoss
from devicecheck.report import Deadline, Report
from devicecheck.sizes import Sizes

SECTION = "emulators"
#: bf16 against float32 outputs, in units of max(1, |float32 output|).
BF16_TOLERANCE = 0.05


def _autocast(device: torch.device, bf16: bool):
    return torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


def _batch(x: torch.Tensor, batch: int, device: torch.device) -> torch.Tensor:
    return x[[i % len(x) for i in range(batch)]].to(device)


@torch.no_grad()
def _forward(model, x, device, bf16) -> torch.Tensor:
    with _autocast(device, bf16):
        return model(x)


def _peak_gib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def _search(
    measure, max_batch: int, sizes: Sizes, deadline: Deadline, reserve: float, start: int = 1
) -> tuple[list[dict], str]:
    """``measure(batch)`` -> row with ``seconds`` at start, 2 start, ...; the rows and why the doubling
    stopped."""
    rows, batch, last = [], start, 0.0
    while True:
        # the next call takes about twice the last one, repeats + 1 times (the warm-up)
        if deadline.left() < reserve + 2.0 * last * (sizes.repeats + 1):
            return rows, "budget"
        try:
            row = measure(batch)
        except RuntimeError as err:  # out of memory, or a kernel's size limit (cuDNN, int32 indexing)
            if not rows:
                raise  # at the first batch it is a failure, not a limit
            torch.cuda.empty_cache()
            return rows, f"batch {batch}: {type(err).__name__}: {str(err).splitlines()[0][:200]}"
        last = seconds = row.pop("seconds")
        rows.append(row)
        if batch * 2 > max_batch:
            return rows, f"cap {max_batch}"
        if seconds > sizes.step_limit_s:
            return rows, "step limit"
        batch *= 2


def check_kind(
    report: Report,
    kind: str,
    data: DataDescription,
    x: torch.Tensor,
    y: torch.Tensor,
    device: torch.device,
    sizes: Sizes,
    deadline: Deadline,
    reserve: float,
) -> None:
    """One kind: correctness of the forward pass, inference and training throughput (rows in the report).

    Args:
        data: the description the kind is built from (channels, grid G).
        x: preprocessed input cubes (samples, 3, G, G, G); y: their normalised images (samples, n_freq, G, G).
        deadline: this kind's share of the time; ``reserve``: seconds each search leaves at its end.
    """
    model = _build(kind, data, sizes, device).eval()
    report.record(SECTION, f"{kind}_parameters", sum(p.numel() for p in model.parameters()))
    _check_forward(report, kind, model, data, x, device)
    # inference float32 and bf16, training bf16 and float32: each a share of the time left
    shares = _Shares(deadline, reserve, searches=4)
    rows = report.rows(SECTION, "inference")
    for bf16 in (False, True):
        found, why = _search(
            functools.partial(_infer, kind, model, x, device, bf16, sizes.repeats),
            sizes.infer_cap(kind),
            sizes,
            shares.next(),
            reserve,
        )
        rows.extend(found)
        report.record(SECTION, f"{kind}_{_precision(bf16)}_inference_stop", why)
    for bf16 in (True, False):
        _measure_training(report, kind, data, x, y, device, bf16, sizes, shares.next(), reserve)
    model.cpu()  # its memory back to the allocator for the next kind
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _precision(bf16: bool) -> str:
    return "bf16" if bf16 else "float32"


def _build(kind: str, data: DataDescription, sizes: Sizes, device: torch.device) -> torch.nn.Module:
    """The kind at the preset's settings, its weights drawn after ``torch.manual_seed(0)``."""
    torch.manual_seed(0)
    return emulator_kinds()[kind].from_data(data, **sizes.kind_settings(kind)).to(device)


class _Shares:
    """Splits the time left before ``deadline`` evenly among the searches still to run."""

    def __init__(self, deadline: Deadline, reserve: float, searches: int):
        self.deadline, self.reserve, self.left = deadline, reserve, searches

    def next(self) -> Deadline:
        self.left -= 1
        return Deadline(max(0.0, self.deadline.left() - self.reserve) / (self.left + 1) + self.reserve)


def _check_forward(
    report: Report, kind: str, model, data: DataDescription, x: torch.Tensor, device: torch.device
) -> None:
    """A batch of 2 in float32 and under bf16 autocast: shape, finite values, bf16 against float32."""
    probe = _batch(x, 2, device)
    out32 = _forward(model, probe, device, False).float()
    out16 = _forward(model, probe, device, True).float()
    shape = (2, data.n_freq, data.grid, data.grid)
    report.check(
        SECTION,
        f"{kind}: float32 forward, shape and finite",
        tuple(out32.shape) == shape and bool(torch.isfinite(out32).all()),
        str(tuple(out32.shape)),
        f"{shape}, finite",
    )
    diff = float((out16 - out32).abs().max()) / max(1.0, float(out32.abs().max()))
    report.check(
        SECTION,
        f"{kind}: bf16 autocast forward vs float32",
        math.isfinite(diff) and diff <= BF16_TOLERANCE,
        diff,
        f"<= {BF16_TOLERANCE} of max(1, |float32 output|)",
    )


def _infer(kind, model, x, device, bf16: bool, repeats: int, batch: int) -> dict:
    """One inference measurement: ms per sample at ``batch`` (the median of ``repeats`` calls)."""
    xb = _batch(x, batch, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    seconds = time_call(functools.partial(_forward, model, xb, device, bf16), repeats, device)
    median = sorted(seconds)[len(seconds) // 2]
    return {
        "kind": kind,
        "precision": _precision(bf16),
        "batch": batch,
        "ms_per_sample": 1e3 * median / batch,
        "peak_gib": _peak_gib(device),
        "seconds": median,
    }


def _loss() -> EmulatorLoss:
    """The loss with the weights the pipeline's fine-tuning takes by default (the schema's)."""
    stage = section("training")["finetune"]
    return EmulatorLoss(stage["mse_weight"], stage["freq_weight"])


def _train_steps(kind, net, opt, x, y, device, bf16: bool, repeats: int, batch: int) -> dict:
    """One training measurement: samples per second of a full step (forward, loss, backward, Adam)
    at ``batch`` (the median of ``repeats`` steps), and whether every loss was finite."""
    loss_fn = _loss()
    xb, yb = _batch(x, batch, device), _batch(y, batch, device)
    losses = []

    def step():
        opt.zero_grad(set_to_none=True)
        with _autocast(device, bf16):
            prediction = net(xb)
        loss = loss_fn(prediction, yb)
        loss.backward()
        opt.step()
        losses.append(loss.detach())

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    seconds = time_call(step, repeats, device)
    median = sorted(seconds)[len(seconds) // 2]
    return {
        "kind": kind,
        "precision": _precision(bf16),
        "batch": batch,
        "samples_per_second": batch / median,
        "loss_finite": bool(torch.isfinite(torch.stack(losses)).all()),
        "peak_gib": _peak_gib(device),
        "seconds": median,
    }


def _measure_training(
    report: Report,
    kind: str,
    data: DataDescription,
    x: torch.Tensor,
    y: torch.Tensor,
    device: torch.device,
    bf16: bool,
    sizes: Sizes,
    deadline: Deadline,
    reserve: float,
) -> None:
    """Training throughput at growing batches in one precision, on a fresh model and Adam."""
    precision = _precision(bf16)
    net = _build(kind, data, sizes, device).train()
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    measure = functools.partial(_train_steps, kind, net, opt, x, y, device, bf16, sizes.repeats)
    # from batch 2: batch norm needs more than one value per channel in training
    found, why = _search(measure, sizes.train_cap(kind), sizes, deadline, reserve, start=2)
    del net, opt, measure
    report.rows(SECTION, "training").extend(found)
    report.record(SECTION, f"{kind}_{precision}_training_stop", why)
    if found:
        report.check(
            SECTION,
            f"{kind}: {precision} training steps, finite loss",
            all(r["loss_finite"] for r in found),
            f"{len(found)} batch sizes",
            "every loss finite",
        )
