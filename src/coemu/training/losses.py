"""The paper's loss (eq. 26-29): lambda MSE + (1 - lambda) frequency loss on the 2D DFT."""

from __future__ import annotations

import torch
from torch import Tensor, nn


def frequency_loss(prediction: Tensor, target: Tensor) -> Tensor:
    """Mean over channels and spatial frequencies of |F - F'|, F the unnormalised 2D DFT (eq. 28-29).

    Args:
        prediction, target: (batch, n_freq, H, W).
    """
    difference = torch.fft.fft2(prediction.float()) - torch.fft.fft2(target.float())
    return difference.abs().mean()


class EmulatorLoss(nn.Module):
    """``mse_weight * MSE + freq_weight * frequency loss``.

    The weights are the stage's ``training.{stage}.mse_weight`` and ``freq_weight`` (the
    schema's defaults are the paper's, 0.8 and 0.2); the loss has no defaults of its own.
    """

    def __init__(self, mse_weight: float, freq_weight: float):
        super().__init__()
        self.mse_weight, self.freq_weight = mse_weight, freq_weight

    def forward(self, prediction: Tensor, target: Tensor) -> Tensor:
        """The scalar loss of normalised images ``prediction`` and ``target``, (batch, n_freq, H, W)."""
        mse = nn.functional.mse_loss(prediction.float(), target.float())
        return self.mse_weight * mse + self.freq_weight * frequency_loss(prediction, target)
