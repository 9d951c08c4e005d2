"""Agreement with the reference solver, pomme 0.2.1, run in a separate process.

pomme changes torch's default dtype on import, so it runs through
``python -m coemu.rt.reference`` (:func:`coemu.rt.reference.run_reference`);
scripts/test.sh installs it with --no-deps.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from coemu.geometry.cube import make_cubes
from coemu.hydro.sources import synthetic_extents
from coemu.hydro.synthetic import synthetic_model
from coemu.rt.lamda import load_line
from coemu.rt.reference import run_reference, solver_arrays
from coemu.rt.solver import background_intensity, line_images
from coemu.rt.spectral import channel_frequencies

pytestmark = pytest.mark.oracle
LINE = load_line()


def pomme_images(arrays, frequencies, dx, background, v_turbulence=0.0):
    assert importlib.util.find_spec("pomme") is not None, "pomme 0.2.1 missing: run scripts/test.sh"
    return run_reference(arrays, frequencies, dx, background, v_turbulence)[0]


@pytest.fixture(scope="module")
def synthetic_cubes():
    """Three synthetic models, rotations 0 (face-on) and 1 (random), 64^3 from a 128^3 box."""
    seed = 31
    radius = min(e.radius for e in synthetic_extents(seed, 3).values())
    cubes = [make_cubes(synthetic_model(seed, i, n_base=24, levels=4), radius, seed, 2) for i in range(3)]
    arrays = solver_arrays(cubes)
    return arrays, float(cubes[0].attrs["cell_size"])


@pytest.mark.slow  # about 15-35 s on 2 cores
@pytest.mark.parametrize("background", ["zero", "cmb"])
def test_agrees_with_pomme_on_synthetic_cubes(synthetic_cubes, background):
    arrays, dx = synthetic_cubes
    freqs = channel_frequencies(LINE.frequency, 7, 300.0)
    bdy = background_intensity(background, freqs)
    reference = pomme_images(arrays, freqs, dx, bdy)
    assert reference.shape == (6, 64, 64, 7) and reference.max() > 0
    inputs = [torch.from_numpy(arrays[k]) for k in ("temperature", "number_density", "velocity_z")]
    scale = np.abs(reference).max()
    ours64 = line_images(LINE, *inputs, freqs, dx, background=bdy).numpy()
    assert np.abs(ours64 - reference).max() <= 1e-4 * scale
    ours32 = line_images(LINE, *(x.float() for x in inputs), freqs, dx, background=bdy).double().numpy()
    assert np.abs(ours32 - reference).max() <= 1e-3 * scale
    # per image too, not only against the brightest one
    for k in range(6):
        assert np.abs(ours64[k] - reference[k]).max() <= 1e-4 * np.abs(reference[k]).max()


def test_agrees_with_pomme_with_turbulence_and_one_channel(synthetic_cubes):
    arrays, dx = synthetic_cubes
    freqs = np.array([LINE.frequency])
    reference = pomme_images(arrays, freqs, dx, np.zeros(1), v_turbulence=400.0)
    inputs = [torch.from_numpy(arrays[k]) for k in ("temperature", "number_density", "velocity_z")]
    ours = line_images(LINE, *inputs, freqs, dx, v_turbulence=400.0).numpy()
    assert np.abs(ours - reference).max() <= 1e-4 * np.abs(reference).max()
