"""Emulators that keep their constructor arguments and rebuild themselves from a model file.

A subclass of :class:`Emulator` registers under a ``kind`` name; every
instance remembers the arguments it was built with (``emulator.kwargs``,
plain numbers and lists), and a model file written by training holds them
beside the weights (``{"kind", "kwargs", "model": state_dict, ...}``), so
:meth:`Emulator.from_checkpoint` needs nothing but the file.
"""

from __future__ import annotations

import inspect
import pickle
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from coemu.io.errors import CoemuInputError

_KINDS: dict[str, type[Emulator]] = {}


def _plain(value: Any) -> Any:
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value


class Emulator(nn.Module):
    """Base class: ``kind`` (class keyword) names the architecture in model files."""

    kind: ClassVar[str]

    def __init_subclass__(cls, kind: str | None = None, **kw):
        super().__init_subclass__(**kw)
        if kind is not None:
            cls.kind = kind
            _KINDS[kind] = cls

    def __new__(cls, *args, **kwargs):
        bound = inspect.signature(cls.__init__).bind(None, *args, **kwargs)
        bound.apply_defaults()
        instance = super().__new__(cls)
        instance._init_kwargs = {k: _plain(v) for k, v in list(bound.arguments.items())[1:]}
        return instance

    @property
    def kwargs(self) -> dict[str, Any]:
        """The constructor arguments (a copy): ``type(self)(**self.kwargs)`` is the same architecture."""
        return dict(self._init_kwargs)

    def model_file(self, **extra: Any) -> dict[str, Any]:
        """What a model file holds: ``kind``, ``kwargs``, ``model`` (the state dict), and ``extra``."""
        return {"kind": self.kind, "kwargs": self.kwargs, "model": self.state_dict(), **extra}

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | torch.device = "cpu") -> Emulator:
        """The emulator saved in ``path`` (a model.pt), with its weights, in eval mode on ``device``.

        ``Emulator.from_checkpoint`` loads any kind; ``COEmuNet.from_checkpoint`` only a COEmuNet.

        Raises:
            CoemuInputError: the file is not a coemu model file, or of an unknown or other kind.
        """
        from coemu.training import checkpoint

        try:
            saved = checkpoint.load(path)
            kind, kwargs, state = saved["kind"], saved["kwargs"], saved["model"]
        except (OSError, KeyError, RuntimeError, TypeError, EOFError, pickle.UnpicklingError) as err:
            raise CoemuInputError(path, None, f"not a coemu model file ({err!r})") from None
        if kind not in _KINDS:
            raise CoemuInputError(
                path, "kind", f"unknown emulator kind '{kind}' (known: {', '.join(_KINDS)})"
            )
        if not issubclass(_KINDS[kind], cls):
            raise CoemuInputError(path, "kind", f"holds a {kind}, not a {cls.kind}")
        model = _KINDS[kind](**kwargs)
        try:
            model.load_state_dict(state)
        except RuntimeError as err:
            raise CoemuInputError(path, "model", f"weights do not fit a {kind}({kwargs}): {err}") from None
        return model.to(device).eval()
