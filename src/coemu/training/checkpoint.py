"""Checkpoints written atomically, resumed automatically, and weights carried from pretraining.

``checkpoints/last.pt`` holds everything a restart needs: model, optimizer and
scheduler state, the epoch and the number of batches done in it (non-zero
after a preemption), the history rows, the RNG states and a fingerprint of
the settings; a checkpoint whose fingerprint differs (the config changed) is
not resumed from.
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
    state = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),  # noqa: NPY002 (global state, as libraries use it)
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])  # noqa: NPY002
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save(path: str | Path, state: dict[str, Any]) -> None:
    """``torch.save`` to a temporary file beside ``path``, then rename: never half-written."""
    with atomic_output(path) as tmp:
        torch.save(state, tmp)


def load(path: str | Path) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=False)


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
