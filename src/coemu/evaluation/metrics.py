"""The paper's metrics (section 2.5.5, eq. 30-36), per sample.

All functions take (batch, n_freq, H, W) tensors and return (batch,) values,
or (batch, n_freq) with ``per_channel=True`` (the value of each channel, whose
mean over channels is the (batch,) value).

* MaxRel (eq. 30), on physical intensities (predictions put back through
  :meth:`coemu.data.transform.Preprocessing.intensity_inverse`): the mean over
  channels and pixels of ``|I - I'| / max_nu I`` in percent, ``max_nu I`` the
  target's peak over the channels at that pixel (floored at ``floor`` so that
  a pixel with no emission at all does not divide by zero). The paper's
  figure is the median over samples.
* ZNCC (eq. 31-32), per channel, averaged over channels: the covariance of
  the two images over the product of their standard deviations (eq. 31 with
  the 1/N that makes it range over [-1, 1]). A channel where either image is
  constant has no defined correlation and counts as 0 (an untrained network
  often predicts constant images; NaN would hide the other channels).
* SSIM (eq. 33-36) on normalised images: torchmetrics' implementation with
  its defaults (Gaussian window 11, sigma 1.5, K1 0.01, K2 0.03), data range 1
  (the normalised intensities lie in [0, 1]), averaged over channels.
"""

from __future__ import annotations

import torch
from torch import Tensor

from coemu.data.variables import DEFAULT_INTENSITY_FLOOR


def maxrel_percent(
    target: Tensor, prediction: Tensor, floor: float = DEFAULT_INTENSITY_FLOOR, per_channel: bool = False
) -> Tensor:
    """(batch,) MaxRel in percent; ``target`` and ``prediction`` in W m-2 Hz-1 sr-1."""
    peak = target.amax(dim=1, keepdim=True).clamp_min(floor)
    per = ((target - prediction).abs() / peak).mean(dim=(2, 3)) * 100.0
    return per if per_channel else per.mean(dim=1)


def zncc(target: Tensor, prediction: Tensor, per_channel: bool = False) -> Tensor:
    """(batch,) zero-mean normalised cross-correlation, averaged over channels."""
    a = target - target.mean(dim=(2, 3), keepdim=True)
    b = prediction - prediction.mean(dim=(2, 3), keepdim=True)
    covariance = (a * b).mean(dim=(2, 3))
    scale = a.square().mean(dim=(2, 3)).sqrt() * b.square().mean(dim=(2, 3)).sqrt()
    per = torch.where(scale > 0, covariance / scale.clamp_min(torch.finfo(scale.dtype).tiny), 0.0)
    return per if per_channel else per.mean(dim=1)


def ssim(target: Tensor, prediction: Tensor, per_channel: bool = False) -> Tensor:
    """(batch,) SSIM of normalised images (data range 1), averaged over channels."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    per = [
        structural_similarity_index_measure(
            prediction[:, c : c + 1].double(),
            target[:, c : c + 1].double(),
            gaussian_kernel=True,
            sigma=1.5,
            kernel_size=11,
            data_range=1.0,
            reduction="none",
        )
        for c in range(target.shape[1])
    ]
    per = torch.stack(per, dim=1).to(target.dtype)
    return per if per_channel else per.mean(dim=1)
