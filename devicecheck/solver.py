"""The LTE solver on the device: agreement with the CPU, images per second, memory against its sizing.

* Agreement: the same cubes rendered on the device and on the CPU, float64 and
  float32, as max |I_device - I_cpu| / max I_cpu (limits 1e-10 and 1e-4).
  With ``--device cpu`` the "device" run uses a memory budget 8 times smaller
  than the CPU's chunks, so the chunked path is what is compared.
* Throughput: batches of 1, 2, 4, ... cubes (the check's cubes repeated) until
  the rate stops rising by 5 %, memory runs out, a call takes longer than the
  step limit or the budget runs short; images per second and ms per image at
  each, float32 and float64, ``torch.cuda.synchronize`` around every call.
* Memory (CUDA): the peak allocated during a call above what its inputs and
  output hold, per (ray node x channel) element of one chunk, against the
  :data:`coemu.rt.solver.TEMPORARIES_PER_ELEMENT` the chunk sizing assumes.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

from coemu.evaluation.timing import time_call
from coemu.rt.lamda import Line
from coemu.rt.solver import (
    CPU_CHUNK_ELEMENTS,
    TEMPORARIES_PER_ELEMENT,
    chunk_elements,
    line_images,
    rays_per_chunk,
)
from devicecheck.report import Deadline, Report
from devicecheck.sizes import Sizes

SECTION = "solver"
TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-4}
VARIABLES = ("temperature", "number_density", "velocity_z")


def _name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def tensors(arrays: dict[str, np.ndarray], dtype: torch.dtype, device: torch.device, idx=None):
    return [
        torch.as_tensor(arrays[k] if idx is None else arrays[k][idx], dtype=dtype, device=device)
        for k in VARIABLES
    ]


def check_agreement(report: Report, line: Line, arrays, freqs, dx: float, device: torch.device) -> None:
    """Device against CPU on the same cubes, float64 and float32 (and float32 against float64)."""
    cpu = torch.device("cpu")
    # on the CPU, compare the chunked path: a budget of an eighth of the CPU's chunk
    budget = None if device.type == "cuda" else CPU_CHUNK_ELEMENTS * TEMPORARIES_PER_ELEMENT // 8
    reference = {}
    for dtype in (torch.float64, torch.float32):
        ref = line_images(line, *tensors(arrays, dtype, cpu), freqs, dx).double()
        dev = line_images(line, *tensors(arrays, dtype, device), freqs, dx, memory_budget=budget)
        dev = dev.double().cpu()
        scale = float(ref.abs().max())
        err = float((dev - ref).abs().max()) / scale
        limit = TOLERANCE[dtype]
        report.check(
            SECTION,
            f"{_name(dtype)} images, {device.type} vs cpu",
            err <= limit and math.isfinite(err),
            err,
            f"<= {limit:g} of the peak",
            f"{ref.shape[0]} cubes {tuple(ref.shape[1:3])}, {ref.shape[-1]} channels",
        )
        reference[dtype] = dev
    precision = float((reference[torch.float32] - reference[torch.float64]).abs().max())
    report.record(
        SECTION, "float32_vs_float64_of_peak", precision / float(reference[torch.float64].abs().max())
    )


def _peak_per_element(inputs, freqs, device: torch.device, memory_budget=None) -> float | None:
    """Peak temporaries of the last call per (ray node x channel) element of one chunk, in item sizes."""
    if device.type != "cuda":
        return None
    t = inputs[0]
    rays, n_z = math.prod(t.shape[:-1]), t.shape[-1]
    chunk = rays_per_chunk(device, t.element_size(), rays, n_z, len(freqs), memory_budget)
    output = rays * len(freqs) * t.element_size()
    extra = torch.cuda.max_memory_allocated(device) - torch.cuda.memory_allocated(device) - output
    return extra / (chunk * n_z * len(freqs) * t.element_size())


def measure_throughput(
    report: Report,
    line: Line,
    arrays,
    freqs,
    dx: float,
    device: torch.device,
    sizes: Sizes,
    deadline: Deadline,
) -> None:
    """Images per second at growing batch sizes, float32 and float64; the best batch of each."""
    rows = report.rows(SECTION, "throughput")
    n_cubes = arrays["temperature"].shape[0]
    worst_ratio = 0.0
    for i, dtype in enumerate((torch.float32, torch.float64)):
        share = Deadline(max(0.0, deadline.left()) / (2 - i))
        best, batch, stalled, last = None, 1, 0, 0.0
        # the next call takes about twice the last one, repeats + 1 times (the warm-up)
        while batch <= sizes.solver_max_batch and share.left() > 2.0 * last * (sizes.repeats + 1):
            inputs = tensors(arrays, dtype, device, [i % n_cubes for i in range(batch)])
            # the default budget (a quarter of the free memory on CUDA), fixed for the timed calls so
            # that the chunk the measurement divides by is the one the calls used
            budget = chunk_elements(device, inputs[0].element_size()) * TEMPORARIES_PER_ELEMENT
            budget *= inputs[0].element_size()
            solve = functools.partial(line_images, line, *inputs, freqs, dx, memory_budget=budget)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            try:
                seconds = time_call(solve, sizes.repeats, device)
            except RuntimeError as err:  # out of memory at a larger batch: the limit, recorded
                if batch == 1:
                    raise
                note = f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"
                rows.append({"dtype": _name(dtype), "batch": batch, "note": note})
                break
            finally:
                del solve
            last = median = sorted(seconds)[len(seconds) // 2]
            row = {
                "dtype": _name(dtype),
                "batch": batch,
                "images_per_second": batch / median,
                "ms_per_image": 1e3 * median / batch,
                "peak_gib": torch.cuda.max_memory_allocated(device) / 2**30
                if device.type == "cuda"
                else None,
                "temporaries_per_element": _peak_per_element(inputs, freqs, device, budget),
            }
            rows.append(row)
            if row["temporaries_per_element"] is not None:
                worst_ratio = max(worst_ratio, row["temporaries_per_element"])
            if best is not None and row["images_per_second"] < 1.05 * best["images_per_second"]:
                stalled += 1
            else:
                stalled = 0
            if best is None or row["images_per_second"] > best["images_per_second"]:
                best = row
            del inputs
            if stalled >= 2 or median > sizes.step_limit_s:
                break
            batch *= 2
        if best is not None:
            report.record(
                SECTION,
                f"best_{_name(dtype)}",
                {k: best[k] for k in ("batch", "images_per_second", "ms_per_image")},
            )
        if device.type == "cuda":
            torch.cuda.empty_cache()
    if device.type == "cuda":
        report.check(
            SECTION,
            "chunk sizing: peak temporaries per element",
            0 < worst_ratio <= TEMPORARIES_PER_ELEMENT,
            worst_ratio,
            f"<= {TEMPORARIES_PER_ELEMENT} (TEMPORARIES_PER_ELEMENT)",
            "peak allocated in a call above its inputs and output, per (ray node x channel) element"
            " of a chunk",
        )
