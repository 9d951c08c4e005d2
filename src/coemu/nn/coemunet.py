"""COEmuNet (paper section 2.4): three 3D-ResNet encoders, a fully connected latent, a 2D decoder.

Input (batch, 3, G, G, G): the preprocessed velocity, temperature and CO
density (channels in that order, see :mod:`coemu.data.transform`); output
(batch, n_freq, G, G): normalised intensity per channel (tanh, as published).

Per branch (one input channel): Conv-BN-ReLU 3x3x3 without padding to ``stem``
channels (G -> G-2), max pooling (-> (G-2)/2), then three stages of
``blocks_per_stage`` residual blocks, the first of each with stride 2
(:class:`coemu.nn.blocks.ResidualBlock`), to ``widths`` = (8, 16, 32)
channels at 16, 8, 4 cells for G = 64. The three branches' outputs are
flattened and concatenated (3 x 32 x 4^3 = 6,144), a linear layer maps them to
the latent (4,096), a second linear layer plus ReLU to ``decoder_channels`` x
n_freq x (G/8)^2, seen as a (decoder_channels, n_freq, G/8, G/8) volume. The
decoder's three stages each apply three 1x3x3 Conv-BN-ReLU layers (the first
halving the channels: 32, 16, 8) and a nearest (1, 2, 2) upsampling (8 -> 16
-> 32 -> 64); a last 1x3x3 convolution to one channel and a tanh give the
image. The 1x3x3 kernels never mix frequency channels: only the linear
layers do.

Parameter count at the defaults (n_freq = 7, G = 64):

=====================================  ===========
3 encoder branches x 202,224                606,672
linear 6,144 -> 4,096                    25,169,920
linear 4,096 -> 64 x 7 x 8 x 8          117,469,184
decoder                                      48,961
total                                   143,294,737
=====================================  ===========

The slides report 143,303,809: the published implementation also builds a
1x1x1 Conv-BN-ReLU in each identity residual block that its forward pass
never uses, 3 branches x 2 blocks x (8 x 8 + 8 + 16 + 16 x 16 + 16 + 32 +
32 x 32 + 32 + 64) = 9,072 parameters (hence its need for DDP's
find_unused_parameters). Here every parameter is used.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from coemu.nn.base import Emulator
from coemu.nn.blocks import ConvBNReLU, ResidualBlock


def encoder_size(grid: int, stages: int) -> int:
    """Cells per axis after a branch: valid 3x3x3 conv, pooling by 2, ``stages`` stride-2 convs."""
    size = (grid - 2) // 2
    for _ in range(stages):
        size = (size - 1) // 2 + 1
    return size


class Encoder(nn.Module):
    """One branch: (batch, 1, G, G, G) -> (batch, widths[-1], s, s, s)."""

    def __init__(self, stem: int, widths: Sequence[int], blocks_per_stage: int):
        super().__init__()
        layers: list[nn.Module] = [ConvBNReLU(1, stem, 3), nn.MaxPool3d(2)]
        channels = stem
        for width in widths:
            layers.append(ResidualBlock(channels, width, downsample=True))
            layers += [ResidualBlock(width, width, downsample=False) for _ in range(blocks_per_stage - 1)]
            channels = width
        self.layers = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


class Decoder(nn.Module):
    """(batch, C, F, s, s) -> (batch, F, 8s, 8s): three stages of 1x3x3 Conv-BN-ReLU and upsampling."""

    def __init__(self, channels: int, stages: int = 3, convs_per_stage: int = 3):
        super().__init__()
        layers: list[nn.Module] = []
        for _ in range(stages):
            half = channels // 2
            for i in range(convs_per_stage):
                layers.append(ConvBNReLU(channels if i == 0 else half, half, (1, 3, 3), 1, (0, 1, 1)))
            layers.append(nn.Upsample(scale_factor=(1, 2, 2), mode="nearest"))
            channels = half
        layers += [nn.Conv3d(channels, 1, (1, 3, 3), padding=(0, 1, 1)), nn.Tanh()]
        self.layers = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """The last convolution and tanh in float32 even under bf16 autocast (bf16 steps of 2^-8
        on the [0, 1] output would be a few per cent in intensity)."""
        h = self.layers[:-2](x)
        with torch.autocast(x.device.type, enabled=False):
            return self.layers[-1](self.layers[-2](h.float())).squeeze(1)


class COEmuNet(Emulator, kind="coemunet"):
    """The emulator; defaults are the paper's (143,294,737 parameters for n_freq = 7).

    Args:
        n_freq: frequency channels of the output image (1 for pretraining, 7 for fine-tuning).
        grid: cells per axis of the input cube (divisible by 8: the decoder upsamples 3 times).
        stem: channels of each branch's first convolution.
        widths: channels of the three encoder stages.
        blocks_per_stage: residual blocks per stage (the first one downsamples).
        latent: width of the latent layer.
        decoder_channels: channels at the decoder's input (halved by each of its 3 stages).

    The arguments are kept (``model.kwargs``) and saved in model files;
    ``COEmuNet.from_checkpoint(path)`` rebuilds the trained model.
    """

    def __init__(
        self,
        n_freq: int = 7,
        grid: int = 64,
        stem: int = 4,
        widths: Sequence[int] = (8, 16, 32),
        blocks_per_stage: int = 3,
        latent: int = 4096,
        decoder_channels: int = 64,
    ):
        super().__init__()
        if grid % 8:
            raise ValueError(f"grid must be divisible by 8, got {grid}")
        if decoder_channels % 8:
            raise ValueError(f"decoder_channels must be divisible by 8, got {decoder_channels}")
        self.n_freq, self.grid, self.decoder_channels = n_freq, grid, decoder_channels
        self.encoders = nn.ModuleList(Encoder(stem, widths, blocks_per_stage) for _ in range(3))
        flat = 3 * widths[-1] * encoder_size(grid, len(widths)) ** 3
        self.to_latent = nn.Linear(flat, latent)
        self.to_decoder = nn.Linear(latent, decoder_channels * n_freq * (grid // 8) ** 2)
        self.decoder = Decoder(decoder_channels)

    @classmethod
    def from_data(cls, data, **settings) -> COEmuNet:
        """For ``data`` (a :class:`coemu.data.description.DataDescription`): its channels and grid."""
        return cls(n_freq=data.n_freq, grid=data.grid, **settings)

    def forward(self, x: Tensor) -> Tensor:
        """(batch, 3, G, G, G) -> (batch, n_freq, G, G)."""
        features = [torch.flatten(enc(x[:, i : i + 1]), 1) for i, enc in enumerate(self.encoders)]
        z = self.to_latent(torch.cat(features, dim=1))
        s = self.grid // 8
        h = torch.relu(self.to_decoder(z)).view(-1, self.decoder_channels, self.n_freq, s, s)
        return self.decoder(h)
