"""Emulators that keep their constructor arguments and rebuild themselves from a model file.

A subclass of :class:`Emulator` registers under a ``kind`` name; every
instance remembers the arguments it was built with (``emulator.kwargs``,
plain numbers and lists), and a model file written by training holds them
beside the weights and the description of the training data
(``{"kind", "kwargs", "model": state_dict, "data": DataDescription.to_dict(), ...}``),
so :meth:`Emulator.load` needs nothing but the file, and
:meth:`Emulator.predict` turns physical cubes into physical images:

    >>> emulator = Emulator.load("results/train/column/finetune/model.pt")
    >>> image = emulator.predict(temperature, density, velocity_z)  # (..., G, G, G) -> (..., F, G, G)

Model files hold only tensors and plain data and are read with
``torch.load(weights_only=True)`` (:func:`coemu.training.checkpoint.load`): loading one
runs no code from it.
"""

from __future__ import annotations

import inspect
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from torch import nn

from coemu.io.errors import CoemuInputError
from coemu.io.validation import plain

if TYPE_CHECKING:
    from coemu.data.description import DataDescription
    from coemu.data.transform import Preprocessing

_KINDS: dict[str, type[Emulator]] = {}


def emulator_kinds() -> dict[str, type[Emulator]]:
    """The registered kinds: name -> class (``training.model.kind`` names one)."""
    return dict(_KINDS)


class Emulator(nn.Module):
    """Base class: ``kind`` (class keyword) names the architecture in model files."""

    kind: ClassVar[str]
    #: The training data (set by training and by :meth:`load`); ``predict`` needs it.
    data: DataDescription | None = None

    def __init_subclass__(cls, kind: str | None = None, **kw):
        super().__init_subclass__(**kw)
        if kind is not None:
            cls.kind = kind
            _KINDS[kind] = cls

    def __new__(cls, *args, **kwargs):
        bound = inspect.signature(cls.__init__).bind(None, *args, **kwargs)
        bound.apply_defaults()
        instance = super().__new__(cls)
        instance._init_kwargs = {k: plain(v) for k, v in list(bound.arguments.items())[1:]}
        return instance

    @property
    def kwargs(self) -> dict[str, Any]:
        """The constructor arguments (a copy): ``type(self)(**self.kwargs)`` is the same architecture."""
        return dict(self._init_kwargs)

    @classmethod
    def from_data(cls, data: DataDescription, **settings: Any) -> Emulator:
        """An untrained emulator for ``data`` (channels, grid, ...) with the kind's ``settings``."""
        raise NotImplementedError

    def model_file(self, **extra: Any) -> dict[str, Any]:
        """What a model file holds: ``kind``, ``kwargs``, ``model`` (the state dict), ``data``, ``extra``."""
        data = None if self.data is None else self.data.to_dict()
        return {"kind": self.kind, "kwargs": self.kwargs, "model": self.state_dict(), "data": data, **extra}

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> Emulator:
        """The trained emulator in ``path`` (a model.pt), ready for :meth:`predict` (alias of
        :meth:`from_checkpoint`)."""
        return cls.from_checkpoint(path, device)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def _check_inputs(self, inputs: dict[str, torch.Tensor]) -> None:
        """Shapes against the training grid (error); values against the training ranges (warning)."""
        from coemu.data.description import INPUT_VARIABLES

        g = self.data.grid
        shapes = {k: tuple(v.shape) for k, v in inputs.items()}
        for name, shape in shapes.items():
            if len(shape) < 3 or shape[-3:] != (g, g, g):
                raise ValueError(
                    f"{name} has shape {shape}; this emulator takes (..., {g}, {g}, {g}) cubes"
                    f" (cells along x, y, z; the observer on the -z side)"
                )
        if len(set(shapes.values())) != 1:
            raise ValueError(f"temperature, density and velocity_z must have one shape, got {shapes}")
        for name, value in inputs.items():
            lo, hi = self.data.input_ranges.get(name, (-np.inf, np.inf))
            outside = float(((value < lo) | (value > hi)).double().mean())
            if outside > 0:
                warnings.warn(
                    f"{name}: {outside:.2%} of the cells lie outside the training range"
                    f" [{lo:.4g}, {hi:.4g}] {INPUT_VARIABLES[name]}; the emulator extrapolates there",
                    stacklevel=3,
                )

    @torch.no_grad()
    def predict(self, temperature, density, velocity_z, batch_size: int = 8):
        """Specific intensities (W m-2 Hz-1 sr-1) of cubes in physical units.

        Args:
            temperature: K; density: CO number density, m-3; velocity_z: m s-1, positive away
                from the observer; each (G, G, G) or (B, G, G, G) (cells along x, y, z,
                rays along z, observer on the -z side: the cube contract), numpy or torch,
                on any device.
            batch_size: cubes per forward pass.

        Returns:
            (F, G, G) or (B, F, G, G) intensities on the channels of ``data.channel_velocities``,
            numpy for numpy input, else a tensor on the input's device.

        Raises:
            ValueError: a shape that is not the training grid, or no data description.
        Warns:
            UserWarning: a variable with cells outside the training range (naming the fraction).
        """
        if self.data is None:
            raise ValueError("this emulator has no data description (load it with Emulator.load)")
        arrays = {"temperature": temperature, "number_density_co": density, "velocity_z": velocity_z}
        is_numpy = not isinstance(temperature, torch.Tensor)
        out_device = torch.device("cpu") if is_numpy else temperature.device
        dev = self.device
        inputs = {k: torch.as_tensor(np.asarray(v) if is_numpy else v).to(dev) for k, v in arrays.items()}
        self._check_inputs(inputs)
        single = inputs["temperature"].dim() == 3
        lead = inputs["temperature"].shape[:-3]
        flat = {k: v.reshape(-1, *v.shape[-3:]).float() for k, v in inputs.items()}
        was_training = self.training
        self.eval()
        outputs = []
        for start in range(0, flat["temperature"].shape[0], batch_size):
            sl = slice(start, start + batch_size)
            outputs.append(
                self.intensities(
                    flat["temperature"][sl], flat["number_density_co"][sl], flat["velocity_z"][sl]
                )
            )
        self.train(was_training)
        g = self.data.grid
        result = torch.cat(outputs).reshape(*lead, self.data.n_freq, g, g)
        if single:
            result = result.reshape(self.data.n_freq, g, g)
        result = result.to(out_device)
        return result.numpy() if is_numpy else result

    @property
    def preprocessing(self) -> Preprocessing:
        """The transform of the training data (:class:`coemu.data.transform.Preprocessing`).

        Raises:
            ValueError: no data description.
        """
        if self.data is None:
            raise ValueError("this emulator has no data description (load it with Emulator.load)")
        from coemu.data.transform import Preprocessing

        return Preprocessing(**self.data.preprocessing)

    def network_inputs(self, temperature, density, velocity_z) -> torch.Tensor:
        """Step 1 of :meth:`emulate`, the preprocessing: (B, G, G, G) tensors in K, m-3, m s-1 ->
        (B, 3, G, G, G) float32 network input (velocity, temperature, density channels)."""
        prep = self.preprocessing
        return prep.inputs(temperature.float(), density.float(), velocity_z.float()).transpose(0, 1)

    def to_intensities(self, normalised: torch.Tensor) -> torch.Tensor:
        """Step 3 of :meth:`emulate`, the inverse transform: (B, F, G, G) network output ->
        float64 intensities in W m-2 Hz-1 sr-1, on the output's device."""
        return self.preprocessing.intensity_inverse(normalised.double())

    def emulate(self, temperature, density, velocity_z) -> tuple[torch.Tensor, torch.Tensor]:
        """The one inference path: preprocess (:meth:`network_inputs`), the network's forward
        pass, inverse transform (:meth:`to_intensities`). :meth:`predict`, :meth:`intensities`,
        the evaluation and the timing stage all run it.

        Args:
            temperature, density, velocity_z: (B, G, G, G) tensors on the emulator's device,
                K, m-3 (CO) and m s-1 (unchecked; :meth:`predict` checks).

        Returns:
            the network's output (B, F, G, G) (normalised ln intensity, the training target's
            transform) and the intensities (B, F, G, G) float64 W m-2 Hz-1 sr-1. Differentiable:
            gradients flow to the inputs unless the caller holds ``torch.no_grad``.
        """
        normalised = self(self.network_inputs(temperature, density, velocity_z))
        return normalised, self.to_intensities(normalised)

    def intensities(self, temperature, density, velocity_z) -> torch.Tensor:
        """Differentiable physical forward pass (:meth:`emulate`'s intensities): (B, G, G, G)
        tensors on the emulator's device (K, m-3, m s-1; unchecked) -> (B, F, G, G) float64
        W m-2 Hz-1 sr-1. Gradients flow to the inputs (a fit's forward model); :meth:`predict` is
        the checked, no-grad entry point."""
        return self.emulate(temperature, density, velocity_z)[1]

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | torch.device = "cpu") -> Emulator:
        """The emulator saved in ``path`` (a model.pt), with its weights, in eval mode on ``device``.

        ``Emulator.from_checkpoint`` loads any kind; ``COEmuNet.from_checkpoint`` only a COEmuNet.

        Raises:
            CoemuInputError: the file is not a coemu model file (:func:`coemu.training.checkpoint.load`:
                missing, empty, not a torch archive, without a model's keys, or refused as one
                that could run code; the message says how to remake it), or of an unknown or
                other kind.
        """
        from coemu.training import checkpoint

        saved = checkpoint.load(path, "model file")
        kind, kwargs, state = saved["kind"], saved["kwargs"], saved["model"]
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
        if saved.get("data") is not None:
            from coemu.data.description import DataDescription

            model.data = DataDescription.from_dict(saved["data"], path)
        return model.to(device).eval()
