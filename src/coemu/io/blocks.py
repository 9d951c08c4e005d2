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

A per-model file deleted or rewritten after its manifest was written (a scratch
purge, a file removed by hand) is found when the workflow starts:
:func:`mark_changed_blocks` compares every manifest's files with the size and
time it recorded and writes ``{block}.changed.json`` beside the manifest of each
block that no longer matches. The rules make that file an input of the block's
job: it is newer than the manifest, so Snakemake reruns the job, which remakes
what is missing or changed and what depends on it.
"""

from __future__ import annotations

import logging
import os
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


def changed_files(manifest: str | Path, identities: dict[str, tuple[int, int] | None] | None = None) -> dict:
    """The files ``manifest`` lists whose size or modification time is no longer the one it
    recorded: path -> ``"missing"`` or ``"size A -> B bytes"`` or ``"modified"``.

    Args:
        identities: a cache path -> (size, mtime_ns), None for a missing file, shared by calls
            (the cube files are listed in both kinds of manifest).

    Raises:
        CoemuInputError: the manifest is not a block manifest.
    """
    identities = {} if identities is None else identities
    doc = read_json(manifest)
    try:
        entries = [entry for kinds in doc["models"].values() for entry in kinds.values()]
        recorded = {str(e["path"]): (int(e["size"]), int(e["mtime_ns"])) for e in entries}
    except (KeyError, TypeError, AttributeError, ValueError) as err:
        raise CoemuInputError(manifest, "models", f"not a block manifest ({err!r})") from None
    changed = {}
    for path, (size, mtime_ns) in recorded.items():
        if path not in identities:
            try:
                st = os.stat(path)
                identities[path] = (st.st_size, st.st_mtime_ns)
            except OSError:
                identities[path] = None
        now = identities[path]
        if now is None:
            changed[path] = "missing"
        elif now[0] != size:
            changed[path] = f"size {size} -> {now[0]} bytes"
        elif now[1] != mtime_ns:
            changed[path] = "modified"
    return changed


def changed_marker(manifest: str | Path) -> Path:
    """``{block}.changed.json`` beside the block's manifest ``{block}.json``."""
    manifest = Path(manifest)
    return manifest.with_name(f"{manifest.stem}.changed.json")


def mark_changed_blocks(manifests: Iterable[str | Path]) -> dict[str, dict[str, str]]:
    """For each existing manifest of ``manifests`` whose files changed (:func:`changed_files`),
    write :func:`changed_marker` (the block, its manifest and what changed) anew.

    Returns:
        manifest path -> its changed files, for the blocks marked.
    """
    from coemu.io.atomic import write_json_atomic

    identities: dict[str, tuple[int, int] | None] = {}
    marked = {}
    for manifest in map(Path, manifests):
        if not manifest.is_file():
            continue
        try:
            changed = changed_files(manifest, identities)
        except CoemuInputError as err:  # its job rewrites it
            changed = {str(manifest): f"not a readable block manifest ({err.problem})"}
        if changed:
            doc = {"block": manifest.stem, "manifest": str(manifest), "changed": changed}
            write_json_atomic(doc, changed_marker(manifest))
            marked[str(manifest)] = changed
    return marked
