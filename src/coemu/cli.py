"""The ``coemu`` command: one subcommand per pipeline step, called by the rules.

Only argument parsing and the call into the package live here. Settings come
from the schema (``coemu/config.schema.yaml``): every subcommand takes
``--config`` (a config file, or the JSON a rule passes) and one option per
setting of the sections it reads, generated from the schema with its defaults
(:mod:`coemu.settings`). Bad input ends with ``error: FILE: variable 'V':
problem`` (or ``config key 'K'``) on stderr and exit status 2; a training run
stopped by SIGTERM/SIGUSR1 after saving its checkpoint exits with 75.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from coemu import settings
from coemu.io.errors import CoemuInputError

log = logging.getLogger("coemu")


def cmd_hydro(args: argparse.Namespace, config: dict) -> None:
    """Write synthetic model ``--index`` as a hydro-model netCDF file."""
    from coemu.hydro.sources import write_synthetic_model

    m = config["models"]
    model = write_synthetic_model(
        args.output, args.index, config["seed"], m["n_base"], m["levels"], m["finest_spacing"], args.layout
    )
    log.info("wrote %s (%d points)", args.output, model.n_points)


def cmd_sphere(args: argparse.Namespace, config: dict) -> None:
    """Compute every model's extent and the global sphere radius (fan-in)."""
    from coemu.constants import ASTRONOMICAL_UNIT
    from coemu.hydro.sources import write_sphere

    summary = write_sphere(args.output, config)
    log.info(
        "sphere radius %.6g m (%.3f au), limited by %s, over %d models",
        summary["radius"],
        summary["radius"] / ASTRONOMICAL_UNIT,
        summary["limiting_model"],
        summary["n_models"],
    )


def _one_source(synthetic: bool, files, what: str) -> None:
    if synthetic == (files is not None):
        raise CoemuInputError(None, None, f"give either {what} or --synthetic, not both or neither")


def cmd_cubes(args: argparse.Namespace, config: dict) -> None:
    """Trim, rotate and regrid one model into its cube file."""
    from coemu.geometry.cube_files import CubeSettings, make_cube_file
    from coemu.geometry.sphere import read_sphere_radius

    if args.output is None:
        raise CoemuInputError(None, None, "give the cube file to write: OUTPUT or --output")
    _one_source(args.synthetic, args.input, "a model file")
    radius = read_sphere_radius(args.sphere)
    make_cube_file(
        args.model, args.input, args.output, radius, CubeSettings.from_config(config), None, args.progress
    )


def cmd_cubes_many(args: argparse.Namespace, config: dict) -> None:
    """Make the cube files of a block of models; skip those already made from the same inputs."""
    from coemu.geometry.cube_files import CubeSettings, make_cube_block

    _one_source(args.synthetic, args.inputs, "--inputs (model files)")
    make_cube_block(
        args.models,
        args.outputs,
        args.inputs,
        args.sphere,
        args.manifest,
        CubeSettings.from_config(config),
        progress=args.progress,
    )


def cmd_render(args: argparse.Namespace, config: dict) -> None:
    """Render the line images of every rotation of a cube file."""
    from coemu.rt.render import RenderSettings, render_one

    render_one(args.cube, args.output, args.faceon, RenderSettings.from_config(config))


def cmd_render_many(args: argparse.Namespace, config: dict) -> None:
    """Render a block of cube files in one process; skip images already made from the same inputs."""
    from coemu.rt.render import RenderSettings, render_block

    render_block(args.cubes, args.images, args.faceon, args.manifest, RenderSettings.from_config(config))


def cmd_split(args: argparse.Namespace, config: dict) -> None:
    """Assign every model (from sphere.json) to train, validation or test."""
    from coemu.data.split import write_split

    log.info("split %s", write_split(args.sphere, args.output, config["split"])["counts"])


def cmd_stats(args: argparse.Namespace, config: dict) -> None:
    """Global statistics of the training models' cube and image files on a Dask cluster."""
    from coemu.stats.global_stats import statistics_of_split

    statistics_of_split(
        args.split, args.manifests, args.output, config["dask"], config["preprocessing"], args.subset
    )


def cmd_train(args: argparse.Namespace, config: dict) -> None:
    """Pretrain or fine-tune an emulator (run under torchrun for several processes)."""
    from coemu.training.loop import train

    train(
        args.stage,
        args.split,
        args.stats,
        args.manifests,
        args.out,
        config["training"],
        init=args.init,
        progress=not args.no_progress,
        kind=args.kind,
    )


def cmd_evaluate(args: argparse.Namespace, config: dict) -> None:
    """Metrics, table and figures of a trained model on the test models."""
    from coemu.evaluation.evaluate import evaluate
    from coemu.rt.render import RenderSettings

    synthetic = config["models"]["source"] == "synthetic"
    reference = (config["seed"], RenderSettings.from_config(config)) if synthetic else None
    evaluate(
        args.stage,
        args.model,
        args.split,
        args.stats,
        args.manifests,
        args.out,
        config["evaluation"],
        reference,
        history=args.history,
    )


def cmd_compare(args: argparse.Namespace, config: dict) -> None:
    """One table of several evaluations (every trained emulator kind)."""
    from coemu.evaluation.compare import write_compare_table

    print(write_compare_table(args.metrics, args.out), end="")


def cmd_timing(args: argparse.Namespace, config: dict) -> None:
    """ms per image of the solver, the emulator and pomme on the same cubes."""
    from coemu.evaluation.timing import run_timing

    run_timing(args.models, args.split, args.stats, args.manifests, args.out, config["timing"])


def cmd_predict(args: argparse.Namespace, config: dict) -> None:
    """Images of every rotation of a cube file by a trained emulator (image contract, W m-2 Hz-1 sr-1)."""
    from coemu.emulate import predict_file

    predict_file(args.model, args.cube, args.output, args.device, args.batch_size)


def cmd_observe(args: argparse.Namespace, config: dict) -> None:
    """A FITS spectral cube of a model seen from a chosen direction (WCS, beam, units, noise)."""
    from coemu.observe.make import observe_model

    _one_source(args.model is not None, args.input, "a model file (--input) or --model")
    observe_model(
        args.output,
        config,
        args.model,
        args.input,
        args.inclination,
        args.position_angle,
        args.azimuth,
        args.sphere,
        args.emulator,
        config["images"]["device"],
        args.moments,
    )


def cmd_fit(args: argparse.Namespace, config: dict) -> None:
    """Fit model families to an observation: MAP, NUTS posterior, harmonic evidence, Bayes factors."""
    from coemu.fit.run import fit_observation

    fixed = {}
    for item in args.fixed or ():
        name, sep, value = item.partition("=")
        try:
            fixed[name] = float(value)
        except ValueError:
            sep = ""
        if not sep:
            raise CoemuInputError(None, "fixed", f"'{item}' is not NAME=VALUE (a number)")
    fit_observation(
        args.observation,
        args.out,
        config,
        args.truth,
        fixed,
        args.emulator,
        args.distance,
        args.v_sys,
        args.rotation,
    )


def cmd_export_observations(args: argparse.Namespace, config: dict) -> None:
    """Every rotation of the test models' images as FITS cubes and moment-0 maps."""
    from coemu.observe.fits import ObservationSettings
    from coemu.observe.make import export_images

    export_images(args.split, args.manifests, args.out, ObservationSettings.from_config(config))


def cmd_check_run(args: argparse.Namespace) -> int:
    """Check a finished run: every expected output present, the emulator's and the data's
    figures within the README's bars. Prints the figures; exit status 1 when any check fails."""
    from coemu.runcheck import BARS, check_run

    bars = {name: getattr(args, name) for name in BARS}  # one option per bar (_check_run_args)
    check = check_run(args.results, args.configfile or (), bars)
    print(f"coemu check-run {args.results}")
    print(check.report(), end="")
    return 0 if check.passed else 1


def _paths(args: argparse.Namespace, names) -> list:
    """The files that ``names`` (argument names, or functions of ``args``) give."""
    paths = []
    for name in names:
        value = name(args) if callable(name) else getattr(args, name, None)
        paths += list(value) if isinstance(value, (list, tuple)) else [value]
    return [path for path in paths if path is not None]


def _manifest_files(args: argparse.Namespace) -> list[Path]:
    """The per-model files that ``--manifests`` list (a command that takes them reads them);
    a manifest that cannot be read lists none here (the command itself names it)."""
    from coemu.io.blocks import read_manifests

    try:
        listed = read_manifests(args.manifests)
    except CoemuInputError:
        return []
    return [path for kinds in listed.values() for path in kinds.values()]


def _config_file(args: argparse.Namespace) -> list[Path]:
    """``--config`` when it names a file (not JSON text)."""
    try:
        return [Path(args.config)] if args.config and Path(args.config).is_file() else []
    except OSError:  # JSON text too long for a file name
        return []


def _refuse_overwrites(args: argparse.Namespace, config: dict) -> None:
    """Refuse an output that is one of the command's inputs, before anything is read."""
    from coemu.io.overwrite import refuse_overwriting_inputs

    reads = _paths(args, args.reads) + _config_file(args)
    datafile = config.get("images", {}).get("datafile")
    reads += [Path(datafile)] if datafile else []
    folders = {args.out: args.folder} if args.folder else None
    refuse_overwriting_inputs(_paths(args, args.writes), reads, folders)


def _moment_maps(args: argparse.Namespace) -> list[Path]:
    """What ``coemu observe --moments`` writes beside OUTPUT."""
    return [args.output.with_suffix(f".mom{k}.fits") for k in range(3)] if args.moments else []


def _named_or_positional(args: argparse.Namespace, names) -> None:
    """``--NAME`` (dest NAME_option) or the positional NAME, not both."""
    for name in names:
        named = getattr(args, f"{name}_option")
        if named is not None:
            if getattr(args, name) is not None:
                raise CoemuInputError(None, None, f"give {name.upper()} or --{name}, not both")
            setattr(args, name, named)


# --- the subcommands: one table ---------------------------------------------------------------


def arg(*flags: str, **kwargs) -> tuple[tuple[str, ...], dict]:
    """One argument of a subcommand: ``parser.add_argument(*flags, **kwargs)``."""
    return flags, kwargs


@dataclass(frozen=True)
class Command:
    """A subcommand: its name, ``help`` (its line in ``coemu --help``), the function that runs
    it (whose docstring is the description) and its arguments.

    Attributes:
        args: the command's own arguments (:func:`arg`), in order, after ``--config`` and the
            generated options; or a function of nothing returning them, called when the
            parser is built.
        sections: config sections whose settings become options (:func:`coemu.settings.add_options`):
            a name, or (name, the keys it takes).
        top: top-level settings that become options (``seed``).
        writes, reads: the arguments that are its output and input files (or functions of the
            parsed arguments giving more files); ``folder``: glob patterns of the files it
            writes in the folder ``--out``. No output may be an input (:func:`_refuse_overwrites`).
        named: positional arguments that may be given as ``--NAME`` too (dest ``NAME_option``).
        usage: the usage line, where argparse's would mislead.
        plain: no config: ``func(args)`` reads its own arguments and returns the exit status.
    """

    name: str
    func: Callable
    help: str
    args: tuple | Callable[[], tuple] = ()
    sections: tuple = ()
    top: tuple = ()
    writes: tuple = ()
    reads: tuple = ()
    folder: tuple = ()
    named: tuple = ()
    usage: str | None = None
    plain: bool = False

    def add_to(self, sub) -> argparse.ArgumentParser:
        """This command's parser, in ``sub`` (the subparsers of ``coemu``)."""
        p = sub.add_parser(self.name, help=self.help, description=self.func.__doc__)
        if self.plain:
            p.set_defaults(func=self.func, plain=True)
        else:
            settings.add_config_option(p)
            if self.top:
                settings.add_options(p, None, only=self.top)
            for entry in self.sections:
                section, only = entry if isinstance(entry, tuple) else (entry, None)
                settings.add_options(p, section, only=only)
            p.set_defaults(func=self.func, writes=self.writes, reads=self.reads, folder=self.folder)
        if self.usage:
            p.usage = self.usage
        if self.named:
            p.set_defaults(named=self.named)
        for flags, kwargs in self.args() if callable(self.args) else self.args:
            p.add_argument(*flags, **kwargs)
        return p


def _check_run_args() -> tuple:
    """``coemu check-run``'s arguments: the results folder, the run's config files, one option per bar."""
    from coemu.runcheck import BARS

    bars = (
        ("min_zncc", "least ZNCC mean of the fine-tuned emulator"),
        ("max_maxrel", "largest MaxRel median, percent"),
        ("min_samples", "fewest test samples"),
        ("min_test_models", "fewest held-out test models"),
        ("max_data_maxrel", "largest MaxRel median of the data's own error, percent"),
    )
    files = (
        arg("results", type=Path, nargs="?", default=Path("results"), help="the run's results folder"),
        arg(
            "--configfile",
            type=Path,
            nargs="+",
            help="the run's --configfile files, over config/config.yaml beside RESULTS"
            " (as Snakemake reads them)",
        ),
    )
    return files + tuple(
        arg(
            f"--{name.replace('_', '-')}",
            type=int if name.startswith("min_") and "zncc" not in name else float,
            default=BARS[name],
            help=f"{text} (default %(default)s)",
        )
        for name, text in bars
    )


#: The inputs of the commands that take a trained emulator's data (:data:`TRAINED_ARGS`).
TRAINED_INPUTS = ("split", "stats", "manifests", _manifest_files)
MANIFESTS = arg(
    "--manifests", type=Path, nargs="+", required=True, help="image block manifests (every model's files)"
)
TRAINED_ARGS = (
    arg("--split", type=Path, required=True, help="split.json"),
    arg("--stats", type=Path, required=True, help="stats/global.json"),
    MANIFESTS,
)
SYNTHETIC = ("models", ("n_base", "levels", "finest_spacing"))
STAGE = arg("--stage", choices=settings.TRAINING_STAGES, required=True)
SPHERE = arg("--sphere", type=Path, required=True, help="sphere.json from `coemu sphere`")

#: Every subcommand, in the order of ``coemu --help``.
COMMANDS = (
    Command(
        "hydro",
        cmd_hydro,
        "write a synthetic hydro model as netCDF",
        sections=(SYNTHETIC,),
        top=("seed",),
        writes=("output",),
        args=(
            arg("output", type=Path),
            arg("--index", type=int, required=True, help="model number"),
            arg(
                "--layout",
                choices=("amr", "random"),
                default="amr",
                help="points on nested lattices (the pipeline's models) or as many uniformly random points"
                " per level (an unstructured cloud)",
            ),
        ),
    ),
    Command(
        "sphere",
        cmd_sphere,
        "global sphere radius over all models (fan-in)",
        sections=(("models", ("source", "count", "directory")),),
        top=("seed",),
        writes=("output",),
        args=(arg("output", type=Path, help="sphere.json"),),
    ),
    Command(
        "cubes",
        cmd_cubes,
        "trim, rotate and regrid one model into its cube file",
        sections=(SYNTHETIC, "cubes"),
        top=("seed",),
        writes=("output",),
        reads=("input", "sphere"),
        named=("output", "input"),
        usage="coemu cubes [options] OUTPUT [INPUT]"
        "  |  coemu cubes [options] --output OUTPUT [--input INPUT]",
        args=(
            arg("output", type=Path, nargs="?", help="the cube netCDF file to WRITE (first)"),
            arg(
                "input",
                type=Path,
                nargs="?",
                help="the model file to READ (second; *.nc point cloud or Magritte *.h5/*.hdf5);"
                " not with --synthetic",
            ),
            arg(
                "--output",
                dest="output_option",
                metavar="OUTPUT",
                type=Path,
                help="the cube file to write (or OUTPUT)",
            ),
            arg(
                "--input",
                dest="input_option",
                metavar="INPUT",
                type=Path,
                help="the model file to read (or INPUT)",
            ),
            arg("--model", help="model id (synthetic: m + index, e.g. m00042)"),
            arg("--synthetic", action="store_true", help="generate synthetic model --model"),
            SPHERE,
            arg("--progress", action="store_true", help="tqdm bar over rotations"),
        ),
    ),
    Command(
        "cubes-many",
        cmd_cubes_many,
        "cube files of a block of models (skips those up to date)",
        sections=(SYNTHETIC, "cubes"),
        top=("seed",),
        writes=("outputs", "manifest"),
        reads=("inputs", "sphere"),
        args=(
            arg("--models", nargs="+", required=True, help="model ids"),
            arg("--outputs", type=Path, nargs="+", required=True, help="cube files, one per model"),
            arg("--inputs", type=Path, nargs="+", help="model files, one per model (not with --synthetic)"),
            arg("--synthetic", action="store_true", help="generate the synthetic models --models"),
            SPHERE,
            arg("--manifest", type=Path, required=True, help="block manifest (JSON) written last"),
            arg("--progress", action="store_true", help="tqdm bar over models"),
        ),
    ),
    Command(
        "render",
        cmd_render,
        "LTE line images of every rotation of a cube file",
        sections=("images",),
        writes=("output", "faceon"),
        reads=("cube",),
        args=(
            arg("cube", type=Path, help="cube netCDF file"),
            arg("output", type=Path, help="image netCDF file"),
            arg("--faceon", type=Path, help="also write rotation 0 at the line centre here"),
        ),
    ),
    Command(
        "render-many",
        cmd_render_many,
        "render several cube files in one process",
        sections=("images",),
        writes=("images", "faceon", "manifest"),
        reads=("cubes",),
        args=(
            arg("--cubes", type=Path, nargs="+", required=True, help="cube netCDF files"),
            arg("--images", type=Path, nargs="+", required=True, help="image files, one per cube"),
            arg("--faceon", type=Path, nargs="+", help="face-on image files, one per cube"),
            arg("--manifest", type=Path, help="block manifest (JSON) written last"),
        ),
    ),
    Command(
        "split",
        cmd_split,
        "train/validation/test split by model",
        sections=("split",),
        writes=("output",),
        reads=("sphere",),
        args=(
            arg("sphere", type=Path, help="sphere.json (its models are split)"),
            arg("output", type=Path, help="split.json"),
        ),
    ),
    Command(
        "stats",
        cmd_stats,
        "global statistics on a Dask cluster",
        sections=("dask", "preprocessing"),
        writes=("output",),
        reads=("split", "manifests", _manifest_files),
        args=(
            arg("split", type=Path, help="split.json"),
            arg("output", type=Path, help="global.json"),
            MANIFESTS,
            arg("--subset", default="train", help="split whose models are reduced (default train)"),
        ),
    ),
    Command(
        "train",
        cmd_train,
        "pretrain or fine-tune an emulator (DDP under torchrun)",
        sections=("training",),
        reads=TRAINED_INPUTS + ("init",),
        folder=("model.pt", "history.csv", "checkpoints/*.pt"),
        args=(
            STAGE,
            arg("--kind", help="emulator kind (default: the first of training.model.kind)"),
            *TRAINED_ARGS,
            arg("--out", type=Path, required=True, help="folder for model.pt, history.csv, checkpoints/"),
            arg("--init", type=Path, help="model.pt whose matching tensors start the run (fine-tuning)"),
            arg("--no-progress", action="store_true", help="no tqdm bar"),
        ),
    ),
    Command(
        "evaluate",
        cmd_evaluate,
        "MaxRel, ZNCC, SSIM and figures on the test models",
        sections=("evaluation", ("models", ("source",))),  # images (the solver's settings): from --config
        top=("seed",),
        reads=TRAINED_INPUTS + ("model", "history"),
        folder=("metrics.json", "table.md", "samples.nc", "*.png"),
        args=(
            STAGE,
            arg("--model", type=Path, required=True, help="model.pt from coemu train"),
            *TRAINED_ARGS,
            arg("--out", type=Path, required=True, help="folder for metrics.json, samples.nc, figures"),
            arg("--history", type=Path, help="the run's history.csv (loss.png)"),
        ),
    ),
    Command(
        "compare",
        cmd_compare,
        "one table of several evaluations (emulator kinds)",
        writes=("out",),
        reads=("metrics",),
        args=(
            arg("metrics", type=Path, nargs="+", help="metrics.json files"),
            arg("--out", type=Path, required=True, help="markdown table to write"),
        ),
    ),
    Command(
        "predict",
        cmd_predict,
        "images of a cube file by a trained emulator",
        writes=("output",),
        reads=("model", "cube"),
        args=(
            arg("model", type=Path, help="model.pt from coemu train"),
            arg("cube", type=Path, help="cube netCDF file (the cube contract, the emulator's grid)"),
            arg("output", type=Path, help="image netCDF file to write"),
            arg("--device", default="cpu", choices=("cpu", "cuda", "auto")),
            arg("--batch-size", type=int, default=8, help="cubes per forward pass"),
        ),
    ),
    Command(
        "observe",
        cmd_observe,
        "a FITS cube of a model from any direction, at a distance, with a beam",
        sections=(SYNTHETIC, "cubes", "images", "observations"),
        top=("seed",),
        writes=("output", _moment_maps),
        reads=("input", "sphere", "emulator"),
        args=(
            arg("output", type=Path, help="FITS file to write"),
            arg("--model", help="synthetic model id (m00003), with the config's seed and layout"),
            arg("--input", type=Path, help="a model file (*.nc point cloud or Magritte *.h5) instead"),
            arg("--inclination", type=float, default=0.0, help="deg; 0 = face-on (the cubes' rotation 0)"),
            arg("--position-angle", type=float, default=0.0, help="deg east of north of the orbital axis"),
            arg("--azimuth", type=float, default=0.0, help="deg about the orbital axis"),
            arg("--sphere", type=Path, help="sphere.json whose radius sets the cells (default: the model's)"),
            arg("--emulator", type=Path, help="render with this trained model.pt instead of the solver"),
            arg("--moments", action="store_true", help="also write OUTPUT's .mom0/.mom1/.mom2.fits"),
        ),
    ),
    Command(
        "export-observations",
        cmd_export_observations,
        "the test models' images as FITS cubes and moment-0 maps",
        sections=("observations",),
        reads=("split", "manifests", _manifest_files),
        folder=("manifest.json", "*.png", "*/r*.fits"),
        args=(
            arg("--split", type=Path, required=True, help="split.json"),
            MANIFESTS,
            arg("--out", type=Path, required=True, help="folder for the FITS files and figures"),
        ),
    ),
    Command(
        "fit",
        cmd_fit,
        "fit model families to an observation: posterior, evidence, Bayes factor",
        sections=("fit", ("images", ("molecule", "transition", "datafile", "v_turbulence", "background"))),
        top=("seed",),
        reads=("observation", "emulator"),
        folder=("summary.json", "summary.md", "summary.tsv", "*.posterior.nc", "*.png"),
        args=(
            arg("observation", type=Path, help="a FITS cube (coemu observe, the export) or an image netCDF"),
            arg("--out", type=Path, required=True, help="folder for summary.json, posteriors, figures"),
            arg("--truth", help="synthetic model id (m00003): its values fix the parameters not fitted"),
            arg("--fixed", nargs="+", metavar="NAME=VALUE", help="values of parameters not fitted"),
            arg("--emulator", type=Path, help="model.pt, the forward model with --backend emulator"),
            arg("--distance", type=float, help="pc (default: the header's DISTPC)"),
            arg("--v-sys", type=float, help="systemic velocity, km/s (default: the header's VSYS, else 0)"),
            arg("--rotation", type=int, default=0, help="rotation of an image netCDF"),
        ),
    ),
    Command(
        "timing",
        cmd_timing,
        "ms per image: solver, emulator, pomme",
        sections=("timing",),
        reads=TRAINED_INPUTS + ("models",),
        folder=("timing.csv", "timing.md"),
        args=(
            arg("--models", type=Path, nargs="+", required=True, help="model.pt files (pretrain, finetune)"),
            *TRAINED_ARGS,
            arg("--out", type=Path, required=True, help="folder for timing.csv and timing.md"),
        ),
    ),
    Command(
        "check-run",
        cmd_check_run,
        "check a finished run against the README's figures",
        args=_check_run_args,
        plain=True,
    ),
)


def build_parser() -> argparse.ArgumentParser:
    """``coemu``'s parser: one subparser per entry of :data:`COMMANDS`."""
    parser = argparse.ArgumentParser(prog="coemu", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_to(sub)
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
    from coemu.training.preemption import Preempted

    try:
        if getattr(args, "plain", False):  # no config sections: the command reads its own
            return args.func(args)
        _named_or_positional(args, getattr(args, "named", ()))
        config = settings.from_args(args)
        _refuse_overwrites(args, config)  # before anything is read
        args.func(args, config)
    except CoemuInputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except Preempted as stop:
        log.warning("stopped: %s; run again to continue", stop)
        return stop.exit_status
    return 0


if __name__ == "__main__":
    sys.exit(main())
