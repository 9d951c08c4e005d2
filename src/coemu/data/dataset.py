"""Samples for training: a preprocessed cube and its normalised image, read lazily from the files.

Fine-tuning (``stage="finetune"``): one sample per (model, rotation), input
the model's rotated cube file, target the 7-channel image of that rotation.
Pretraining (``stage="pretrain"``): one sample per model, input rotation 0
(face-on), target the face-on file (one channel at the line centre). The files
of each model are given (``cube``, ``image``, ``faceon``: what the image
manifests list, :func:`coemu.io.blocks.read_manifests`).

Files are opened with netCDF4 on first use in each process and kept open, at
most :data:`OPEN_FILES` per process (least recently used closed first); a
process that inherited handles by fork (a DataLoader worker) opens its own.
A sample is one slab of each variable. The preprocessing transform runs
here, on the fly (see :mod:`coemu.data.transform` for why).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from coemu.data.transform import Preprocessing
from coemu.geometry.cube_contract import check_cube
from coemu.io.errors import CoemuInputError

CUBE_VARIABLES = ("temperature", "number_density_co", "velocity_z")
#: netCDF files a process keeps open at most.
OPEN_FILES = 64


class EmulatorDataset(Dataset):
    """(x, y) pairs: x (3, G, G, G) float32 network input, y (n_freq, G, G) float32 normalised target.

    With ``physical_inputs``, x is instead the cube's (temperature K, density m-3, velocity_z
    m s-1), three (G, G, G) float32 tensors, for a caller that preprocesses them itself
    (the evaluation, through :meth:`coemu.nn.Emulator.emulate`).

    Args:
        models: model ids.
        files: model id -> {kind: path} with at least ``cube`` and the stage's target
            (``faceon`` for pretraining, ``image`` for fine-tuning).
        preprocessing: the transform (from the training models' statistics).
        stage: ``pretrain`` (face-on, 1 channel) or ``finetune`` (every rotation, all channels).
        source: what listed the models (named in errors), e.g. split.json.
        physical_inputs: x in physical units, unpreprocessed (see above).

    Raises:
        CoemuInputError: a model without the files the stage needs, or whose cube breaks the
            cube contract (:func:`coemu.geometry.cube_contract.check_cube`, on construction).
    """

    def __init__(
        self,
        models: Sequence[str],
        files: Mapping[str, Mapping[str, str | Path]],
        preprocessing: Preprocessing,
        stage: str,
        source: str | Path | None = None,
        physical_inputs: bool = False,
    ):
        from coemu.io.blocks import model_files

        if stage not in ("pretrain", "finetune"):
            raise ValueError(f"stage must be pretrain or finetune, got '{stage}'")
        self.preprocessing, self.stage, self.physical_inputs = preprocessing, stage, physical_inputs
        self.models = list(models)
        self.target_kind = "faceon" if stage == "pretrain" else "image"
        self.files = model_files(files, self.models, ("cube", self.target_kind), source)
        self._handles: OrderedDict[str, object] = OrderedDict()
        self._pid = os.getpid()
        rotations = [self._check(m) for m in self.models]
        self.close()
        self.index = [(m, r) for m, n in zip(self.models, rotations, strict=True) for r in range(n)]

    def close(self) -> None:
        """Close every file this process holds open."""
        while self._handles:
            self._handles.popitem()[1].close()

    def _target_path(self, model: str) -> Path:
        return Path(self.files[model][self.target_kind])

    def _cube_path(self, model: str) -> Path:
        return Path(self.files[model]["cube"])

    def _open(self, path: Path):
        import netCDF4

        key = str(path)
        if self._pid != os.getpid():  # forked: the parent's handles are not ours to use
            self._handles, self._pid = OrderedDict(), os.getpid()
        if key in self._handles:
            self._handles.move_to_end(key)
        else:
            if len(self._handles) >= OPEN_FILES:
                self._handles.popitem(last=False)[1].close()
            try:
                self._handles[key] = netCDF4.Dataset(key)
            except (OSError, RuntimeError) as err:
                raise CoemuInputError(path, None, f"cannot be opened ({err})") from None
            self._handles[key].set_auto_mask(False)
        return self._handles[key]

    def _check(self, model: str) -> int:
        """Check the model's cube against the cube contract (its header only); return its samples:
        1 for pretraining, else its rotations (as many as its image has)."""
        path = self._cube_path(model)
        check_cube(self._open(path), path)
        return 1 if self.stage == "pretrain" else self._rotations(model)

    def _rotations(self, model: str) -> int:
        cube = self._open(self._cube_path(model))
        image = self._open(self._target_path(model))
        n, m = cube["temperature"].shape[0], image["intensity"].shape[0]
        if n != m:
            raise CoemuInputError(self._target_path(model), "intensity", f"{m} rotations, the cube has {n}")
        return n

    def __len__(self) -> int:
        return len(self.index)

    def __getstate__(self):  # pickled (spawned workers): no handles travel
        return {**self.__dict__, "_handles": OrderedDict()}

    def __getitem__(self, i: int):
        model, rotation = self.index[i]
        cube_path = self._cube_path(model)
        cube = self._open(cube_path)
        try:
            t, n, v = (
                torch.from_numpy(np.asarray(cube[k][rotation], dtype=np.float32)) for k in CUBE_VARIABLES
            )
            target = self._open(self._target_path(model))["intensity"]
            y = torch.from_numpy(
                np.asarray(target[0 if self.stage == "pretrain" else rotation], dtype=np.float32)
            )
        except (IndexError, KeyError, RuntimeError) as err:
            raise CoemuInputError(cube_path, None, f"sample {rotation} cannot be read ({err})") from None
        target = self.preprocessing.intensity(y).float()
        if self.physical_inputs:
            return (t, n, v), target
        return self.preprocessing.inputs(t, n, v).float(), target

    @property
    def n_freq(self) -> int:
        return int(self[0][1].shape[0]) if self.index else 0
