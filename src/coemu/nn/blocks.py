"""Building blocks of COEmuNet: Conv-BN-ReLU and the two kinds of 3D residual blocks."""

from __future__ import annotations

from torch import Tensor, nn


class ConvBNReLU(nn.Sequential):
    """Convolution, batch normalisation, ReLU (3D or, with ``dims=2``... any ``nn.ConvNd`` layout).

    Args:
        conv: the convolution class (``nn.Conv3d``); bn: its batch norm (``nn.BatchNorm3d``).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size,
        stride=1,
        padding=0,
        conv=nn.Conv3d,
        bn=nn.BatchNorm3d,
    ):
        super().__init__(
            conv(in_channels, out_channels, kernel_size, stride=stride, padding=padding),
            bn(out_channels),
            nn.ReLU(),
        )


class ResidualBlock(nn.Module):
    """Two 3x3x3 Conv-BN-ReLU layers, ``f(x)``, with one of two skips.

    * ``downsample=True`` (the first block of a stage: stride 2, more
      channels): ``y = f(x) + g(f(x))``, ``g`` a 1x1x1 Conv-BN-ReLU of the
      block's own output. This is what the published implementation computes
      and the paper trained (its "convolution skip"); it is not a projection
      of the input.
    * otherwise (same shape): the identity skip ``y = f(x) + x``. No 1x1x1
      layer is built: the published code builds one here too and never uses
      it (8 + 16 + 32 channels, 2 blocks each, 3 branches: 9,072 parameters).
    """

    def __init__(self, in_channels: int, out_channels: int, downsample: bool):
        super().__init__()
        stride, padding = (2, 1) if downsample else (1, "same")
        self.body = nn.Sequential(
            ConvBNReLU(in_channels, out_channels, 3, stride, padding),
            ConvBNReLU(out_channels, out_channels, 3, 1, "same"),
        )
        if not downsample and in_channels != out_channels:
            raise ValueError("an identity residual block keeps the number of channels")
        self.skip = ConvBNReLU(out_channels, out_channels, 1) if downsample else None

    def forward(self, x: Tensor) -> Tensor:
        y = self.body(x)
        return y + (self.skip(y) if self.skip is not None else x)
