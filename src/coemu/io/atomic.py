"""Atomic writes: a temporary file in the target directory, then a rename.

A reader (or Snakemake) never sees a half-written output: either the old file,
no file, or the complete new one. On any exception the temporary file is
removed and the target is left untouched.

A write that fails because the disk is full, the quota is spent, the folder is
not writable or the file system is read-only raises :class:`CoemuWriteError`
naming the target and the cause in words, even where the writer hides the errno
(netCDF4/HDF5 say only ``NetCDF: HDF error``): the file system is then asked.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from coemu.io.errors import CoemuInputError, CoemuWriteError

log = logging.getLogger(__name__)

NO_SPACE = "no space left on device"
PERMISSION = "permission denied"
READ_ONLY = "read-only file system"

#: The causes of a failed write that are named in words, by errno.
WRITE_CAUSES = {
    errno.ENOSPC: NO_SPACE,
    errno.EDQUOT: "disk quota exceeded",
    errno.EACCES: PERMISSION,
    errno.EPERM: PERMISSION,
    errno.EROFS: READ_ONLY,
    errno.ENOTDIR: "a folder on its path is a file",
    errno.EEXIST: "a folder on its path is a file",  # mkdir(exist_ok=True) over a file
    errno.EISDIR: "it is a folder",
}

#: Words by which writers that give no errno name a cause (numpy's preallocation,
#: through astropy: "Not enough free space to write N bytes"), lower case.
CAUSES_IN_WORDS = {
    "no space left on device": NO_SPACE,
    "not enough free space": NO_SPACE,
    "not enough space on disk": NO_SPACE,
    "disk quota exceeded": WRITE_CAUSES[errno.EDQUOT],
    "read-only file system": READ_ONLY,
    "permission denied": PERMISSION,
}

#: Free bytes (for this user) below which a file system counts as full when a
#: writer failed without an errno.
NEARLY_FULL_BYTES = 1 << 20


@contextlib.contextmanager
def atomic_output(path: str | Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    Args:
        path: final destination; its parent directory is created if missing.
        suffix: suffix of the temporary file (default: that of ``path``), which
            matters for writers that choose the format from the extension.

    Raises:
        CoemuWriteError: no space, no quota, no permission or a read-only file
            system (from the original exception); any other exception unchanged.
    """
    path = Path(path)
    tmp_path = _temporary(path, suffix or path.suffix + ".tmp")
    try:
        yield tmp_path
        with open(tmp_path, "rb") as f:  # on disk before the rename, so a crash leaves old or new
            os.fsync(f.fileno())
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual mode
        os.replace(tmp_path, path)
    except Exception as err:
        failure = write_failure(path, err)  # before the removal (finally), which frees the space
        if failure is None:
            raise
        raise failure from err
    finally:
        _remove(tmp_path)


def write_failure(path: str | Path, err: BaseException) -> CoemuWriteError | None:
    """The :class:`CoemuWriteError` that explains ``err``, raised while writing ``path``, or None.

    An ``OSError`` with a real errno is named from it (another errno: None). An
    exception without one (``RuntimeError: NetCDF: HDF error``, errno-less
    ``OSError``s) is named from, in turn: an errno of :data:`WRITE_CAUSES` among
    the exceptions it was raised from, :func:`diagnose_folder` on the folder of
    ``path``, words of :data:`CAUSES_IN_WORDS` in its message or theirs. A
    :class:`CoemuInputError` is left as it is (None).
    """
    if isinstance(err, CoemuInputError):
        return None
    code = _errno(err)
    if code is not None:
        cause = WRITE_CAUSES.get(code)
        if cause is None:
            return None
        said = (err.strerror or "").lower()
        return CoemuWriteError(path, cause, said if said and said != cause else "")
    chain = _chain(err)
    found = _cause_by_errno(chain) or diagnose_folder(Path(path).parent) or _cause_in_words(chain)
    if found is None:
        return None
    cause, evidence = found
    said = f"the writer said {type(err).__name__}: {err}"
    return CoemuWriteError(path, cause, f"{evidence}; {said}" if evidence else said)


def diagnose_folder(folder: str | Path) -> tuple[str, str] | None:
    """Why writing a file in ``folder`` may fail, asked of its file system: (cause, evidence) or None.

    Read-only (``ST_RDONLY``), full (under :data:`NEARLY_FULL_BYTES` bytes or no
    inode free for this user) or not writable by this user (``os.access``), in
    that order; a missing ``folder`` is judged by its nearest existing parent.
    """
    folder = _existing(Path(folder))
    try:
        fs = os.statvfs(folder)
    except OSError:
        return None
    if fs.f_flag & os.ST_RDONLY:
        return READ_ONLY, f"{folder} is on a read-only file system"
    free = fs.f_bavail * fs.f_frsize
    if fs.f_blocks and free < NEARLY_FULL_BYTES:
        return NO_SPACE, f"{free} bytes free in {folder}"
    if fs.f_files and not fs.f_favail:
        return NO_SPACE, f"no inode free in {folder}"
    if not os.access(folder, os.W_OK):
        return PERMISSION, f"{folder} is not writable by this user"
    return None


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


def _temporary(path: Path, suffix: str) -> Path:
    """An empty temporary file beside ``path`` (its folder made if missing); failures named."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    except OSError as err:
        failure = write_failure(path, err)
        if failure is None:
            raise
        raise failure from err
    os.close(fd)
    return Path(tmp)


def _remove(tmp: Path) -> None:
    """Remove ``tmp`` if it is there; a failure (a file system gone read-only) is logged, not raised."""
    try:
        tmp.unlink(missing_ok=True)
    except OSError as err:
        log.warning("could not remove the temporary file %s: %s", tmp, err)


def _errno(err: BaseException) -> int | None:
    """The errno of ``err`` if it is an ``OSError`` with a real one (netCDF4 uses negative codes)."""
    code = getattr(err, "errno", None)
    return code if isinstance(err, OSError) and isinstance(code, int) and code > 0 else None


def _chain(err: BaseException) -> list[BaseException]:
    """``err`` and the exceptions it was raised from or while handling, nearest first."""
    chain: list[BaseException] = []
    while err is not None and all(err is not seen for seen in chain):
        chain.append(err)
        err = err.__cause__ or err.__context__
    return chain


def _cause_by_errno(chain: list[BaseException]) -> tuple[str, str] | None:
    """(cause, "") from the first errno of :data:`WRITE_CAUSES` in ``chain``, or None."""
    for err in chain:
        if _errno(err) in WRITE_CAUSES:
            return WRITE_CAUSES[_errno(err)], ""
    return None


def _cause_in_words(chain: list[BaseException]) -> tuple[str, str] | None:
    """(cause, "") from the first words of :data:`CAUSES_IN_WORDS` in a message of ``chain``, or None."""
    for err in chain:
        text = str(err).lower()
        for words, cause in CAUSES_IN_WORDS.items():
            if words in text:
                return cause, ""
    return None


def _existing(folder: Path) -> Path:
    """``folder`` or its nearest existing parent."""
    while not os.path.exists(folder) and folder.parent != folder:  # False, not raised, on EACCES
        folder = folder.parent
    return folder


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
