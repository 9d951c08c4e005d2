"""Shared fixtures: small synthetic models, CLI runner, repository paths."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args: str, cwd: Path | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``coemu ARGS`` in a subprocess (the way the rules call it)."""
    proc = subprocess.run(
        [sys.executable, "-m", "coemu.cli", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"coemu {' '.join(map(str, args))} failed:\n{proc.stderr}")
    return proc


@pytest.fixture(scope="session")
def small_model():
    """A synthetic model with few points (n_base 16, 3 levels), for fast tests."""
    from coemu.hydro.synthetic import synthetic_model

    return synthetic_model(seed=7, index=3, n_base=16, levels=3)


@pytest.fixture()
def model_nc(tmp_path, small_model):
    """The small model written as a hydro-model netCDF file."""
    from coemu.hydro.model import hydro_to_dataset
    from coemu.io.atomic import write_netcdf_atomic

    path = tmp_path / "models" / "m00003.nc"
    write_netcdf_atomic(hydro_to_dataset(small_model), path)
    return path
