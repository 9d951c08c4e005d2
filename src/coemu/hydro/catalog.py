"""Which models the pipeline processes, from the ``models`` section of the config.

Light on purpose (standard library only): the Snakefile imports it to list
the model ids, and every dry run pays for its import.
"""

from __future__ import annotations

from pathlib import Path

MODEL_SUFFIXES = (".nc", ".h5", ".hdf5")


def synthetic_model_id(index: int) -> str:
    """The id of synthetic model ``index``: ``m`` and five digits (``m00042``)."""
    return f"m{int(index):05d}"


def synthetic_index(model: str) -> int:
    """Inverse of :func:`synthetic_model_id`."""
    if not (model.startswith("m") and model[1:].isdigit()):
        raise ValueError(f"'{model}' is not a synthetic model id (m + digits)")
    return int(model[1:])


def list_model_files(directory: str | Path) -> dict[str, Path]:
    """Model id (file stem) -> path for every model file in ``directory``, sorted.

    Raises:
        FileNotFoundError: the directory does not exist.
        ValueError: no model file, or two files with the same stem.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory}: models.directory does not exist or is not a directory")
    found: dict[str, Path] = {}
    for path in sorted(directory.iterdir()):
        if path.suffix in MODEL_SUFFIXES and path.is_file():
            if path.stem in found:
                raise ValueError(
                    f"{directory}: two model files named '{path.stem}': {found[path.stem].name}, {path.name}"
                )
            found[path.stem] = path
    if not found:
        raise ValueError(f"{directory}: no model files ({', '.join(MODEL_SUFFIXES)})")
    return found


def model_ids(models: dict) -> list[str]:
    """The model ids selected by the ``models`` config section."""
    if models["source"] == "synthetic":
        return [synthetic_model_id(i) for i in range(int(models["count"]))]
    return list(list_model_files(models["directory"]))


def model_blocks(models: list[str], per_block: int) -> dict[str, list[str]]:
    """Consecutive blocks of ``per_block`` models, named ``b0000``, ``b0001``, ...

    Blocks of consecutive ids: models appended to the list (new synthetic
    indices) only change the last block.
    """
    if per_block < 1:
        raise ValueError(f"per_block must be >= 1, got {per_block}")
    return {f"b{k // per_block:04d}": models[k : k + per_block] for k in range(0, len(models), per_block)}
