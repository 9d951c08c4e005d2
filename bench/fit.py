"""Validation of ``coemu fit`` on mock observations: coverage, MAP errors, Bayes factors, timings.

Mocks: held-out synthetic models (``draw_parameters(seed 2026, i)``, a seed the
pipeline does not use), ``--binary`` of the binary family at isotropic random
viewing angles and ``--single`` of the single-star family, each rendered by
the fit's own forward model on a ``--grid``^3 cube of 100 au / grid cells,
``--channels`` channels ``--spacing`` apart (default 11 x 4 km/s: the whole line of
a 5-20 km/s wind), at 150 pc with a 0.1" beam in Jy/beam, with beam-
correlated Gaussian noise of rms = peak / ``--snr`` (the observation writer's
noise). The parameters not fitted are fixed to their true values. Each mock
is fitted by both families (the default free parameters and sampler settings
of ``config``, overridable here).

Measured: for each mock fitted by its own family, whether each true parameter
lies in the central 68 % and 90 % credible intervals (the position angle's on
the circle, relative to its posterior median); the MAP's error in posterior
standard deviations; whether the MAP search reached the truth's basin (ln
posterior at the MAP >= that at the truth - 2); the ln Bayes factor binary /
single (it must be > 0 for binary mocks, < 0 for single ones); the time per
likelihood gradient of the solver and of emulators of the configured kinds
(untrained weights: the time does not depend on them) on the same cube, and
each fit's wall time. Writes a markdown table and the per-mock JSON lines.

    python bench/fit.py --out bench/results/fit-2026-12-02.md             # the fits (.jsonl)
    python bench/fit.py --out bench/results/fit-2026-12-02.md --table-only  # the table

With 2 cores, two processes of one thread each (``OMP_NUM_THREADS=1``, ``--binary-from``,
``--single-from``) finish sooner than one of two threads: the tensors are small, and two
threads on them mostly wait for each other (a gradient: 36 ms on one thread, 104 ms on two
with another process running, measured).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

from coemu import settings as coemu_settings
from coemu.constants import ASTRONOMICAL_UNIT as AU
from coemu.fit.family import Family, truth_values
from coemu.fit.mock import template, write_mock
from coemu.fit.run import fit_observation
from coemu.observe.fits import ObservationSettings
from coemu.rt.lamda import load_line

BENCH_SEED = 2026


def mock_truth(kind: str, index: int) -> dict[str, float]:
    rng = np.random.default_rng([BENCH_SEED, index, 7])
    truth = truth_values(BENCH_SEED, f"m{index:05d}")
    truth["inclination"] = float(np.degrees(np.arccos(rng.uniform(-1, 1))))
    truth["position_angle"] = float(rng.uniform(0, 360))
    return truth


def covered(samples: np.ndarray, truth: float, level: float, circular: bool) -> bool:
    if circular:
        centre = np.median(samples)
        samples = (samples - centre + 180.0) % 360.0 - 180.0
        truth = (truth - centre + 180.0) % 360.0 - 180.0
    lo, hi = np.percentile(samples, [50 - level / 2, 50 + level / 2])
    return bool(lo <= truth <= hi)


def gradient_times(obs_path: Path, truth: dict, line, kinds: list[str], config: dict) -> dict[str, float]:
    """Seconds per log-likelihood gradient at the truth: the solver and untrained emulators."""
    from coemu.data.description import DataDescription
    from coemu.data.transform import Preprocessing
    from coemu.fit.data import read_observation
    from coemu.fit.forward import ForwardModel
    from coemu.fit.likelihood import GaussianLikelihood
    from coemu.nn import emulator_kinds

    obs = read_observation(obs_path, line.frequency)
    family = Family.make("binary", fixed=truth)
    like = GaussianLikelihood.of(obs)  # beam noise when the observation has a beam
    solver = ForwardModel(obs, family, line)
    with torch.no_grad():
        t, n, v = solver.cube({k: torch.tensor(x, dtype=torch.float64) for k, x in truth.items()})
        image = solver.intensity({k: torch.tensor(x, dtype=torch.float64) for k, x in truth.items()})
    prep = Preprocessing(
        velocity_mean=float(v.mean()),
        velocity_std=float(v.std()),
        log_temperature_min=float(torch.log(t).min()),
        log_temperature_scale=float(torch.log(t).max() - torch.log(t).min()),
        log_density_min=float(torch.log(n).min()),
        log_density_scale=float(torch.log(n).max() - torch.log(n).min()),
        log_intensity_min=-40.0,
        log_intensity_max=float(torch.log(image.max())),
    )
    data = DataDescription(
        line.name,
        1,
        "",
        line.frequency,
        line.mass,
        [float(x) for x in obs.offsets],
        0.0,
        "zero",
        [0.0] * len(obs.offsets),
        obs.grid,
        obs.cell_size,
        prep.to_dict(),
    )
    models = {"solver": solver}
    for kind in kinds:
        settings = config["training"]["model"][kind]
        emulator = emulator_kinds()[kind].from_data(data, **settings).eval()
        emulator.data = data
        models[f"emulator ({kind}, untrained)"] = ForwardModel(obs, family, line, "emulator", emulator)
    out = {}
    for name, forward in models.items():
        params = {
            k: torch.tensor(x, dtype=torch.float64, requires_grad=k in family.free) for k, x in truth.items()
        }
        like(forward(params)).backward()  # warm-up
        t0 = time.perf_counter()
        for _ in range(5):
            params = {
                k: torch.tensor(x, dtype=torch.float64, requires_grad=k in family.free)
                for k, x in truth.items()
            }
            like(forward(params)).backward()
        out[name] = (time.perf_counter() - t0) / 5
    return out


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True, help="markdown table (and .jsonl beside it)")
    parser.add_argument("--binary", type=int, default=10, help="binary mocks")
    parser.add_argument("--single", type=int, default=5, help="single-star mocks")
    parser.add_argument(
        "--binary-from", type=int, default=0, help="first binary mock (to share the mocks between processes)"
    )
    parser.add_argument("--single-from", type=int, default=0, help="first single-star mock")
    parser.add_argument("--grid", type=int, default=12)
    parser.add_argument("--snr", type=float, default=20.0, help="peak / noise rms")
    parser.add_argument("--channels", type=int, default=11)
    parser.add_argument("--spacing", type=float, default=4000.0, help="channel spacing, m/s")
    parser.add_argument("--work", type=Path, default=Path("/tmp/coemu-bench-fit"))
    parser.add_argument("--fit", default="{}", help="JSON overrides of the fit section")
    parser.add_argument(
        "--table-only", action="store_true", help="write the table from the .jsonl beside --out (no fits)"
    )
    return parser.parse_args(argv)


def write_table(args, jsonl: Path, settings: ObservationSettings, line, config: dict) -> None:
    """The markdown table of the mocks in ``jsonl``, with the gradient times of a 16^3 mock."""
    rows = sorted(
        (json.loads(text) for text in jsonl.read_text().splitlines()),
        key=lambda r: (r["kind"], r["index"]),
    )
    args.binary = sum(r["kind"] == "binary" for r in rows)
    args.single = sum(r["kind"] == "single" for r in rows)
    timing = template(16, 100 * AU / 16, args.channels, args.spacing, settings, line)
    truth = mock_truth("binary", 0)
    path = args.work / "timing-16.fits"
    write_mock(path, Family.make("binary", fixed=truth), truth, line, timing, settings, args.snr, 0)
    times = gradient_times(path, truth, line, ["column", "coemunet"], config)
    args.out.write_text(table(rows, times, args, config))
    print(args.out.read_text())


def fit_mock(kind: str, index: int, args, tmpl, settings: ObservationSettings, line, config: dict) -> dict:
    """Write mock ``index`` of ``kind``, fit both families to it (its own first); its row."""
    import arviz as az

    truth = mock_truth(kind, index)
    path = args.work / f"{kind}-{index}.fits"
    rms = write_mock(path, Family.make(kind, fixed=truth), truth, line, tmpl, settings, args.snr, index)
    t0 = time.perf_counter()
    order = {"fit": {**config["fit"], "families": [kind] + [f for f in ("binary", "single") if f != kind]}}
    summary = fit_observation(path, args.work / f"{kind}-{index}", {**config, **order}, truth=truth)
    own = summary["families"][kind]
    idata = az.from_netcdf(str(args.work / f"{kind}-{index}" / f"{kind}.posterior.nc"))
    row = {"kind": kind, "index": index, "noise": rms, "wall_seconds": time.perf_counter() - t0}
    for p in own["family"]["free"]:
        samples = idata.posterior[p].values.reshape(-1)
        row[p] = {
            "truth": truth[p],
            "map": own["map"][p],
            "std": float(samples.std()),
            "in68": covered(samples, truth[p], 68, p == "position_angle"),
            "in90": covered(samples, truth[p], 90, p == "position_angle"),
        }
    ln_z = {f: summary["families"][f]["evidence"] for f in summary["families"]}
    row["ln_bf_binary_single"] = ln_z["binary"]["ln_evidence"] - ln_z["single"]["ln_evidence"]
    row["ln_bf_error"] = math.hypot(ln_z["binary"]["error"], ln_z["single"]["error"])
    row["ln_bf_laplace"] = ln_z["binary"]["laplace_ln_evidence"] - ln_z["single"]["laplace_ln_evidence"]
    row["map_found"] = own["map_log_posterior"] >= own["log_posterior_at_truth"] - 2.0
    row["max_r_hat"] = own["convergence"]["max_r_hat"]
    row["divergences"] = own["convergence"]["divergences"]
    row["fit_seconds"] = {f: summary["families"][f]["timing"]["fit_seconds"] for f in summary["families"]}
    row["gradient_seconds"] = {
        f: summary["families"][f]["timing"]["gradient_seconds"] for f in summary["families"]
    }
    return row


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    config = coemu_settings.complete(
        {
            "fit": {
                # the MAP -> NUTS path this bench measured (results/fit-2026-12-02); nested sampling,
                # the default of coemu fit since issue 29, needs the bench's nested summary keys first
                "sampler": "nuts",
                "chains": 2,
                "warmup": 100,
                "samples": 100,
                "starts": 64,
                "max_tree_depth": 4,
                "evidence_epochs": 15,
                **json.loads(args.fit),
            }
        }
    )
    line = load_line("CO", 1, None)
    settings = ObservationSettings(distance=150.0, beam_major=0.1, unit="Jy/beam")
    tmpl = template(args.grid, 100 * AU / args.grid, args.channels, args.spacing, settings, line)
    args.work.mkdir(parents=True, exist_ok=True)
    jsonl = args.out.with_suffix(".jsonl")
    if args.table_only:
        write_table(args, jsonl, settings, line, config)
        return 0
    mocks = [("binary", args.binary_from + i) for i in range(args.binary)]
    mocks += [("single", 100 + args.single_from + i) for i in range(args.single)]
    for kind, index in mocks:
        row = fit_mock(kind, index, args, tmpl, settings, line, config)
        with jsonl.open("a") as fh:
            fh.write(json.dumps(row) + "\n")
        print(
            json.dumps(
                {k: row[k] for k in ("kind", "index", "map_found", "ln_bf_binary_single", "max_r_hat")}
            )
        )
    print(f"{len(mocks)} mocks written to {jsonl}; the table: --table-only")
    return 0


def table(rows, times, args, config) -> str:
    fit = config["fit"]
    lines = [
        f"# coemu fit on mock observations ({time.strftime('%Y-%m-%d')}, CPU)",
        "",
        f"Mocks: {args.binary} binary, {args.single} single-star held-out synthetic models"
        f" (seed {BENCH_SEED}), {args.grid}^3 cells of {100 / args.grid:.2f} au, {args.channels}"
        f' channels x {args.spacing / 1e3:g} km/s, 150 pc, 0.1" beam, Jy/beam, beam-correlated'
        f" noise at peak S/N {args.snr:g}; rendered by the fit's forward model (well specified),"
        " the parameters not fitted fixed at their true values. Sampler: "
        f"{fit['chains']} chains x ({fit['warmup']} warm-up + {fit['samples']}) NUTS draws,"
        f" {fit['starts']} MAP starts, tree depth <= {fit['max_tree_depth']},"
        f" flow {fit['evidence_epochs']} epochs.",
        "",
        "## Coverage and MAP error (each mock fitted by its own family)",
        "",
        "| family | parameter | mocks | in 68% | in 90% | median abs(MAP - truth) / posterior std |",
        "|---|---|---|---|---|---|",
    ]
    for kind in ("binary", "single"):
        own = [r for r in rows if r["kind"] == kind]
        if not own:
            continue
        for p in [k for k in own[0] if isinstance(own[0][k], dict) and "in68" in own[0][k]]:
            cov68 = sum(r[p]["in68"] for r in own)
            cov90 = sum(r[p]["in90"] for r in own)
            err = np.median([abs(r[p]["map"] - r[p]["truth"]) / max(r[p]["std"], 1e-300) for r in own])
            lines.append(
                f"| {kind} | {p} | {len(own)} | {cov68}/{len(own)} | {cov90}/{len(own)} | {err:.2f} |"
            )
    lines += [
        "",
        "## Per mock: MAP search, convergence, Bayes factor",
        "",
        "| mock | MAP reached the truth's basin | max R-hat | divergences"
        " | ln B(binary/single) harmonic | picks | ln B Laplace | fit s (own) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        bf = r["ln_bf_binary_single"]
        right = (
            "undecided (evidence failed)"
            if not np.isfinite(bf)
            else ("right" if (bf > 0) == (r["kind"] == "binary") else "WRONG")
        )
        lines.append(
            f"| {r['kind']} {r['index']} | {'yes' if r['map_found'] else 'no'} | {r['max_r_hat']:.3f} |"
            f" {r['divergences']} | {r['ln_bf_binary_single']:.1f} +- {r['ln_bf_error']:.1f} |"
            f" {right} | {r['ln_bf_laplace']:.1f} | {r['fit_seconds'][r['kind']]:.0f} |"
        )
    picks = sum(
        np.isfinite(r["ln_bf_binary_single"]) and (r["ln_bf_binary_single"] > 0) == (r["kind"] == "binary")
        for r in rows
    )
    laplace = sum((r["ln_bf_laplace"] > 0) == (r["kind"] == "binary") for r in rows)
    found = sum(r["map_found"] for r in rows)
    lines += [
        "",
        f"The harmonic Bayes factor picks the true family in {picks}/{len(rows)} mocks (the Laplace"
        f" approximation's in {laplace}/{len(rows)}); the MAP search reached the truth's basin in"
        f" {found}/{len(rows)}; converged (R-hat <= 1.01, no divergence):"
        f" {sum(r['max_r_hat'] <= 1.01 and r['divergences'] == 0 for r in rows)}/{len(rows)}.",
        "",
        f"## Time per likelihood gradient (one 16^3 mock, {args.channels} channels, float64, CPU,"
        f" {torch.get_num_threads()} threads)",
        "",
        "| forward model | ms per gradient | vs solver |",
        "|---|---|---|",
    ]
    for name, t in times.items():
        lines.append(f"| {name} | {t * 1e3:.1f} | {t / times['solver']:.2f} |")
    walls = [r["wall_seconds"] for r in rows]
    lines += [
        "",
        f"Wall time per mock (both families; the fits ran as two processes of one thread each on 2"
        f" cores): median {np.median(walls):.0f} s, max {max(walls):.0f} s.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
