"""Checkpoints written atomically, resumed automatically, and weights carried from pretraining.

``checkpoints/last.pt`` holds everything a restart needs: model, optimizer and
scheduler state, the epoch and the number of batches done in it (non-zero
after a preemption), the history rows, the RNG states and a fingerprint of
the settings; a checkpoint whose fingerprint differs (the config changed) is
not resumed from.

Every file holds tensors and plain data only (numbers, strings, lists,
tuples, dicts) and is read by :func:`load` with ``torch.load(weights_only=True)``:
a file that needs any other object (a pickle that would run code) is refused,
and so is anything else that is not such a file (missing, empty, not a torch
archive, a torch archive of something else), with one error naming the file and,
for a model file, how to remake it (:func:`remake_hint`).

Every file carries the number of its layout, ``format`` (:data:`FORMAT`), and
:func:`load` refuses a file of another format with an error that names the file,
the format found, the format this coemu reads and how to remake it. Files
written before the field existed lack it; their content is format 1's, so a
file without ``format`` counts as format 1.
"""

from __future__ import annotations

import hashlib
import json
import logging
import pickle
import random
import shlex
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from coemu.io.atomic import atomic_output
from coemu.io.errors import CoemuInputError

log = logging.getLogger(__name__)

#: The keys each kind of file holds at least: a model file (model.pt, written at the end of
#: training) and a checkpoint (checkpoints/last.pt or best.pt).
REQUIRED_KEYS = {"model file": ("kind", "kwargs", "model"), "checkpoint": ("model",)}
_KEY_TYPES = {"kind": str, "kwargs": dict, "model": dict}  # "model": the state dict
#: The layout of the files :func:`save` writes (model files and checkpoints), saved as their
#: ``format`` and checked by :func:`load`. Format 1: the keys of :data:`REQUIRED_KEYS`, a model
#: file's ``data``, ``run`` and ``digest``, a checkpoint's optimiser, schedule, position, history,
#: RNG states and fingerprint (:meth:`coemu.training.loop.Trainer.save_checkpoint`). Files
#: without the field predate it and hold format 1. Raise it when what a file holds changes
#: (a key added that readers need, removed, renamed or of another meaning), and note here what
#: the new format holds.
FORMAT = 1
#: The format of a file without the ``format`` field (written before the field existed).
UNMARKED_FORMAT = 1
#: The last two parts of the pipeline's model files' paths (a training stage's folder).
_MODEL_FILES = {("pretrain", "model.pt"), ("finetune", "model.pt")}


def fingerprint(settings: dict[str, Any]) -> str:
    """SHA-256 of the settings that define a run (JSON with sorted keys)."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()


def rng_state() -> dict[str, Any]:
    """The RNG states as tensors and plain data (numpy's key array as a tensor)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()  # noqa: NPY002 (global state)
    state = {
        "torch": torch.get_rng_state(),
        "numpy": (name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached),
        "python": random.getstate(),
    }
    if torch.cuda.is_available():  # this rank's GPU only: a job may resume on fewer GPUs
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))  # noqa: NPY002
    random.setstate(state["python"])
    cuda = state.get("cuda")
    if isinstance(cuda, torch.Tensor) and torch.cuda.is_available():  # older files: a list of all GPUs'
        torch.cuda.set_rng_state(cuda)


def save(path: str | Path, state: dict[str, Any]) -> None:
    """``torch.save`` of ``state`` and its ``format`` (:data:`FORMAT`) to a temporary file beside
    ``path``, then rename: never half-written."""
    with atomic_output(path) as tmp:
        torch.save({**state, "format": FORMAT}, tmp)


def load(path: str | Path, what: str = "checkpoint") -> dict[str, Any]:
    """A checkpoint or model file (``what``: a key of :data:`REQUIRED_KEYS`), unpickling
    tensors and plain data only: the one way coemu reads them.

    Raises:
        CoemuInputError: naming ``path``, "not a coemu model file (why)" (or "checkpoint")
            when it is missing, empty, not a torch archive or one without the keys of
            ``what``; "refused" when it needs other objects (such a file could run code when
            loaded); the format found and :data:`FORMAT` when its ``format`` is another (a file
            without one counts as :data:`UNMARKED_FORMAT`). For a model file the message says
            how to remake it (:func:`remake_hint`); it never suggests loading the file without
            ``weights_only``.
    """
    required = REQUIRED_KEYS[what]
    try:
        saved = _read_archive(path)
    except _NotReadable as err:
        raise _load_error(path, what, f"not a coemu {what} ({err})") from None
    except pickle.UnpicklingError as err:
        problem = f"refused: it holds more than tensors and plain data ({_unpickling_reason(err)})"
        raise _load_error(path, what, f"{problem}: loading it could run code") from None
    if missing := _missing_keys(saved, required):
        raise _load_error(path, what, f"not a coemu {what} ({missing})")
    if problem := _format_problem(saved.get("format", UNMARKED_FORMAT)):
        raise _load_error(path, what, f"a coemu {what} of {problem}")
    return saved


def _format_problem(found: Any) -> str:
    """What is wrong with the format number ``found`` ("" when it is :data:`FORMAT`)."""
    if isinstance(found, bool) or not isinstance(found, int):
        return f"format {found!r}, not a format number; this coemu reads format {FORMAT}"
    if found == FORMAT:
        return ""
    writer = "a newer" if found > FORMAT else "an older"
    return f"format {found} (written by {writer} coemu); this coemu reads format {FORMAT}"


class _NotReadable(Exception):
    """Why a file is not a torch archive (for :func:`load`'s message)."""


def _read_archive(path: str | Path) -> Any:
    """What the torch archive ``path`` holds (``weights_only``).

    Raises:
        _NotReadable: missing, not a regular file, empty, not a zip archive, or a damaged
            or foreign zip archive.
        pickle.UnpicklingError: it needs objects other than tensors and plain data.
    """
    path = Path(path)
    if not path.exists():
        raise _NotReadable("no such file")
    if not path.is_file():
        raise _NotReadable("not a regular file")
    size = path.stat().st_size
    if size == 0:
        raise _NotReadable("0 bytes")
    # torch.save writes zip archives; anything else (text, a plain pickle, a truncated
    # file that lost its zip directory) goes no further than this
    if not zipfile.is_zipfile(path):
        raise _NotReadable(f"not a torch archive, {size} bytes")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, OSError, EOFError, KeyError, ValueError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise _NotReadable(f"not a torch archive, a zip file torch cannot read: {first[:200]}") from None


def _unpickling_reason(err: pickle.UnpicklingError) -> str:
    """The line of torch's refusal that says what the file needs, without its advice
    (to load the file with ``weights_only=False``, which would run its code)."""
    advice = ("weights_only", "weights only", "torch.load", "please file an issue", "check the documentation")
    lines = [line.strip() for line in str(err).splitlines()]
    kept = [line for line in lines if line and not any(a in line.lower() for a in advice)]
    reason = " ".join(kept).removeprefix("WeightsUnpickler error:").strip().rstrip(".")
    return reason or "objects other than tensors and plain data"


def _missing_keys(saved: Any, required: tuple[str, ...]) -> str:
    """What ``saved`` lacks of a dict with the ``required`` keys ("" when nothing)."""
    if not isinstance(saved, dict):
        return f"a torch archive of a {type(saved).__name__}, not of a dict"
    missing = [k for k in required if k not in saved]
    if missing:
        return f"a torch archive without {', '.join(repr(k) for k in missing)}"
    for key in required:
        if not isinstance(saved[key], _KEY_TYPES[key]):
            return f"its {key!r} is a {type(saved[key]).__name__}, not a {_KEY_TYPES[key].__name__}"
    return ""


def _load_error(path: str | Path, what: str, problem: str) -> CoemuInputError:
    """The error of a file :func:`load` cannot use; a model file's says how to remake it."""
    if what == "model file":
        problem = f"{problem}; {remake_hint(path)}"
    return CoemuInputError(path, None, problem)


def remake_hint(path: str | Path) -> str:
    """How to remake the model file ``path``: ``coemu train`` writes model files; one at the
    pipeline's place for them (``results/train/KIND/STAGE/model.pt``) is remade by forcing
    that file, ``snakemake --forcerun results/train/KIND/STAGE/model.pt`` (in the folder that
    holds ``results/``): it reruns the training job that writes it and the jobs that read it.
    """
    target = pipeline_target(path)
    if target is None:
        return "remake it with `coemu train`"
    root, name = target
    where = "" if root == Path() else f"cd {shlex.quote(str(root))} && "
    return f"remake it with `coemu train` (in the pipeline: `{where}snakemake --forcerun {name}`)"


def pipeline_target(path: str | Path) -> tuple[Path, str] | None:
    """(the pipeline's folder, the target relative to it) when ``path`` lies where the
    pipeline writes its model files, ``results/train/KIND/STAGE/model.pt`` (workflow/rules/train.smk;
    every kind, the first included, has its folder); else None."""
    parts = Path(path).parts
    tail = parts[-5:]
    if len(tail) == 5 and tail[:2] == ("results", "train") and tail[-2:] in _MODEL_FILES:
        return Path(*parts[:-5]), "/".join(tail)
    return None


def load_matching(model: torch.nn.Module, path: str | Path) -> list[str]:
    """Copy every tensor of the saved ``model`` state whose name and shape match; return the others.

    Returns:
        names of the model's tensors left as initialised (absent or of another shape in the file).
    """
    saved = load(path, "model file")["model"]
    own = model.state_dict()
    matched = {k: v for k, v in saved.items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(matched, strict=False)
    return sorted(set(own) - set(matched))
