"""Agreement with the reference solver, pomme 0.2.1, run in a separate process.

pomme changes torch's default dtype on import, so it runs through
``python -m coemu.rt.reference``; scripts/test.sh installs it with --no-deps.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import numpy as np
import pytest
import torch

from coemu.geometry.cube import make_cubes
from coemu.hydro.sources import synthetic_extents
from coemu.hydro.synthetic import synthetic_model
from coemu.rt.lamda import lamda_path, load_line
from coemu.rt.solver import background_intensity, line_images
from coemu.rt.spectral import channel_frequencies

pytestmark = pytest.mark.oracle
LINE = load_line()


def pomme_images(tmp_path, arrays, frequencies, dx, background, v_turbulence=0.0):
    assert importlib.util.find_spec("pomme") is not None, "pomme 0.2.1 missing: run scripts/test.sh"
    src, dst = tmp_path / "in.npz", tmp_path / "out.npz"
    np.savez(
        src,
        **arrays,
        frequencies=frequencies,
        dx=dx,
        v_turbulence=v_turbulence,
        background=background,
        datafile=str(lamda_path()),
        transition=1,
        threads=2,
        repeat=1,
    )
    proc = subprocess.run(
        [sys.executable, "-m", "coemu.rt.reference", src, dst], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    return np.load(dst)["images"]


@pytest.fixture(scope="module")
def synthetic_cubes():
    """Three synthetic models, rotations 0 (face-on) and 1 (random), 64^3 from a 128^3 box."""
    seed = 31
    radius = min(e.radius for e in synthetic_extents(seed, 3).values())
    cubes = [make_cubes(synthetic_model(seed, i, n_base=24, levels=4), radius, seed, 2) for i in range(3)]
    arrays = {
        key: np.concatenate([c[var].values for c in cubes]).astype(np.float64)
        for key, var in (
            ("temperature", "temperature"),
            ("number_density", "number_density_co"),
            ("velocity_z", "velocity_z"),
        )
    }
    return arrays, float(cubes[0].attrs["cell_size"])


@pytest.mark.parametrize("background", ["zero", "cmb"])
def test_agrees_with_pomme_on_synthetic_cubes(tmp_path, synthetic_cubes, background):
    arrays, dx = synthetic_cubes
    freqs = channel_frequencies(LINE.frequency, 7, 300.0)
    bdy = background_intensity(background, freqs)
    reference = pomme_images(tmp_path, arrays, freqs, dx, bdy)
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


def test_agrees_with_pomme_with_turbulence_and_one_channel(tmp_path, synthetic_cubes):
    arrays, dx = synthetic_cubes
    freqs = np.array([LINE.frequency])
    reference = pomme_images(tmp_path, arrays, freqs, dx, np.zeros(1), v_turbulence=400.0)
    inputs = [torch.from_numpy(arrays[k]) for k in ("temperature", "number_density", "velocity_z")]
    ours = line_images(LINE, *inputs, freqs, dx, v_turbulence=400.0).numpy()
    assert np.abs(ours - reference).max() <= 1e-4 * np.abs(reference).max()
