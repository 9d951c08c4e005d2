"""The device check from start to end: the pipeline's stages, the solver, the emulators; one record.

The order puts the pass/fail checks first (the pipeline's stages, DDP, the
solver's agreement) and the measurements that the time budget can cut short
last (throughput searches). A section that raises is a failed check with
its traceback; the others still run.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
import traceback
from pathlib import Path

import torch

from coemu.data.description import DataDescription
from coemu.data.transform import Preprocessing
from coemu.nn import emulator_kinds
from devicecheck import emulators, pipeline, solver
from devicecheck.report import Deadline, Report
from devicecheck.sizes import PRESETS, Sizes

log = logging.getLogger(__name__)
SEED = 1234
MOLECULE, TRANSITION, SPACING = "CO", 1, 300.0  # CO J=2-1, channels 300 m/s apart
#: The parts of the check, in the order they run.
SECTIONS = ("pipeline", "solver", "emulators")
#: Of the time left after the pipeline's stages: the solver's share (the emulators take the rest).
SOLVER_SHARE = 0.35


def _section(report: Report, name: str, fn, *args):
    """``fn(*args)``; an exception becomes a failed check of section ``name``."""
    log.info("device check: %s", name)
    t0 = time.perf_counter()
    try:
        return fn(*args)
    except Exception:
        report.check(name, "ran to the end", False, detail=traceback.format_exc()[-3000:])
        log.exception("device check: %s raised", name)
        return None
    finally:
        report.record(name, "seconds", time.perf_counter() - t0)


def check_cubes(sizes: Sizes):
    """The preset's synthetic cubes in memory: solver inputs (float64 arrays) and the cell size (m)."""
    from coemu.geometry.cube import make_cubes
    from coemu.hydro.sources import synthetic_extents
    from coemu.hydro.synthetic import synthetic_model
    from coemu.rt.reference import solver_arrays

    radius = min(e.radius for e in synthetic_extents(SEED, max(sizes.models, 8)).values())
    cubes = [
        make_cubes(
            synthetic_model(SEED, i, sizes.n_base, sizes.levels, sizes.finest_spacing),
            radius,
            SEED,
            sizes.rotations,
            sizes.box_cells,
            sizes.grid,
        )
        for i in range(sizes.models)
    ]
    return solver_arrays(cubes), float(cubes[0].attrs["cell_size"])


def _pipeline_part(report: Report, sizes: Sizes, device: str, world: int, work: Path) -> None:
    stages = pipeline.Stages(work, pipeline.mini_config(sizes, device, world), report)
    data = pipeline.make_data(stages, sizes)
    if data is None:
        return
    pipeline.check_images(stages, data, device)
    model = pipeline.check_ddp(stages, data, device, world, sizes)
    if model is not None:
        pipeline.check_trained(stages, data, model, device)


def _solver_part(report: Report, sizes: Sizes, dev: torch.device, deadline: Deadline, measure: bool = True):
    """The solver's checks and (``measure``) throughput; returns the cubes, their images and cell size
    for the emulators."""
    from coemu.rt.lamda import load_line
    from coemu.rt.solver import line_images
    from coemu.rt.spectral import channel_frequencies

    arrays, dx = check_cubes(sizes)
    line = load_line(MOLECULE, TRANSITION)
    freqs = channel_frequencies(line.frequency, sizes.channels, SPACING)
    report.record(solver.SECTION, "cubes", f"{arrays['temperature'].shape[0]} x {sizes.grid}^3")
    report.record(solver.SECTION, "channels", sizes.channels)
    images = line_images(line, *solver.tensors(arrays, torch.float32, dev), freqs, dx)  # (B, X, Y, F)
    if measure:
        solver.check_agreement(report, line, arrays, freqs, dx, dev)
        solver.measure_throughput(report, line, arrays, freqs, dx, dev, sizes, deadline)
    return arrays, images.permute(0, 3, 1, 2).double().cpu(), dx


def _description(sizes: Sizes, dx: float, prep: Preprocessing) -> DataDescription:
    """What an emulator of the check's cubes is built from (the line, channels, grid, transform)."""
    from coemu.rt.lamda import load_line
    from coemu.rt.spectral import channel_velocities

    line = load_line(MOLECULE, TRANSITION)
    return DataDescription(
        molecule=MOLECULE,
        transition=TRANSITION,
        datafile="",
        rest_frequency=float(line.frequency),
        molecular_mass=float(line.mass),
        channel_velocities=[float(v) for v in channel_velocities(sizes.channels, SPACING)],
        v_turbulence=0.0,
        background="zero",
        background_intensity=[0.0] * sizes.channels,
        grid=sizes.grid,
        cell_size=dx,
        preprocessing=prep.to_dict(),
    )


def _emulators_part(report: Report, sizes: Sizes, dev: torch.device, cubes, deadline: Deadline) -> None:
    arrays, images, dx = cubes
    names = {"temperature": "temperature", "number_density_co": "number_density", "velocity_z": "velocity_z"}
    prep = Preprocessing.from_arrays({k: arrays[v] for k, v in names.items()} | {"intensity": images.numpy()})
    data = _description(sizes, dx, prep)
    t = {k: torch.as_tensor(arrays[v], dtype=torch.float32) for k, v in names.items()}
    x = prep.inputs(t["temperature"], t["number_density_co"], t["velocity_z"]).transpose(0, 1).contiguous()
    y = prep.intensity(images.float())
    kinds = list(emulator_kinds())
    for i, kind in enumerate(kinds):
        share = Deadline(max(0.0, deadline.left()) / (len(kinds) - i))
        _section(
            report,
            f"emulators: {kind}",
            emulators.check_kind,
            report,
            kind,
            data,
            x,
            y,
            dev,
            sizes,
            share,
            5.0,
        )


def run_checks(
    device: str = "cuda",
    out: str | Path = ".",
    size: str | None = None,
    budget_s: float | None = None,
    world: int | None = None,
    work: str | Path | None = None,
    keep_work: bool = False,
    sections: tuple[str, ...] = SECTIONS,
) -> Report:
    """Run every check on ``device`` and write ``gpu-check.json`` and ``gpu-check.md`` into ``out``.

    Args:
        device: ``cuda`` or ``cpu`` (the same code paths, for CI).
        size: a preset of :data:`devicecheck.sizes.PRESETS` (default: ``paper`` on CUDA,
            ``small`` on the CPU).
        budget_s: seconds for the whole check (default: the preset's).
        world: training processes (default: every GPU; 2 on the CPU).
        work: folder for the mini data set (default: a temporary one, removed at the end
            unless ``keep_work``).
        sections: which of :data:`SECTIONS` to run (a rerun of the measurements alone, say).
    """
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        raise ValueError(f"unknown sections {sorted(unknown)} (known: {', '.join(SECTIONS)})")
    size = size or ("paper" if device == "cuda" else "small")
    if size not in PRESETS:
        raise ValueError(f"unknown size '{size}' (known: {', '.join(PRESETS)})")
    if device not in ("cuda", "cpu"):
        raise ValueError(f"device must be cuda or cpu, got '{device}'")
    sizes = PRESETS[size]
    t0 = time.perf_counter()
    deadline = Deadline(budget_s or sizes.budget_s)
    report = Report(device, size)
    if device == "cuda" and not torch.cuda.is_available():
        report.check(
            "environment",
            "CUDA available",
            False,
            detail=f"torch {torch.__version__} (CUDA build: {torch.version.cuda}) sees no CUDA device",
        )
        report.write(out)
        return report
    dev = torch.device(device)
    if device == "cuda":
        report.check("environment", "CUDA available", True, torch.cuda.get_device_name(0))
    world = world or (torch.cuda.device_count() if device == "cuda" else 2)
    scratch = Path(work) if work else Path(tempfile.mkdtemp(prefix="coemu-device-check-"))
    try:
        if "pipeline" in sections:
            _section(report, pipeline.SECTION, _pipeline_part, report, sizes, device, world, scratch)
        if "solver" in sections or "emulators" in sections:
            share = SOLVER_SHARE if "emulators" in sections else 1.0
            part = Deadline(max(0.0, deadline.left()) * share if "solver" in sections else 0.0)
            cubes = _section(
                report, solver.SECTION, _solver_part, report, sizes, dev, part, "solver" in sections
            )
            if cubes is not None and "emulators" in sections:
                _emulators_part(report, sizes, dev, cubes, deadline)
    finally:
        report.record("environment", "seconds", time.perf_counter() - t0)
        report.record("environment", "work", str(scratch))
        report.write(out)
        if not (keep_work or work):
            shutil.rmtree(scratch, ignore_errors=True)
    return report
