# Config validation and the helpers the rules share (wiring only; logic is in coemu).
import json
import shlex

from snakemake.utils import min_version, validate

from coemu import resources
from coemu.data.split import split_models
from coemu.hydro.catalog import list_model_files, model_blocks, model_ids

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


def model_file(wildcards):
    return MODEL_FILES[wildcards.model]


# Input of a per-model job: the model file; none for synthetic models, which the
# job generates from (seed, index). Static where possible: dry runs of 10^4 jobs
# pay for every function call per job.
MODEL_FILE = [] if SYNTHETIC else model_file


def model_source_args():
    """`coemu cubes` options that say where the model comes from."""
    m = config["models"]
    if SYNTHETIC:
        return f"--synthetic --seed {config['seed']} --n-base {m['n_base']} --levels {m['levels']}"
    return f"--seed {config['seed']}"


def sphere_source_args():
    m = config["models"]
    if SYNTHETIC:
        return f"--synthetic-count {m['count']} --seed {config['seed']}"
    return f"--directory {m['directory']}"


def all_cubes():
    return expand("results/cubes/{model}.nc", model=MODELS)


def cube_mem_mb():
    return resources.cube_mem_mb(config["cubes"]["rotations"], config["cubes"]["grid"])


def cube_runtime_min():
    return resources.cube_runtime_min(
        config["cubes"]["rotations"], config["cubes"]["grid"]
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


# Image jobs render blocks of consecutive models: block name -> model ids.
IMAGE_BLOCKS = model_blocks(MODELS, config["images"]["models_per_job"])


def all_images():
    return expand("results/{kind}/{model}.nc", kind=["images", "faceon"], model=MODELS)


# The split by model, computed here (a pure function of the config) so that the
# statistics job's inputs, the training models' files, are known when the DAG is
# built; rule split writes the same assignment to results/split.json.
SPLIT = split_models(
    MODELS,
    {k: config["split"][k] for k in ("train", "validation", "test")},
    config["split"]["seed"],
)


def split_args():
    s = config["split"]
    return f"--train {s['train']} --validation {s['validation']} --test {s['test']} --seed {s['seed']}"


# The dask section, passed whole to `coemu stats` (cluster and median-search settings).
DASK_JSON = shlex.quote(json.dumps(config["dask"]))
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
TRAIN_OMP = TRAIN["cpus_per_gpu"] if TRAIN_GPUS else TRAIN["threads_per_process"]
TRAINING_JSON = shlex.quote(json.dumps(TRAIN))
# Pretraining and fine-tuning read the training and validation models' files.
FIT_MODELS = SPLIT["train"] + SPLIT["validation"]
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
