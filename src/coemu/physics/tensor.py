"""Scalars given as Python numbers or tensors, as tensors of one dtype and device."""

from __future__ import annotations

import torch


def as_tensor(value, dtype: torch.dtype | None = None, device=None) -> torch.Tensor:
    """``value`` (a number or a tensor) as a tensor of ``dtype`` on ``device``.

    A tensor keeps its autograd graph (a conversion is differentiable) and, where ``dtype``
    or ``device`` is None, its own dtype or device; a number becomes a 0-d tensor of
    ``dtype`` (default float64: never torch's float32 default).
    """
    if isinstance(value, torch.Tensor):
        return value.to(dtype=dtype or value.dtype, device=device or value.device)
    return torch.tensor(float(value), dtype=dtype or torch.float64, device=device)
