"""COEmuNet: the paper's parameter count, shapes, gradients, loss, and that it can learn."""

from __future__ import annotations

import pytest
import torch

from coemu.nn import COEmuNet
from coemu.training.losses import EmulatorLoss, frequency_loss

SMALL = {
    "grid": 16,
    "stem": 2,
    "widths": (4, 4, 8),
    "blocks_per_stage": 2,
    "latent": 64,
    "decoder_channels": 16,
}


def n_params(model):
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def test_paper_parameter_count():
    assert n_params(COEmuNet(n_freq=7)) == 143_294_737  # the slides' 143,303,809 less 9,072 unused
    assert n_params(COEmuNet(n_freq=1)) == 143_294_737 - 4096 * 64 * 8 * 8 * 6 - 64 * 8 * 8 * 6


@pytest.mark.slow
def test_every_parameter_of_the_paper_model_gets_a_gradient():
    torch.manual_seed(0)
    model = COEmuNet(n_freq=7)
    out = model(torch.randn(2, 3, 64, 64, 64))
    assert out.shape == (2, 7, 64, 64)
    out.square().mean().backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


@pytest.mark.parametrize("n_freq", [1, 7])
def test_forward_shapes(n_freq):
    model = COEmuNet(n_freq=n_freq, **SMALL).eval()
    out = model(torch.randn(3, 3, 16, 16, 16))
    assert out.shape == (3, n_freq, 16, 16)
    assert out.abs().max() < 1  # tanh output


def test_grid_must_allow_three_upsamplings():
    with pytest.raises(ValueError, match="divisible by 8"):
        COEmuNet(grid=60)


def test_loss_on_hand_computed_cases():
    target = torch.zeros(1, 1, 4, 4)
    # a constant offset c: MSE c^2; the DFT difference is 16 c at (0, 0) only, mean |.| = c
    assert frequency_loss(target + 0.5, target) == pytest.approx(0.5)
    assert EmulatorLoss(0.8, 0.2)(target + 0.5, target) == pytest.approx(0.8 * 0.25 + 0.2 * 0.5)
    # one pixel off by h: |DFT difference| = h at every frequency; MSE h^2 / 16
    spike = target.clone()
    spike[0, 0, 1, 2] = 2.0
    assert frequency_loss(spike, target) == pytest.approx(2.0)
    assert EmulatorLoss(0.5, 0.5)(spike, target) == pytest.approx(0.5 * 4 / 16 + 0.5 * 2.0)


@pytest.mark.slow
def test_small_model_overfits_a_handful_of_samples():
    """Four inputs, four sets of 3 smooth line-like images (Gaussian blobs moving with channel)."""
    torch.manual_seed(1)
    model = COEmuNet(n_freq=3, grid=16, stem=2, widths=(4, 4, 8), blocks_per_stage=1, latent=128)
    x = torch.randn(4, 3, 16, 16, 16)
    yy, xx = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
    y = torch.stack(
        [
            torch.stack(
                [
                    0.8 * torch.exp(-((xx - 4 - 2 * i - j) ** 2 + (yy - 8 + i) ** 2) / (8 + 4 * j))
                    for j in range(3)
                ]
            )
            for i in range(4)
        ]
    )
    loss_fn = EmulatorLoss(0.8, 0.2)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(120):
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 10


def test_the_model_keeps_its_arguments_and_loads_itself_from_a_model_file(tmp_path):
    from coemu.io.errors import CoemuInputError
    from coemu.nn import Emulator
    from coemu.training import checkpoint

    torch.manual_seed(0)
    model = COEmuNet(n_freq=3, **SMALL).eval()
    assert model.kwargs == {"n_freq": 3, **SMALL, "widths": [4, 4, 8]}
    assert COEmuNet(**model.kwargs).kwargs == model.kwargs  # the same architecture again
    checkpoint.save(tmp_path / "model.pt", model.model_file(run={"note": "test"}))
    loaded = COEmuNet.from_checkpoint(tmp_path / "model.pt")
    assert type(loaded) is COEmuNet and loaded.kwargs == model.kwargs and not loaded.training
    x = torch.randn(2, 3, 16, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
    assert type(Emulator.from_checkpoint(tmp_path / "model.pt")) is COEmuNet
    # not a model file; weights of another architecture; an unknown kind
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(CoemuInputError, match="other.pt: not a coemu model file"):
        COEmuNet.from_checkpoint(tmp_path / "other.pt")
    wrong = model.model_file() | {"kwargs": {**model.kwargs, "latent": 32}}
    torch.save(wrong, tmp_path / "wrong.pt")
    with pytest.raises(CoemuInputError, match="wrong.pt: variable 'model': weights do not fit a coemunet"):
        COEmuNet.from_checkpoint(tmp_path / "wrong.pt")
    torch.save(model.model_file() | {"kind": "fno"}, tmp_path / "fno.pt")
    with pytest.raises(CoemuInputError, match="unknown emulator kind 'fno'"):
        Emulator.from_checkpoint(tmp_path / "fno.pt")
