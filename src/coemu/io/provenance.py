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

# The modules and subpackages of coemu whose code decides each stage's results
# (coemu/cli.py, the argument wiring, is left out on purpose: a new subcommand
# would otherwise retrain every model).
STAGE_PACKAGES: dict[str, tuple[str, ...]] = {
    "cubes": ("constants.py", "hydro", "physics", "geometry"),
    "images": ("constants.py", "rt"),
    "stats": ("stats", "data"),
    "training": ("constants.py", "nn", "training", "data", "rt"),
    "evaluation": ("constants.py", "evaluation", "training", "nn", "data", "rt", "hydro", "physics"),
    "observations": ("constants.py", "observe", "physics", "rt"),
    "fit": ("constants.py", "fit", "observe", "physics", "rt", "hydro", "nn", "data", "io"),
}

# Files that count: Python sources (as syntax trees) and the solver's line data.
_CODE_SUFFIXES = (".py", ".dat")

_PACKAGE_ROOT = Path(__file__).resolve().parents[1]


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                if isinstance(body[0].value.value, str):
                    node.body = body[1:] or [ast.Pass()]
    return tree


def _stage_files(stage: str) -> list[Path]:
    files = []
    for name in STAGE_PACKAGES[stage]:
        path = _PACKAGE_ROOT / name
        found = sorted(path.rglob("*")) if path.is_dir() else [path]
        files += [f for f in found if f.suffix in _CODE_SUFFIXES and "__pycache__" not in f.parts]
    return files


@cache
def code_digest(stage: str) -> str:
    """16 hex digits identifying the code of ``stage`` (a key of STAGE_PACKAGES).

    The digest covers every ``*.py`` file of the stage's modules and subpackages,
    as source regenerated from its syntax tree without docstrings (so comments,
    docstrings and formatting do not change it), and the solver's shipped line
    data (``*.dat``) byte for byte.
    """
    h = hashlib.sha256()
    for path in _stage_files(stage):
        h.update(str(path.relative_to(_PACKAGE_ROOT)).encode())
        st = path.stat()
        h.update(_code_bytes(path, st.st_mtime_ns, st.st_size))
    return h.hexdigest()[:16]


@cache
def _code_bytes(path: Path, mtime_ns: int, size: int) -> bytes:
    """What of ``path`` counts: a Python file as source regenerated from its syntax tree without
    docstrings, another file byte for byte. Read once per process and version of the file
    (``mtime_ns``, ``size``): the stages share packages."""
    if path.suffix == ".py":
        return ast.unparse(_strip_docstrings(ast.parse(path.read_text(), str(path)))).encode()
    return path.read_bytes()


def fingerprint(**parts) -> str:
    """16 hex digits identifying ``parts`` (JSON-serialisable values)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def file_identity(path: str | Path) -> dict:
    """Size (bytes) and modification time (ns) of ``path``: changes when it is rewritten.

    Raises:
        CoemuInputError: the file does not exist or cannot be read.
    """
    try:
        st = os.stat(path)
    except OSError as err:
        from coemu.io.errors import CoemuInputError

        raise CoemuInputError(path, None, f"cannot be read ({err.strerror})") from None
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def file_digest(path: str | Path) -> str:
    """sha256 of a small file's content (a LAMDA line-data file, say)."""
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError as err:
        from coemu.io.errors import CoemuInputError

        raise CoemuInputError(path, None, f"cannot be read ({err.strerror})") from None


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
