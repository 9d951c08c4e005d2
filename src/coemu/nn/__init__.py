"""Emulators (COEmuNet, the column emulator) and their building blocks.

``Emulator.load("model.pt").predict(temperature, density, velocity_z)`` uses a trained one.
"""

from coemu.nn.base import Emulator, emulator_kinds
from coemu.nn.coemunet import COEmuNet
from coemu.nn.column import ColumnEmulator

__all__ = ["COEmuNet", "ColumnEmulator", "Emulator", "emulator_kinds"]
