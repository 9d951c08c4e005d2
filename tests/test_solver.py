"""The LTE line solver against analytic cases (no reference solver needed)."""

import math

import numpy as np
import pytest
import torch

from coemu.constants import BOLTZMANN, PLANCK, SPEED_OF_LIGHT
from coemu.rt.lamda import load_line
from coemu.rt.lte import (
    inverse_doppler_width,
    log_partition_function,
    opacity_and_source,
    partition_function_exact,
)
from coemu.rt.solver import background_intensity, line_images
from coemu.rt.spectral import channel_frequencies
from coemu.rt.transfer import (
    SQRT_PI,
    WING_CUT,
    _line_nodes,
    formal_solution,
    segment_optical_depth,
    transfer_line_segments,
)

LINE = load_line()
F64 = torch.float64


def cube(shape, temperature, density, velocity=0.0):
    full = [
        torch.full(shape, float(v), dtype=F64) if np.isscalar(v) else torch.as_tensor(v, dtype=F64)
        for v in (temperature, density, velocity)
    ]
    return full


def analytic_tau(temperature, density, frequencies, length):
    """Line optical depth of a static uniform slab: chi n phi(nu) L."""
    t = torch.tensor([float(temperature)], dtype=F64)
    chi, source = opacity_and_source(LINE, t)
    inv_w = inverse_doppler_width(LINE, t)
    phi = (
        inv_w
        / math.sqrt(math.pi)
        * torch.exp(-(((torch.as_tensor(frequencies) - LINE.frequency) * inv_w) ** 2))
    )
    return (chi * density * phi * length).numpy(), float(source)


def test_co_line_data():
    assert LINE.description == "CO(J=2-1)"
    assert LINE.frequency == 230.538e9 and LINE.einstein_a == 6.910e-07
    assert LINE.mass / 1.66053906660e-27 == pytest.approx(28.0101)
    assert len(LINE.data.energy) == 41


def test_lte_source_function_is_the_planck_function():
    # in LTE, S = B_nu0(T) (up to the level energies' rounding, ~1e-5)
    t = torch.tensor([20.0, 100.0, 1000.0], dtype=F64)
    _, s = opacity_and_source(LINE, t)
    nu = LINE.frequency
    b = 2 * PLANCK * nu**3 / SPEED_OF_LIGHT**2 / torch.expm1(PLANCK * nu / (BOLTZMANN * t))
    np.testing.assert_allclose(s.numpy(), b.numpy(), rtol=5e-5)


def test_tabulated_partition_function():
    t = torch.exp(torch.linspace(math.log(0.6), math.log(1.9e5), 100001, dtype=F64))
    exact = partition_function_exact(LINE, t)
    np.testing.assert_allclose(torch.exp(log_partition_function(LINE, t)).numpy(), exact.numpy(), rtol=1e-7)


def test_uniform_slab_gives_s_times_one_minus_exp_tau():
    n_z, dx = 32, 1e11
    freqs = channel_frequencies(LINE.frequency, 7, 300.0)
    images = line_images(LINE, *cube((1, 2, 2, n_z), 80.0, 3e10), freqs, dx)
    tau, s = analytic_tau(80.0, 3e10, freqs, (n_z - 1) * dx)
    assert tau.max() > 1.0 and tau.min() < 1.0  # optically thick core, thinner wings
    np.testing.assert_allclose(images[0, 0, 0].numpy(), s * -np.expm1(-tau), rtol=1e-10)


def test_optically_thin_limit_is_the_integral_of_the_emissivity():
    n_z, dx, n = 40, 1e11, 1.0
    freqs = channel_frequencies(LINE.frequency, 7, 300.0)
    images = line_images(LINE, *cube((1, 1, 1, n_z), 150.0, n), freqs, dx)
    tau, s = analytic_tau(150.0, n, freqs, (n_z - 1) * dx)
    assert tau.max() < 1e-8
    emissivity_integral = s * tau  # eta = S chi phi n, integrated over the slab
    np.testing.assert_allclose(images[0, 0, 0].numpy(), emissivity_integral, rtol=1e-7)


def random_cube(shape, seed=0, velocity=True):
    g = torch.Generator().manual_seed(seed)
    t = 20 + 400 * torch.rand(shape, generator=g, dtype=F64)
    n = 10 ** (6 + 6 * torch.rand(shape, generator=g, dtype=F64))
    v = (
        (2 * torch.rand(shape, generator=g, dtype=F64) - 1) * 5e3
        if velocity
        else torch.zeros(shape, dtype=F64)
    )
    return t, n, v


def test_static_gas_gives_a_symmetric_spectrum():
    freqs = channel_frequencies(LINE.frequency, 9, 250.0)
    img = line_images(LINE, *random_cube((2, 4, 4, 24), velocity=False), freqs, 5e10)
    # channel frequencies nu0 (1 - v/c) are symmetric to float64 rounding (~1e-16 nu0 / width ~ 1e-10)
    np.testing.assert_allclose(img.numpy(), img.flip(-1).numpy(), rtol=1e-9)
    assert not np.allclose(img[..., 0].numpy(), img[..., 4].numpy(), rtol=1e-3, atol=0)


def test_uniform_velocity_shifts_the_line_by_v_over_c():
    v = 2.3e3
    freqs = channel_frequencies(LINE.frequency, 7, 300.0)
    t, n, _ = random_cube((1, 3, 3, 20), seed=1)
    moving = line_images(LINE, t, n, torch.full_like(t, v), freqs, 5e10)
    static = line_images(LINE, t, n, torch.zeros_like(t), freqs * (1 + v / SPEED_OF_LIGHT), 5e10)
    np.testing.assert_allclose(moving.numpy(), static.numpy(), rtol=1e-8)
    # and the peak of an optically thin uniform slab moves to the red, by v
    wide = channel_frequencies(LINE.frequency, 41, 150.0)
    spectrum = line_images(LINE, *cube((1, 1, 1, 16), 100.0, 1e6, v), wide, 5e10)[0, 0, 0]
    peak_velocity = (1 - wide[int(spectrum.argmax())] / LINE.frequency) * SPEED_OF_LIGHT
    assert abs(peak_velocity - v) < 150.0


def test_chunking_and_dtype():
    freqs = channel_frequencies(LINE.frequency, 7, 300.0)
    args = random_cube((3, 8, 8, 32), seed=2)
    ref = line_images(LINE, *args, freqs, 4e10)
    tiny = line_images(LINE, *args, freqs, 4e10, memory_budget=40_000)  # chunks of a few rays
    np.testing.assert_array_equal(ref.numpy(), tiny.numpy())
    single = line_images(LINE, *(a.float() for a in args), freqs, 4e10)
    assert single.dtype == torch.float32
    err = (single.double() - ref).abs().max() / ref.abs().max()
    assert err < 1e-4


def test_background_is_attenuated_by_the_total_optical_depth():
    n_z, dx = 16, 1e11
    freqs = channel_frequencies(LINE.frequency, 5, 400.0)
    bdy = background_intensity("cmb", freqs)
    with_bg = line_images(LINE, *cube((1, 1, 1, n_z), 60.0, 1e8), freqs, dx, background=bdy)
    without = line_images(LINE, *cube((1, 1, 1, n_z), 60.0, 1e8), freqs, dx)
    tau, _ = analytic_tau(60.0, 1e8, freqs, (n_z - 1) * dx)
    assert 0.1 < tau.max() < 10
    np.testing.assert_allclose((with_bg - without)[0, 0, 0].numpy(), bdy * np.exp(-tau), rtol=1e-8)


def test_temperature_outside_the_table_is_refused():
    t, n, v = random_cube((1, 2, 2, 8))
    t[0, 0, 0, 0] = 1e6
    with pytest.raises(ValueError, match="outside the solver's range"):
        line_images(LINE, t, n, v, channel_frequencies(LINE.frequency), 1e10)


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-13), (torch.float32, 1e-6)])
def test_line_segments_only_equals_the_dense_transfer(dtype, tol):
    """Skipping the far-wing segments changes nothing beyond rounding, thick lines and sign flips included."""
    t, n, v = (x.to(dtype).reshape(-1, 48) for x in random_cube((2, 6, 6, 48), seed=4))
    n = n * 1e3  # optically thick in the core
    freqs = channel_frequencies(LINE.frequency, 7, 300.0)
    chi, source = opacity_and_source(LINE, t)
    inv_w = inverse_doppler_width(LINE, t)
    a = (3e10 / SQRT_PI) * inv_w * chi * n
    offset = torch.as_tensor(freqs - LINE.frequency, dtype=dtype)
    doppler = torch.as_tensor(freqs / SPEED_OF_LIGHT, dtype=dtype)
    b = inv_w * (offset.view(-1, 1, 1) + doppler.view(-1, 1, 1) * v)
    bdy = torch.as_tensor(background_intensity("cmb", freqs), dtype=dtype).view(-1, 1)
    dense = formal_solution(source, segment_optical_depth(a, b), bdy)
    sparse = transfer_line_segments(a, inv_w, v, offset, doppler, source, bdy)
    assert float((b.abs() > 6).double().mean()) > 0.3  # the test does skip segments
    assert float((sparse - dense).abs().max() / dense.abs().max()) < tol


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_velocity_windows_find_every_segment_that_sees_the_line(dtype):
    """The masks from velocity windows contain every segment with a node near the line or a sign flip."""
    t, _, v = (x.to(dtype).reshape(-1, 40) for x in random_cube((3, 5, 5, 40), seed=8))
    freqs = channel_frequencies(LINE.frequency, 9, 250.0)
    inv_w = inverse_doppler_width(LINE, t)
    offset = torch.as_tensor(freqs - LINE.frequency, dtype=dtype)
    doppler = torch.as_tensor(freqs / SPEED_OF_LIGHT, dtype=dtype)
    b = inv_w * (offset.view(-1, 1, 1) + doppler.view(-1, 1, 1) * v)
    near = b.abs() < WING_CUT
    exact = near[..., :-1] | near[..., 1:] | ((b[..., :-1] > 0) != (b[..., 1:] > 0))
    starts, nodes = _line_nodes(inv_w, v, offset, doppler)
    assert not starts[..., -1].any()
    assert bool((starts[..., :-1] >= exact).all()) and int(exact.sum()) > 1000
    assert float(starts.double().mean()) < 1.05 * float(exact.double().mean())  # hardly more
    assert torch.equal(nodes[..., 1:], starts[..., 1:] | starts[..., :-1])


@pytest.mark.slow
def test_compiled_kernels_give_the_same_images():
    freqs = channel_frequencies(LINE.frequency, 7, 300.0)
    args = random_cube((1, 8, 8, 32), seed=6)
    eager = line_images(LINE, *args, freqs, 4e10)
    fused = line_images(LINE, *args, freqs, 4e10, compile=True)
    assert float((fused - eager).abs().max() / eager.abs().max()) < 1e-12
