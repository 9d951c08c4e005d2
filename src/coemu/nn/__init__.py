"""Emulators (COEmuNet) and their building blocks; ``Emulator.from_checkpoint`` loads a model file."""

from coemu.nn.base import Emulator
from coemu.nn.coemunet import COEmuNet

__all__ = ["COEmuNet", "Emulator"]
