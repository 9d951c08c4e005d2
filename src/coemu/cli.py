"""The ``coemu`` command: one subcommand per pipeline step, called by the rules.

Every subcommand validates its input before writing anything and writes its
outputs atomically; bad input ends with ``error: FILE: variable 'V': problem``
on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import time
from pathlib import Path

from coemu.constants import ASTRONOMICAL_UNIT
from coemu.data.variables import DEFAULT_DENSITY_FLOOR, DEFAULT_INTENSITY_FLOOR
from coemu.io.errors import CoemuInputError

log = logging.getLogger("coemu")


def _add_synthetic_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, default=1234, help="data-set seed (default 1234)")
    p.add_argument("--n-base", type=int, default=32, help="AMR nodes per axis per level (default 32)")
    p.add_argument("--levels", type=int, default=4, help="AMR levels (default 4)")


def cmd_hydro(args: argparse.Namespace) -> None:
    """Write synthetic model ``--index`` as a hydro-model netCDF file."""
    from coemu.hydro.model import hydro_to_dataset
    from coemu.hydro.synthetic import draw_parameters, synthetic_model
    from coemu.io.atomic import write_netcdf_atomic

    model = synthetic_model(args.seed, args.index, n_base=args.n_base, levels=args.levels)
    params = {f"param_{k}": v for k, v in draw_parameters(args.seed, args.index).to_dict().items()}
    params["param_domain_half_extent"] = list(params["param_domain_half_extent"])
    write_netcdf_atomic(hydro_to_dataset(model, {"seed": args.seed, **params}), args.output)
    log.info("wrote %s (%d points)", args.output, model.n_points)


def cmd_sphere(args: argparse.Namespace) -> None:
    """Compute every model's extent and the global sphere radius (fan-in)."""
    from coemu.geometry.sphere import sphere_summary
    from coemu.hydro.catalog import list_model_files
    from coemu.hydro.sources import file_extents, synthetic_extents
    from coemu.io.atomic import write_json_atomic

    if args.directory is not None:
        try:
            files = list_model_files(args.directory)
        except (FileNotFoundError, ValueError) as err:
            raise CoemuInputError(args.directory, None, str(err)) from None
        extents = file_extents(files, progress=True)
    else:
        extents = synthetic_extents(args.seed, args.synthetic_count)
    summary = sphere_summary(extents)
    write_json_atomic(summary, args.output)
    log.info(
        "sphere radius %.6g m (%.3f au), limited by %s, over %d models",
        summary["radius"],
        summary["radius"] / ASTRONOMICAL_UNIT,
        summary["limiting_model"],
        summary["n_models"],
    )


def read_sphere_radius(path: str | Path) -> float:
    """The global radius (m) from a ``sphere.json``; CoemuInputError if unusable."""
    try:
        radius = json.loads(Path(path).read_text())["radius"]
    except FileNotFoundError:
        raise CoemuInputError(path, None, "file not found") from None
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise CoemuInputError(path, "radius", f"not a sphere file ({err!r})") from None
    if not isinstance(radius, (int, float)) or not radius > 0:
        raise CoemuInputError(path, "radius", f"must be a positive number, got {radius!r}")
    return float(radius)


def _load_model(model_id: str | None, input_path: Path | None, args: argparse.Namespace):
    """The hydro model: synthetic ``model_id`` (with --synthetic) or the file ``input_path``."""
    from coemu.hydro.catalog import synthetic_index
    from coemu.hydro.sources import load_model

    if args.synthetic == (input_path is not None):
        raise CoemuInputError(None, None, "give either a model file or --synthetic, not both or neither")
    if args.synthetic:
        try:
            index = synthetic_index(model_id or "")
        except ValueError as err:
            raise CoemuInputError(None, "model", str(err)) from None
        return load_model(synthetic_index=index, seed=args.seed, n_base=args.n_base, levels=args.levels)
    model = load_model(path=input_path)
    if model_id is not None and model_id != model.name:
        raise CoemuInputError(input_path, None, f"file holds model '{model.name}', not '{model_id}'")
    return model


def _cube_fingerprint(model_id: str, input_path: Path | None, radius: float, args: argparse.Namespace) -> str:
    """What a cube file is made from: model source, sphere radius, settings and code."""
    from coemu.io.provenance import code_digest, file_identity, fingerprint

    source = (
        {"synthetic": model_id, "n_base": args.n_base, "levels": args.levels}
        if args.synthetic
        else {"file": str(input_path), **file_identity(input_path)}
    )
    return fingerprint(
        model=model_id,
        source=source,
        radius=radius,
        seed=args.seed,
        rotations=args.rotations,
        box_cells=args.box_cells,
        grid=args.grid,
        code=code_digest("cubes"),
    )


def _make_cube_file(
    model_id: str | None,
    input_path: Path | None,
    output: Path,
    radius: float,
    args: argparse.Namespace,
    fingerprint: str | None = None,
) -> None:
    """Make one cube file; ``fingerprint`` (its _cube_fingerprint) when the caller has it already."""
    from coemu.geometry.cube import make_cubes
    from coemu.io.atomic import write_netcdf_atomic
    from coemu.io.provenance import FINGERPRINT_ATTR

    t0 = time.perf_counter()
    model = _load_model(model_id, input_path, args)
    t1 = time.perf_counter()
    cubes = make_cubes(
        model,
        radius,
        seed=args.seed,
        n_rotations=args.rotations,
        box_cells=args.box_cells,
        grid=args.grid,
        progress=args.progress,
    )
    cubes.attrs[FINGERPRINT_ATTR] = fingerprint or _cube_fingerprint(model.name, input_path, radius, args)
    t2 = time.perf_counter()
    write_netcdf_atomic(cubes, output)
    log.info(
        "%s: %d points, %d rotations of %d^3: load %.2f s, regrid %.2f s, write %.2f s",
        model.name,
        model.n_points,
        args.rotations,
        args.grid,
        t1 - t0,
        t2 - t1,
        time.perf_counter() - t2,
    )


def cmd_cubes(args: argparse.Namespace) -> None:
    """Trim, rotate and regrid one model into its cube file."""
    radius = read_sphere_radius(args.sphere)
    _make_cube_file(args.model, args.input, args.output, radius, args)


def _same_length(**lists) -> None:
    lengths = {k: len(v) for k, v in lists.items() if v is not None}
    if len(set(lengths.values())) > 1:
        raise CoemuInputError(None, None, f"need the same number of files for each: {lengths}")


def cmd_cubes_many(args: argparse.Namespace) -> None:
    """Make the cube files of a block of models; skip those already made from the same inputs."""
    from tqdm import tqdm

    from coemu.io.atomic import remove_stale_temporaries
    from coemu.io.provenance import stored_fingerprint, write_manifest

    _same_length(models=args.models, outputs=args.outputs, inputs=args.inputs)
    if args.synthetic == (args.inputs is not None):
        raise CoemuInputError(None, None, "give either --inputs (model files) or --synthetic, not both")
    radius = read_sphere_radius(args.sphere)
    inputs = args.inputs or [None] * len(args.models)
    done = 0
    for model_id, input_path, output in tqdm(
        list(zip(args.models, inputs, args.outputs, strict=True)), unit="model", disable=not args.progress
    ):
        remove_stale_temporaries(output)
        wanted = _cube_fingerprint(model_id, input_path, radius, args)
        if stored_fingerprint(output) == wanted:
            log.info("%s: up to date (%s), kept", output, wanted)
            continue
        _make_cube_file(model_id, input_path, output, radius, args, fingerprint=wanted)
        done += 1
    files = {m: {"cube": o} for m, o in zip(args.models, args.outputs, strict=True)}
    write_manifest(args.manifest, args.manifest.stem, files)
    n = len(args.models)
    log.info("%d of %d cubes made, %d kept; manifest %s", done, n, n - done, args.manifest)


def _render_settings(args: argparse.Namespace):
    from coemu.rt.render import RenderSettings

    return RenderSettings(
        channels=args.channels,
        spacing=args.spacing,
        molecule=args.molecule,
        transition=args.transition,
        datafile=args.datafile,
        v_turbulence=args.v_turbulence,
        background=args.background,
        device=args.device,
        dtype=args.dtype,
        compile=args.compile,
    )


def _image_fingerprint(cube: Path, faceon: bool, settings) -> str:
    """What an image file is made from: the cube file, the solver settings and code."""
    from dataclasses import asdict

    from coemu.io.provenance import code_digest, file_digest, file_identity, fingerprint, stored_fingerprint

    solver = asdict(settings)
    del solver["compile"]  # fused kernels: the same images to rounding, not a reason to render again
    if settings.datafile:
        solver["datafile_sha256"] = file_digest(settings.datafile)
    return fingerprint(
        cube_file=file_identity(cube),
        cube=stored_fingerprint(cube),
        faceon=faceon,
        settings=solver,
        code=code_digest("images"),
    )


def _render_one(
    cube: Path, image: Path, faceon: Path | None, settings, fingerprint: str | None = None
) -> None:
    """Render one cube file; ``fingerprint`` (its _image_fingerprint) when the caller has it already."""
    from coemu.io.provenance import FINGERPRINT_ATTR
    from coemu.rt.render import render_file

    t0 = time.perf_counter()
    attrs = {FINGERPRINT_ATTR: fingerprint or _image_fingerprint(cube, faceon is not None, settings)}
    images = render_file(cube, image, settings, faceon_path=faceon, attrs=attrs)
    seconds = time.perf_counter() - t0
    n = images.sizes["rotation"]
    log.info(
        "%s: %d images x %d channels on %s (%s) in %.2f s (%.1f ms per image)",
        cube,
        n,
        images.sizes["frequency"],
        settings.device,
        settings.dtype,
        seconds,
        1e3 * seconds / n,
    )


def cmd_render(args: argparse.Namespace) -> None:
    """Render the line images of every rotation of a cube file."""
    _render_one(args.cube, args.output, args.faceon, _render_settings(args))


def cmd_render_many(args: argparse.Namespace) -> None:
    """Render a block of cube files in one process; skip images already made from the same inputs."""
    from tqdm import tqdm

    from coemu.io.atomic import remove_stale_temporaries
    from coemu.io.provenance import stored_fingerprint, write_manifest

    _same_length(cubes=args.cubes, images=args.images, faceon=args.faceon)
    faceon = args.faceon or [None] * len(args.cubes)
    settings = _render_settings(args)
    done = 0
    for cube, image, face in tqdm(list(zip(args.cubes, args.images, faceon, strict=True)), unit="model"):
        for f in (image, face):
            if f is not None:
                remove_stale_temporaries(f)
        wanted = _image_fingerprint(cube, face is not None, settings)
        if all(stored_fingerprint(f) == wanted for f in (image, face) if f is not None):
            log.info("%s: up to date (%s), kept", image, wanted)
            continue
        _render_one(cube, image, face, settings, fingerprint=wanted)
        done += 1
    log.info("%d of %d models rendered, %d kept", done, len(args.cubes), len(args.cubes) - done)
    if args.manifest is not None:
        files = {
            Path(c).stem: {"image": i} | ({"faceon": f} if f is not None else {})
            for c, i, f in zip(args.cubes, args.images, faceon, strict=True)
        }
        write_manifest(args.manifest, args.manifest.stem, files)


def cmd_split(args: argparse.Namespace) -> None:
    """Assign every model (from sphere.json) to train, validation or test."""
    from coemu.data.split import split_models
    from coemu.io.atomic import write_json_atomic

    try:
        models = list(json.loads(Path(args.sphere).read_text())["models"])
    except (OSError, ValueError, KeyError) as err:
        raise CoemuInputError(args.sphere, "models", f"cannot be read ({err})") from None
    fractions = {"train": args.train, "validation": args.validation, "test": args.test}
    try:
        split = split_models(models, fractions, args.seed)
    except ValueError as err:
        raise CoemuInputError(None, "split", str(err)) from None
    summary = {"seed": args.seed, "fractions": fractions, "counts": {k: len(v) for k, v in split.items()}}
    write_json_atomic(summary | split, args.output)
    log.info("split %s", summary["counts"])


def cmd_stats(args: argparse.Namespace) -> None:
    """Global statistics of the training models' cube and image files on a Dask cluster."""
    from coemu.io.atomic import write_json_atomic
    from coemu.stats.cluster import dask_client
    from coemu.stats.global_stats import global_statistics

    try:
        models = json.loads(Path(args.split).read_text())[args.subset]
    except (OSError, ValueError, KeyError) as err:
        raise CoemuInputError(args.split, args.subset, f"cannot be read ({err})") from None
    if not models:
        raise CoemuInputError(args.split, args.subset, "no models")
    try:
        settings = json.loads(args.dask)
    except ValueError as err:
        raise CoemuInputError(None, "dask", f"settings are not JSON ({err})") from None
    cubes = [str(args.cubes_dir / f"{m}.nc") for m in models]
    images = [str(args.images_dir / f"{m}.nc") for m in models]
    floors = {"number_density_co": args.density_floor, "intensity": args.intensity_floor}
    t0 = time.perf_counter()
    with dask_client(settings) as client:
        stats = global_statistics(
            client,
            cubes,
            images,
            floors,
            settings.get("block_rotations"),
        )
    stats |= {"subset": args.subset, "models": models}
    write_json_atomic(stats, args.output)
    log.info("statistics of %d models in %.1f s -> %s", len(models), time.perf_counter() - t0, args.output)


def cmd_train(args: argparse.Namespace) -> None:
    """Pretrain or fine-tune COEmuNet (run under torchrun for several processes)."""
    from coemu.training.loop import train

    try:
        settings = json.loads(args.settings)
    except ValueError as err:
        raise CoemuInputError(None, "training", f"settings are not JSON ({err})") from None
    train(args.stage, args.results, args.out, settings, init=args.init, progress=not args.no_progress)


def cmd_evaluate(args: argparse.Namespace) -> None:
    """Metrics, table and figures of a trained model on the test models."""
    from coemu.evaluation.evaluate import evaluate

    evaluate(args.stage, args.results, args.model, args.out, args.batch_size, args.device)


def cmd_timing(args: argparse.Namespace) -> None:
    """ms per image of the solver, the emulator and pomme on the same cubes."""
    from coemu.evaluation.timing import run_timing

    run_timing(
        args.results, args.models, args.out, args.repeats, args.large_batch, args.devices, not args.no_pomme
    )


def _add_cube_options(p: argparse.ArgumentParser) -> None:
    _add_synthetic_options(p)
    p.add_argument("--sphere", type=Path, required=True, help="sphere.json from `coemu sphere`")
    p.add_argument("--rotations", type=int, default=200, help="viewing directions, 0 = face-on")
    p.add_argument("--box-cells", type=int, default=128, help="cells across the sphere's box")
    p.add_argument("--grid", type=int, default=64, help="central cells kept per axis")


def _add_solver_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--channels", type=int, default=7, help="frequency channels (default 7)")
    p.add_argument("--spacing", type=float, default=300.0, help="channel spacing, m/s (default 300)")
    p.add_argument("--molecule", default="CO", help="species (default CO, shipped LAMDA file)")
    p.add_argument("--transition", type=int, default=1, help="0-based LAMDA transition (CO: 1 = J 2-1)")
    p.add_argument("--datafile", help="LAMDA file instead of the shipped one")
    p.add_argument("--v-turbulence", type=float, default=0.0, help="turbulent velocity, m/s (default 0)")
    p.add_argument("--background", choices=["zero", "cmb"], default="zero")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:N")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    p.add_argument("--compile", action="store_true", help="fuse the solver's kernels with torch.compile")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="coemu", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("hydro", help="write a synthetic hydro model as netCDF")
    p.add_argument("output", type=Path)
    p.add_argument("--index", type=int, required=True, help="model number")
    _add_synthetic_options(p)
    p.set_defaults(func=cmd_hydro)

    p = sub.add_parser("sphere", help="global sphere radius over all models (fan-in)")
    p.add_argument("output", type=Path, help="sphere.json")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--directory", type=Path, help="folder of model files (*.nc, *.h5, *.hdf5)")
    src.add_argument("--synthetic-count", type=int, help="number of synthetic models")
    p.add_argument("--seed", type=int, default=1234, help="data-set seed (synthetic)")
    p.set_defaults(func=cmd_sphere)

    p = sub.add_parser("cubes", help="trim, rotate and regrid one model into its cube file")
    p.add_argument("output", type=Path, help="cube netCDF file")
    p.add_argument(
        "input", type=Path, nargs="?", help="model file (*.nc point cloud or Magritte *.h5/*.hdf5)"
    )
    p.add_argument("--model", help="model id (synthetic: m + index, e.g. m00042)")
    p.add_argument("--synthetic", action="store_true", help="generate synthetic model --model")
    _add_cube_options(p)
    p.add_argument("--progress", action="store_true", help="tqdm bar over rotations")
    p.set_defaults(func=cmd_cubes)

    p = sub.add_parser("cubes-many", help="cube files of a block of models (skips those up to date)")
    p.add_argument("--models", nargs="+", required=True, help="model ids")
    p.add_argument("--outputs", type=Path, nargs="+", required=True, help="cube files, one per model")
    p.add_argument("--inputs", type=Path, nargs="+", help="model files, one per model (not with --synthetic)")
    p.add_argument("--manifest", type=Path, required=True, help="block manifest (JSON) written last")
    p.add_argument("--synthetic", action="store_true", help="generate the synthetic models --models")
    _add_cube_options(p)
    p.add_argument("--progress", action="store_true", help="tqdm bar over models")
    p.set_defaults(func=cmd_cubes_many)
    p = sub.add_parser("render", help="LTE line images of every rotation of a cube file")
    p.add_argument("cube", type=Path, help="cube netCDF file")
    p.add_argument("output", type=Path, help="image netCDF file")
    p.add_argument("--faceon", type=Path, help="also write rotation 0 at the line centre here")
    _add_solver_options(p)
    p.set_defaults(func=cmd_render)

    p = sub.add_parser("render-many", help="render several cube files in one process")
    p.add_argument("--cubes", type=Path, nargs="+", required=True, help="cube netCDF files")
    p.add_argument("--images", type=Path, nargs="+", required=True, help="image files, one per cube")
    p.add_argument("--faceon", type=Path, nargs="+", help="face-on image files, one per cube")
    p.add_argument("--manifest", type=Path, help="block manifest (JSON) written last")
    _add_solver_options(p)
    p.set_defaults(func=cmd_render_many)

    p = sub.add_parser("split", help="train/validation/test split by model")
    p.add_argument("sphere", type=Path, help="sphere.json (its models are split)")
    p.add_argument("output", type=Path, help="split.json")
    p.add_argument("--train", type=float, default=0.8)
    p.add_argument("--validation", type=float, default=0.1)
    p.add_argument("--test", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=1234)
    p.set_defaults(func=cmd_split)

    p = sub.add_parser("stats", help="global statistics on a Dask cluster (results/stats/global.json)")
    p.add_argument("split", type=Path, help="split.json")
    p.add_argument("output", type=Path, help="global.json")
    p.add_argument("--subset", default="train", help="split whose models are reduced (default train)")
    p.add_argument("--cubes-dir", type=Path, default=Path("results/cubes"))
    p.add_argument("--images-dir", type=Path, default=Path("results/images"))
    p.add_argument(
        "--dask",
        default="{}",
        help="JSON: the config's dask section (default: a 2-worker LocalCluster)",
    )
    p.add_argument("--density-floor", type=float, default=DEFAULT_DENSITY_FLOOR, help="m-3")
    p.add_argument("--intensity-floor", type=float, default=DEFAULT_INTENSITY_FLOOR, help="W m-2 Hz-1 sr-1")
    p.set_defaults(func=cmd_stats)

    p = sub.add_parser("train", help="pretrain or fine-tune COEmuNet (DDP under torchrun)")
    p.add_argument("--stage", choices=["pretrain", "finetune"], required=True)
    p.add_argument(
        "--results", type=Path, default=Path("results"), help="folder of split.json, stats/, cubes/..."
    )
    p.add_argument("--out", type=Path, required=True, help="folder for model.pt, history.csv, checkpoints/")
    p.add_argument("--settings", required=True, help="JSON: the config's training section")
    p.add_argument("--init", type=Path, help="model.pt whose matching tensors start the run (fine-tuning)")
    p.add_argument("--no-progress", action="store_true", help="no tqdm bar")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="MaxRel, ZNCC, SSIM and figures on the test models")
    p.add_argument("--stage", choices=["pretrain", "finetune"], required=True)
    p.add_argument("--results", type=Path, default=Path("results"))
    p.add_argument("--model", type=Path, required=True, help="model.pt from coemu train")
    p.add_argument("--out", type=Path, required=True, help="folder for metrics.json, samples.nc, figures")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("timing", help="ms per image: solver, emulator, pomme (timing.csv, timing.md)")
    p.add_argument("--results", type=Path, default=Path("results"))
    p.add_argument(
        "--models", type=Path, nargs="+", required=True, help="model.pt files (pretrain, finetune)"
    )
    p.add_argument("--out", type=Path, required=True, help="folder for timing.csv and timing.md")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--large-batch", type=int, default=16)
    p.add_argument("--devices", nargs="+", help="default: cpu, and cuda when present")
    p.add_argument("--no-pomme", action="store_true", help="skip pomme even when installed")
    p.set_defaults(func=cmd_timing)
    return parser


def _exit_on_sigterm(signum, frame) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    # SLURM's time limit and `scancel` send SIGTERM: exit through Python so that the
    # atomic writers remove their temporary files (training installs its own handler).
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        args.func(args)
    except CoemuInputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
