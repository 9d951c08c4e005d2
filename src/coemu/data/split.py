"""Train / validation / test split by model: every rotation of a model lands in one split.

The paper split per sample, so rotations of one model, which are nearly the
same data seen from another side, sat in both the training and the test set.
Here whole models are assigned. The assignment depends only on (seed, model
id, fractions, number of models): models are ordered by a keyed hash of their
id and cut at exact counts, so the same configuration always gives the same
split, and adding models moves only a few existing models across a boundary.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

SPLITS = ("train", "validation", "test")


def _key(seed: int, model: str) -> bytes:
    return hashlib.sha256(f"coemu-split:{seed}:{model}".encode()).digest()


def split_counts(n_models: int, fractions: dict[str, float]) -> dict[str, int]:
    """Models per split: validation and test get round(f n), at least 1 where f > 0; train the rest.

    Raises:
        ValueError: fractions that do not sum to 1, or too few models for the
            non-empty splits (training needs at least one).
    """
    total = sum(fractions[s] for s in SPLITS)
    if abs(total - 1.0) > 1e-9:
        raise ValueError(f"split fractions must sum to 1, got {total:g}")
    counts = {s: (max(1, round(fractions[s] * n_models)) if fractions[s] > 0 else 0) for s in SPLITS[1:]}
    counts["train"] = n_models - counts["validation"] - counts["test"]
    if counts["train"] < 1:
        raise ValueError(f"{n_models} models are too few for the split {fractions}")
    return counts


def split_models(models: Sequence[str], fractions: dict[str, float], seed: int) -> dict[str, list[str]]:
    """Assign each model id to one of :data:`SPLITS`; lists keep the input order.

    Args:
        models: model ids (unique).
        fractions: ``{"train": f, "validation": f, "test": f}``, summing to 1.
        seed: split seed.
    """
    if len(set(models)) != len(models):
        raise ValueError("model ids must be unique")
    counts = split_counts(len(models), fractions)
    ranked = sorted(models, key=lambda m: _key(seed, m))
    cut = {"test": ranked[: counts["test"]]}
    cut["validation"] = ranked[counts["test"] : counts["test"] + counts["validation"]]
    members = {m: s for s in ("test", "validation") for m in cut[s]}
    return {s: [m for m in models if members.get(m, "train") == s] for s in SPLITS}


def write_split(sphere: str | Path, output: str | Path, settings: dict) -> dict:
    """Split the models of ``sphere.json`` by the ``split`` config section into ``split.json``.

    Returns:
        the written document: the model lists per split, ``counts``, ``fractions``, ``seed``.
    """
    from coemu.io.atomic import write_json_atomic
    from coemu.io.errors import CoemuInputError
    from coemu.io.validation import read_json

    try:
        models = list(read_json(sphere)["models"])
    except (KeyError, TypeError) as err:
        raise CoemuInputError(sphere, "models", f"cannot be read ({err!r})") from None
    fractions = {k: settings[k] for k in SPLITS}
    try:
        split = split_models(models, fractions, settings["seed"])
    except ValueError as err:
        raise CoemuInputError(None, "split", str(err), kind="config key") from None
    summary = {
        "seed": settings["seed"],
        "fractions": fractions,
        "counts": {k: len(v) for k, v in split.items()},
    }
    write_json_atomic(summary | split, output)
    return summary | split
