"""Atomic writes: a temporary file in the target directory, then a rename.

A reader (or Snakemake) never sees a half-written output: either the old file,
no file, or the complete new one. On any exception the temporary file is
removed and the target is left untouched.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_output(path: str | Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    Args:
        path: final destination; its parent directory is created if missing.
        suffix: suffix of the temporary file (default: that of ``path``), which
            matters for writers that choose the format from the extension.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=suffix or path.suffix + ".tmp"
    )
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb") as f:  # on disk before the rename, so a crash leaves old or new
            os.fsync(f.fileno())
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual mode
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def remove_stale_temporaries(path: str | Path) -> list[Path]:
    """Remove the temporary files a killed writer of ``path`` left beside it (SIGKILL)."""
    path = Path(path)
    stale = list(path.parent.glob(f".{path.name}.*.tmp")) if path.parent.is_dir() else []
    for tmp in stale:
        tmp.unlink(missing_ok=True)
    return stale


def write_netcdf_atomic(dataset: Any, path: str | Path, **kwargs: Any) -> None:
    """Write an ``xarray.Dataset`` to netCDF4 at ``path`` atomically."""
    with atomic_output(path, suffix=".nc.tmp") as tmp:
        dataset.to_netcdf(tmp, format="NETCDF4", **kwargs)


def write_json_atomic(obj: Any, path: str | Path) -> None:
    """Write ``obj`` as indented JSON at ``path`` atomically."""
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
