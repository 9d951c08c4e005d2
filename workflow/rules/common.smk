# Config validation and the helpers the rules share (wiring only; logic is in coemu).
import os
from pathlib import Path

from snakemake.logging import logger
from snakemake.utils import min_version, validate

from coemu import resources, settings
from coemu.hydro.catalog import list_model_files, model_blocks, model_ids
from coemu.io.blocks import changed_marker, mark_changed_blocks
from coemu.io.provenance import STAGE_PACKAGES, code_digest

min_version("9.0")


# The schema is the package's (coemu run by hand uses the same defaults); the
# cross-field checks (coemu.settings.check) run before any job, too.
validate(config, settings.SCHEMA_PATH)
settings.check(config, ", ".join(map(str, workflow.configfiles)) or "config")

SYNTHETIC = config["models"]["source"] == "synthetic"


wildcard_constraints:
    block="b[0-9]+",
    stage="|".join(settings.TRAINING_STAGES),
    kind="|".join(settings.emulator_kinds(config["training"])),


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
    """The per-model files of ``kind`` (cubes, images, faceon) that block job makes."""
    return [f"results/{kind}/{model}.nc" for model in BLOCKS[block]]


def block_model_files(wildcards):
    """The model files of a block (none for synthetic models, which the job generates)."""
    return [MODEL_FILES[m] for m in BLOCKS[wildcards.block]] if not SYNTHETIC else []


def manifests(kind):
    """Every block's manifest of ``kind`` (cubes or images)."""
    return expand(f"results/blocks/{kind}/{{block}}.json", block=BLOCKS)


# A per-model file deleted or rewritten since its block's manifest was written (a scratch
# purge): the block gets results/blocks/{kind}/{block}.changed.json, an input of its job
# newer than its manifest, so the job reruns and remakes the file, then what follows.
# Checked by the snakemake you start only, and only while no other run holds the workflow's
# lock: a cluster job's own snakemake, or a dry run beside a run, would see the block jobs
# running half done.
CHANGED_BLOCKS = (
    mark_changed_blocks(manifests("cubes") + manifests("images"))
    if workflow.is_main_process and not any(Path(".snakemake/locks").glob("*"))
    else {}
)
for _manifest, _files in CHANGED_BLOCKS.items():
    logger.warning(
        f"{_manifest}: {len(_files)} file(s) no longer as listed, its job reruns: "
        + "; ".join(f"{path}: {what}" for path, what in list(_files.items())[:3])
    )


def changed_block(kind):
    """Input function: the block's changed.json where one was written (else nothing)."""

    def marker(wildcards):
        path = changed_marker(f"results/blocks/{kind}/{wildcards.block}.json")
        return [str(path)] if path.exists() else []

    return marker


def stage_config(stage, kind=None):
    """The config sections stage ``stage`` reads, as canonical JSON: the rule's --config
    and a parameter (a change to any other setting does not rerun the stage)."""
    return settings.to_json(settings.stage_config(config, stage, kind))


# Digest of the code each stage runs (syntax trees of its subpackages): a rule
# parameter, so a code change reruns that stage and what depends on it.
CODE = {stage: code_digest(stage) for stage in STAGE_PACKAGES}


def block_size(wildcards):
    return len(BLOCKS[wildcards.block])


CUBES = config["cubes"]
IMAGES = config["images"]
# A LAMDA file given in the config is an input of the image jobs (its edits rerun them).
LINE_DATAFILE = IMAGES["datafile"] or []
IMAGE_GPUS = 1 if IMAGES["device"] == "cuda" else 0


DASK = config["dask"]
DASK_LOCAL = DASK["cluster"] == "local" and not DASK["scheduler_address"]
DASK_THREADS = DASK["workers"] * DASK["threads_per_worker"] if DASK_LOCAL else 1
DASK_MEM_MB = resources.dask_mem_mb(
    DASK["workers"] if DASK_LOCAL else 1, DASK["memory_limit"]
)


# Training: torchrun runs one process per GPU, or `processes` CPU processes (gloo).
TRAIN = config["training"]
# Emulator kinds: every kind is trained and evaluated under results/{train,evaluation}/
# {kind}/{stage}/; the first (EMULATOR) is the pipeline's: the timing, the fit and check-run
# use it, and the others are compared with it (results/evaluation/kinds.md).
KINDS = settings.emulator_kinds(TRAIN)
EMULATOR = settings.pipeline_emulator(TRAIN)
STAGES = list(settings.TRAINING_STAGES)
TRAIN_GPUS = settings.training_gpus(TRAIN)
TRAIN_NPROC = settings.training_processes(TRAIN)
TRAIN_THREADS = (
    TRAIN_GPUS * TRAIN["cpus_per_gpu"]
    if TRAIN_GPUS
    else TRAIN["processes"] * TRAIN["threads_per_process"]
)


def pretrained_model(wildcards):
    """Fine-tuning starts from the same kind's pretrained model; pretraining from nothing."""
    if wildcards.stage == "pretrain":
        return []
    return expand(rules.train.output.model, kind=wildcards.kind, stage="pretrain")


def evaluation_figure(name, caption):
    """An evaluation output shown in the report under its kind and stage."""
    return report(
        f"results/evaluation/{{kind}}/{{stage}}/{name}",
        caption=f"../report/{caption}.rst",
        category="Evaluation",
        subcategory="{kind} {stage}",
    )


# SLURM: --gpus=N --cpus-per-gpu=C for GPU jobs (0: not a GPU job, --cpus-per-task=threads).
TRAIN_CPUS_PER_GPU = TRAIN["cpus_per_gpu"] if TRAIN_GPUS else 0
# torchrun forwards these to the training processes (SIGUSR1: SLURM's time-limit warning).
TORCHRUN_SIGNALS = "SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1"

EVALUATION_GPUS = 1 if config["evaluation"]["device"] == "cuda" else 0
# Timing: CPU rows always, CUDA rows when asked for (the job then needs a GPU).
TIMING_GPUS = 1 if config["timing"]["device"] == "cuda" else 0
