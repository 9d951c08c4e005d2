"""Block jobs and their manifests: make each model's files unless they are up to date, then list them.

A cube or image job handles a block of ``models.per_job`` models. For each
model it compares the fingerprint its files carry with the one it would write
(the stage's recipe: inputs, settings, code) and makes only the models whose
files differ or are missing; then it writes the block's *manifest*, its one
declared output, which later stages read instead of depending on every file.

Manifest (JSON): ``{"block": name, "n_models": N, "models": {model: {kind:
{"path", "fingerprint", "size", "mtime_ns"}}}}``; the kinds are ``cube`` in a
cube manifest and ``cube``, ``image``, ``faceon`` in an image manifest. Paths
are as the rule gave them (relative to the directory Snakemake runs in).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from coemu.io.errors import CoemuInputError
from coemu.io.provenance import file_identity, stored_fingerprint
from coemu.io.validation import read_json

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BlockItem:
    """One model of a block.

    Attributes:
        model: model id.
        outputs: kind -> file the job writes for this model (each carries the fingerprint).
        inputs: kind -> file the job reads for this model, listed in the manifest too.
        source: what the stage needs besides the paths (a model file, or None).
    """

    model: str
    outputs: Mapping[str, Path]
    inputs: Mapping[str, Path] = field(default_factory=dict)
    source: Path | None = None


def run_block(
    items: Sequence[BlockItem],
    fingerprint_of: Callable[[BlockItem], str],
    make: Callable[[BlockItem, str], None],
    manifest: str | Path | None,
    done: str = "made",
    progress: bool = True,
) -> int:
    """Make every item whose outputs lack the fingerprint it would get, then write the manifest.

    Args:
        fingerprint_of: the stage's recipe: item -> the fingerprint its files should carry.
        make: writes the item's outputs (atomically), stamped with the fingerprint it is given.
        manifest: the block's manifest, written last (atomically); None: none.
        done: the verb of the summary line (``3 of 4 cubes made, 1 kept``).

    Returns:
        the number of items made.
    """
    from tqdm import tqdm

    from coemu.io.atomic import remove_stale_temporaries

    made = 0
    for item in tqdm(items, unit="model", disable=not progress):
        for path in item.outputs.values():
            remove_stale_temporaries(path)
        wanted = fingerprint_of(item)
        if all(stored_fingerprint(path) == wanted for path in item.outputs.values()):
            log.info("%s: up to date (%s), kept", item.model, wanted)
            continue
        make(item, wanted)
        made += 1
    if manifest is not None:
        manifest = Path(manifest)
        write_manifest(manifest, manifest.stem, {i.model: {**i.inputs, **i.outputs} for i in items})
    log.info("%d of %d %s, %d kept; manifest %s", made, len(items), done, len(items) - made, manifest)
    return made


def same_length(**lists: Sequence | None) -> None:
    """CoemuInputError unless the given lists (None: not given) have one length."""
    lengths = {k: len(v) for k, v in lists.items() if v is not None}
    if len(set(lengths.values())) > 1:
        raise CoemuInputError(None, None, f"need the same number of files for each: {lengths}")


def write_manifest(path: str | Path, block: str, files: Mapping[str, Mapping[str, str | Path]]) -> None:
    """The block's manifest: model id -> {kind: file} with each file's fingerprint, size and time."""
    from coemu.io.atomic import write_json_atomic

    entries = {
        model: {
            kind: {"path": str(f), "fingerprint": stored_fingerprint(f), **file_identity(f)}
            for kind, f in kinds.items()
        }
        for model, kinds in files.items()
    }
    write_json_atomic({"block": block, "n_models": len(entries), "models": entries}, path)


def read_manifests(paths: Iterable[str | Path]) -> dict[str, dict[str, Path]]:
    """Model id -> {kind: path} over the manifests ``paths`` (later stages' per-model files).

    Raises:
        CoemuInputError: a manifest is missing or malformed, or two list the same model.
    """
    files: dict[str, dict[str, Path]] = {}
    where: dict[str, Path] = {}
    for path in map(Path, paths):
        doc = read_json(path)
        try:
            models = doc["models"]
            entries = {m: {k: Path(e["path"]) for k, e in kinds.items()} for m, kinds in models.items()}
        except (KeyError, TypeError, AttributeError) as err:
            raise CoemuInputError(path, "models", f"not a block manifest ({err!r})") from None
        for model, kinds in entries.items():
            if model in files:
                raise CoemuInputError(path, "models", f"model '{model}' is also in {where[model]}")
            files[model], where[model] = kinds, path
    return files


def model_files(
    files: Mapping[str, Mapping[str, Path]], models: Iterable[str], kinds: Iterable[str], source: str | Path
) -> dict[str, dict[str, Path]]:
    """The ``kinds`` files of ``models`` from :func:`read_manifests`' result.

    Raises:
        CoemuInputError: naming ``source`` (what listed the models) for a model or kind no manifest has.
    """
    out = {}
    for model in models:
        if model not in files:
            raise CoemuInputError(source, model, "model is in no manifest given", kind="model")
        missing = [k for k in kinds if k not in files[model]]
        if missing:
            raise CoemuInputError(
                source, model, f"its manifest lists no {', '.join(missing)} file", kind="model"
            )
        out[model] = {k: files[model][k] for k in kinds}
    return out
