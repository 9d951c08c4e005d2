"""COEmuNet and its building blocks."""

from coemu.nn.coemunet import COEmuNet

__all__ = ["COEmuNet"]
