"""What each per-model file was made from, so that a block job redoes only what changed.

A cube or image job handles a block of models (``models.per_job``). Snakemake
reruns a block when its settings, its code or its inputs change, or when one of
its files is missing (a model was added to the block). Every cube and image file
stores a *fingerprint* of what it was made from (settings, inputs, code) in the
netCDF attribute ``coemu_fingerprint``; the block job skips the models whose file
already carries the fingerprint it would write, so adding models to a data set
computes only the new ones.

Code: :func:`code_digest` hashes the syntax trees (docstrings and comments
left out) of the subpackages a stage runs. The rules pass it as a parameter, so
Snakemake reruns a stage whose code changed and the jobs of the stages after it;
a change to a docstring, a comment or the formatting reruns nothing.

Light on purpose (standard library only): the Snakefile imports it.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
from functools import cache
from pathlib import Path

FINGERPRINT_ATTR = "coemu_fingerprint"

# The subpackages of coemu whose code decides each stage's results.
STAGE_PACKAGES: dict[str, tuple[str, ...]] = {
    "cubes": ("hydro", "geometry"),
    "images": ("rt",),
    "stats": ("stats", "data"),
    "training": ("nn", "training", "data"),
    "evaluation": ("evaluation", "nn", "data", "rt"),
}

_PACKAGE_ROOT = Path(__file__).resolve().parents[1]


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                if isinstance(body[0].value.value, str):
                    node.body = body[1:] or [ast.Pass()]
    return tree


@cache
def code_digest(stage: str) -> str:
    """16 hex digits identifying the code of ``stage`` (a key of STAGE_PACKAGES).

    The digest covers the syntax tree of every ``*.py`` file of the stage's
    subpackages (and the solver's shipped data files for ``images``), so
    comments, docstrings and formatting do not change it.
    """
    h = hashlib.sha256()
    for package in STAGE_PACKAGES[stage]:
        folder = _PACKAGE_ROOT / package
        for path in sorted(folder.rglob("*")):
            if "__pycache__" in path.parts or not path.is_file():
                continue
            h.update(str(path.relative_to(_PACKAGE_ROOT)).encode())
            if path.suffix == ".py":
                tree = _strip_docstrings(ast.parse(path.read_text(), str(path)))
                h.update(ast.dump(tree, include_attributes=False).encode())
            elif path.suffix != ".pyc":
                h.update(path.read_bytes())
    return h.hexdigest()[:16]


def fingerprint(**parts) -> str:
    """16 hex digits identifying ``parts`` (JSON-serialisable values)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def file_identity(path: str | Path) -> dict:
    """Size (bytes) and modification time (ns) of ``path``: changes when it is rewritten."""
    st = os.stat(path)
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def stored_fingerprint(path: str | Path) -> str | None:
    """The fingerprint a netCDF file carries; None if missing, unreadable or without one."""
    if not Path(path).is_file():
        return None
    try:
        import netCDF4

        with netCDF4.Dataset(path) as ds:
            return str(ds.getncattr(FINGERPRINT_ATTR))
    except (OSError, AttributeError, RuntimeError, KeyError):
        return None


def write_manifest(path: str | Path, block: str, files: dict[str, dict[str, str]]) -> None:
    """The block's manifest: model id -> {kind: file} with each file's fingerprint and size.

    It is the block job's small declared output that later stages depend on,
    instead of every model's files (which keeps the paper-scale DAG small).
    """
    from coemu.io.atomic import write_json_atomic

    entries = {
        model: {
            kind: {"path": str(f), "fingerprint": stored_fingerprint(f), **file_identity(f)}
            for kind, f in kinds.items()
        }
        for model, kinds in files.items()
    }
    write_json_atomic({"block": block, "n_models": len(entries), "models": entries}, path)
