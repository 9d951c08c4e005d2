# Config validation and the helpers the rules share (wiring only; logic is in coemu).
import json
import shlex

from snakemake.utils import min_version, validate

from coemu import resources
from coemu.hydro.catalog import list_model_files, model_blocks, model_ids
from coemu.io.provenance import STAGE_PACKAGES, code_digest

min_version("9.0")


validate(config, "../schemas/config.schema.yaml")

SYNTHETIC = config["models"]["source"] == "synthetic"


wildcard_constraints:
    model="[A-Za-z0-9_.-]+",


# Model id -> file path (source directory), listed once: an input function that
# listed the folder per job would cost O(models^2) when the DAG is built.
MODEL_FILES = (
    {}
    if SYNTHETIC
    else {k: str(v) for k, v in list_model_files(config["models"]["directory"]).items()}
)


MODELS = model_ids(config["models"]) if SYNTHETIC else list(MODEL_FILES)


# Cube and image jobs handle blocks of consecutive models (models.per_job): block
# name -> model ids. Later stages depend on each block's small manifest, not on
# every model's files, which keeps the paper-scale DAG small.
BLOCKS = model_blocks(MODELS, config["models"]["per_job"])


def block_files(kind, block):
    return expand(f"results/{kind}/{{model}}.nc", model=BLOCKS[block])


def block_model_files(block):
    """The model files of a block (none for synthetic models, which the job generates)."""
    return [] if SYNTHETIC else [MODEL_FILES[m] for m in BLOCKS[block]]


def manifests(kind):
    """Every block's manifest of ``kind`` (cubes or images)."""
    return expand(f"results/blocks/{kind}/{{block}}.json", block=BLOCKS)


# Digest of the code each stage runs (syntax trees of its subpackages): a rule
# parameter, so a code change reruns that stage and what depends on it.
CODE = {stage: code_digest(stage) for stage in STAGE_PACKAGES}


def model_source_args():
    """`coemu cubes` options that say where the model comes from."""
    m = config["models"]
    if SYNTHETIC:
        return f"--synthetic --seed {config['seed']} --n-base {m['n_base']} --levels {m['levels']}"
    return f"--seed {config['seed']} --inputs"


def sphere_source_args():
    m = config["models"]
    if SYNTHETIC:
        return f"--synthetic-count {m['count']} --seed {config['seed']}"
    return f"--directory {m['directory']}"


def cube_mem_mb():
    return resources.cube_mem_mb(config["cubes"]["rotations"], config["cubes"]["grid"])


def cube_runtime_min(n_models):
    return resources.cube_runtime_min(
        config["cubes"]["rotations"], config["cubes"]["grid"], n_models
    )


def solver_args():
    """`coemu render` options from the images section."""
    i = config["images"]
    args = (
        f"--channels {i['channels']} --spacing {i['spacing']} --molecule {i['molecule']}"
        f" --transition {i['transition']} --v-turbulence {i['v_turbulence']}"
        f" --background {i['background']} --device {i['device']} --dtype {i['dtype']}"
    )
    if i["datafile"]:
        args += f" --datafile {i['datafile']}"
    return args + (" --compile" if i["compile"] else "")


# A LAMDA file given in the config is an input of the image jobs (its edits rerun them).
LINE_DATAFILE = config["images"]["datafile"] or []
IMAGE_GPUS = 1 if config["images"]["device"] == "cuda" else 0


def image_mem_mb():
    return resources.image_mem_mb(config["cubes"]["rotations"], config["cubes"]["grid"])


def image_runtime_min(n_models):
    return resources.image_runtime_min(
        config["cubes"]["rotations"],
        config["cubes"]["grid"],
        config["images"]["channels"],
        IMAGE_GPUS > 0,
        n_models,
    )


def split_args():
    s = config["split"]
    return f"--train {s['train']} --validation {s['validation']} --test {s['test']} --seed {s['seed']}"


# The dask section, passed whole to `coemu stats` (cluster and median-search settings).
DASK_JSON = shlex.quote(json.dumps(config["dask"], sort_keys=True))
PREPROCESSING_ARGS = (
    f"--density-floor {config['preprocessing']['density_floor']}"
    f" --intensity-floor {config['preprocessing']['intensity_floor']}"
)


DASK_LOCAL = (
    config["dask"]["cluster"] == "local" and not config["dask"]["scheduler_address"]
)
DASK_THREADS = (
    config["dask"]["workers"] * config["dask"]["threads_per_worker"]
    if DASK_LOCAL
    else 1
)
DASK_MEM_MB = resources.dask_mem_mb(
    config["dask"]["workers"] if DASK_LOCAL else 1, config["dask"]["memory_limit"]
)


# Training: torchrun runs one process per GPU, or `processes` CPU processes (gloo).
TRAIN = config["training"]
TRAIN_GPUS = TRAIN["gpus"] if TRAIN["device"] != "cpu" else 0
TRAIN_NPROC = TRAIN_GPUS or TRAIN["processes"]
TRAIN_THREADS = (
    TRAIN_GPUS * TRAIN["cpus_per_gpu"]
    if TRAIN_GPUS
    else TRAIN["processes"] * TRAIN["threads_per_process"]
)
# SLURM: --gpus=N --cpus-per-gpu=C for GPU jobs (0: not a GPU job, --cpus-per-task=threads).
TRAIN_CPUS_PER_GPU = TRAIN["cpus_per_gpu"] if TRAIN_GPUS else 0
TRAIN_OMP = TRAIN["cpus_per_gpu"] if TRAIN_GPUS else TRAIN["threads_per_process"]


# Settings that size the job, not the model it trains.
JOB_SIZE_KEYS = ("mem_mb", "cpus_per_gpu", "threads_per_process")


def training_json(stage):
    """The training section for one stage, keys sorted: without the other stage's settings,
    the job's size (JOB_SIZE_KEYS) and time limit, so that none of them reruns the stage
    (a longer time limit resumes it)."""
    other = "finetune" if stage == "pretrain" else "pretrain"
    settings = {k: v for k, v in TRAIN.items() if k not in (other, *JOB_SIZE_KEYS)}
    settings[stage] = {k: v for k, v in TRAIN[stage].items() if k != "runtime"}
    return shlex.quote(json.dumps(settings, sort_keys=True))


# torchrun forwards these to the training processes (SIGUSR1: SLURM's time-limit warning).
TORCHRUN_SIGNALS = "SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1"


# Timing: CPU rows always, CUDA rows when asked for (the job then needs a GPU).
TIMING = config["timing"]
TIMING_GPUS = 1 if TIMING["device"] == "cuda" else 0
TIMING_ARGS = (
    f"--repeats {TIMING['repeats']} --large-batch {TIMING['large_batch']}"
    f" --devices cpu{' cuda' if TIMING_GPUS else ''}"
    + ("" if TIMING["pomme"] else " --no-pomme")
)
