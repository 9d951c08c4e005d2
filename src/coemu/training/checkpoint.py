"""Checkpoints written atomically, resumed automatically, and weights carried from pretraining.

``checkpoints/last.pt`` holds everything a restart needs: model, optimizer and
scheduler state, the epoch and the number of batches done in it (non-zero
after a preemption), the history rows, the RNG states and a fingerprint of
the settings; a checkpoint whose fingerprint differs (the config changed) is
not resumed from.

Every file holds tensors and plain data only (numbers, strings, lists,
tuples, dicts) and is read with ``torch.load(weights_only=True)``: a file
that needs any other object (a pickle that would run code) is refused.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from coemu.io.atomic import atomic_output

log = logging.getLogger(__name__)


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
    """``torch.save`` to a temporary file beside ``path``, then rename: never half-written."""
    with atomic_output(path) as tmp:
        torch.save(state, tmp)


def load(path: str | Path) -> dict[str, Any]:
    """A checkpoint or model file, unpickling tensors and plain data only.

    Raises:
        CoemuInputError: naming ``path`` when the file needs anything else
            (such a file could run code when loaded) or is not a torch file.
    """
    import pickle

    from coemu.io.errors import CoemuInputError

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else repr(err)
        raise CoemuInputError(
            path, None, f"refused: it holds more than tensors and plain data ({first})"
        ) from None


def load_matching(model: torch.nn.Module, path: str | Path) -> list[str]:
    """Copy every tensor of the saved ``model`` state whose name and shape match; return the others.

    Returns:
        names of the model's tensors left as initialised (absent or of another shape in the file).
    """
    saved = load(path)["model"]
    own = model.state_dict()
    matched = {k: v for k, v in saved.items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(matched, strict=False)
    return sorted(set(own) - set(matched))
