"""Run the reference solver, pomme 0.2.1, on arrays from an npz file (tests and benchmarks only).

``python -m coemu.rt.reference IN.npz OUT.npz``: a separate process, because
``import pomme`` sets torch's default dtype to float64. IN holds
``temperature``, ``number_density``, ``velocity_z`` (B, X, Y, Z), ``frequencies``
(F,), ``dx``, ``v_turbulence``, ``background`` (F,), ``datafile``,
``transition``, ``threads``, ``repeat``; OUT gets ``images`` (B, X, Y, F) and
``seconds`` (repeat, B): the wall time of each call, one cube per call, as
pomme is used. pomme is GPL-3.0 and is not a dependency of coemu: the
oracle tests install it with ``--no-deps`` beside its own dependencies.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

#: Cube-contract variable behind each solver input.
SOLVER_INPUTS = {
    "temperature": "temperature",
    "number_density": "number_density_co",
    "velocity_z": "velocity_z",
}


def solver_arrays(cubes) -> dict[str, np.ndarray]:
    """Stack the rotations of several cube datasets into float64 solver inputs (B, X, Y, Z)."""
    return {
        key: np.concatenate([c[var].values for c in cubes]).astype(np.float64)
        for key, var in SOLVER_INPUTS.items()
    }


def run_reference(
    arrays: dict[str, np.ndarray],
    frequencies: np.ndarray,
    dx: float,
    background: np.ndarray,
    v_turbulence: float = 0.0,
    threads: int = 2,
    repeat: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """pomme's images (B, X, Y, F) and the seconds of each call (repeat, B), in a separate process."""
    from coemu.rt.lamda import lamda_path

    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.npz", Path(tmp) / "out.npz"
        np.savez(
            src,
            **arrays,
            frequencies=frequencies,
            dx=dx,
            v_turbulence=v_turbulence,
            background=background,
            datafile=str(lamda_path()),
            transition=1,
            threads=threads,
            repeat=repeat,
        )
        proc = subprocess.run(
            [sys.executable, "-m", "coemu.rt.reference", src, dst], capture_output=True, text=True
        )
        if proc.returncode != 0:
            raise RuntimeError(f"pomme failed:\n{proc.stderr[-3000:]}")
        out = np.load(dst)
        return out["images"], out["seconds"]


def main(argv: list[str]) -> int:
    """Entry point of the separate process: IN.npz -> OUT.npz."""
    src, dst = argv
    inp = np.load(src)
    import torch

    torch.set_num_threads(int(inp["threads"]))
    import pomme  # noqa: F401  (sets the default dtype to float64)
    from pomme.lines import Line

    line = Line(species_name="CO", transition=int(inp["transition"]), datafile=str(inp["datafile"]))
    freqs = torch.from_numpy(inp["frequencies"].astype(np.float64))
    bdy = torch.from_numpy(inp["background"].astype(np.float64))
    cubes = [
        torch.from_numpy(inp[k].astype(np.float64)) for k in ("temperature", "number_density", "velocity_z")
    ]
    v_turb = torch.full_like(cubes[0][0], float(inp["v_turbulence"]))
    n_batch = cubes[0].shape[0]
    images = []
    seconds = np.zeros((int(inp["repeat"]), n_batch))
    for r in range(int(inp["repeat"])):
        images = []
        for i in range(n_batch):
            t0 = time.perf_counter()
            img = line.LTE_image_along_last_axis(
                abundance=cubes[1][i],
                temperature=cubes[0][i],
                v_turbulence=v_turb,
                velocity_los=cubes[2][i],
                frequencies=freqs,
                dx=float(inp["dx"]),
                img_bdy=bdy,
            )
            seconds[r, i] = time.perf_counter() - t0
            images.append(img.numpy())
    np.savez(dst, images=np.stack(images), seconds=seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
