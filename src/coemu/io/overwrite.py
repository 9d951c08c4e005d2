"""Refuse to write over an input: an output path that is one of the command's inputs.

``coemu predict M.pt CUBE.nc M.pt`` would replace the trained model by an image,
``coemu render C.nc C.nc`` the cube by its image. Every command that writes calls
:func:`refuse_overwriting_inputs` before it reads anything. "The same file" is
the same path, a symbolic link to it or a hard link (``os.path.samefile``: same
device and inode). A command that writes a folder names the files it writes
there as glob patterns; the existing files that match are its outputs too.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from coemu.io.errors import CoemuInputError


def _same_file(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` are one existing file (path, symbolic link or hard link)."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # either does not exist (a new output cannot be an existing input)
        return False


def written_in_folder(folder: Path, patterns: Sequence[str]) -> list[Path]:
    """The existing files in ``folder`` that a command writing ``patterns`` there would replace."""
    if not folder.is_dir():
        return []
    return sorted({path for pattern in patterns for path in folder.glob(pattern) if path.is_file()})


def refuse_overwriting_inputs(
    outputs: Iterable[str | Path | None],
    inputs: Iterable[str | Path | None],
    folders: Mapping[str | Path, Sequence[str]] | None = None,
) -> None:
    """Raise when a file the command would write is one of its inputs.

    Args:
        outputs: the files the command writes (None entries are skipped: options not given).
        inputs: the files it reads.
        folders: output folder -> glob patterns of the files the command writes in it.

    Raises:
        CoemuInputError: naming the output and the input it is.
    """
    reads = [Path(p) for p in inputs if p is not None]
    writes = [Path(p) for p in outputs if p is not None]
    for folder, patterns in (folders or {}).items():
        writes += written_in_folder(Path(folder), patterns)
    for out in writes:
        for read in reads:
            if _same_file(out, read):
                same = "" if str(out) == str(read) else f" ({read})"
                raise CoemuInputError(
                    out,
                    None,
                    f"is an output and also an input{same}: writing it would replace the input;"
                    " give another output path",
                )
