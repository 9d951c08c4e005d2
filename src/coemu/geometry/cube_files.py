"""The cube stage: a hydro model -> its cube file, and a block of models -> their files and manifest.

Each cube file carries a fingerprint (:func:`cube_fingerprint`) of what it is
made from: the model (file identity, or synthetic id and point-cloud
resolution), the global sphere radius, the settings and this stage's code;
a block job remakes only the files whose fingerprint changed
(:func:`coemu.io.blocks.run_block`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from coemu.geometry.cube import make_cubes
from coemu.geometry.sphere import read_sphere_radius
from coemu.io.blocks import BlockItem, run_block, same_length

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CubeSettings:
    """The cube stage's settings: the ``cubes`` section, the data-set ``seed`` and the
    synthetic models' point-cloud layout (``models.n_base``, ``levels``, ``finest_spacing``).

    Attributes:
        seed: data-set seed (rotations; synthetic models).
        rotations: viewing directions per model (0 = face-on).
        box_cells: cells across the sphere's box.
        grid: central cells kept per axis.
        method: regridding method (:data:`coemu.geometry.cube.METHODS`).
        n_base, levels, finest_spacing: the synthetic point clouds' layout
            (:func:`coemu.hydro.synthetic.amr_points`).
    """

    seed: int
    rotations: int
    box_cells: int
    grid: int
    method: str
    n_base: int
    levels: int
    finest_spacing: float

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> CubeSettings:
        """From a completed config (``coemu.settings.complete``)."""
        m = config["models"]
        layout = {k: m[k] for k in ("n_base", "levels", "finest_spacing")}
        return cls(seed=config["seed"], **layout, **config["cubes"])


def cube_fingerprint(model_id: str, source: Path | None, radius: float, settings: CubeSettings) -> str:
    """What a cube file is made from: model source, sphere radius, settings and code."""
    from coemu.io.provenance import code_digest, file_identity, fingerprint

    origin = (
        {
            "synthetic": model_id,
            "n_base": settings.n_base,
            "levels": settings.levels,
            "finest_spacing": settings.finest_spacing,
        }
        if source is None
        else {"file": str(source), **file_identity(source)}
    )
    s = asdict(settings)
    del s["n_base"], s["levels"], s["finest_spacing"]  # in the source (synthetic models only)
    return fingerprint(model=model_id, source=origin, radius=radius, **s, code=code_digest("cubes"))


def make_cube_file(
    model_id: str | None,
    source: Path | None,
    output: str | Path,
    radius: float,
    settings: CubeSettings,
    fingerprint: str | None = None,
    progress: bool = False,
) -> None:
    """Trim, rotate and regrid one model (a file, or a synthetic id) into ``output`` (atomically).

    ``fingerprint``: its :func:`cube_fingerprint` when the caller has it already.
    """
    from coemu.hydro.sources import model_for
    from coemu.io.atomic import write_netcdf_atomic
    from coemu.io.provenance import FINGERPRINT_ATTR

    t0 = time.perf_counter()
    model = model_for(
        model_id, source, settings.seed, settings.n_base, settings.levels, settings.finest_spacing
    )
    t1 = time.perf_counter()
    cubes = make_cubes(
        model,
        radius,
        seed=settings.seed,
        n_rotations=settings.rotations,
        box_cells=settings.box_cells,
        grid=settings.grid,
        progress=progress,
        method=settings.method,
    )
    cubes.attrs[FINGERPRINT_ATTR] = fingerprint or cube_fingerprint(model.name, source, radius, settings)
    t2 = time.perf_counter()
    write_netcdf_atomic(cubes, output)
    log.info(
        "%s: %d points, %d rotations of %d^3: load %.2f s, regrid %.2f s, write %.2f s",
        model.name,
        model.n_points,
        settings.rotations,
        settings.grid,
        t1 - t0,
        t2 - t1,
        time.perf_counter() - t2,
    )


def make_cube_block(
    models: Sequence[str],
    outputs: Sequence[str | Path],
    sources: Sequence[str | Path] | None,
    sphere: str | Path,
    manifest: str | Path,
    settings: CubeSettings,
    progress: bool = False,
) -> int:
    """The cube files of a block of models; returns how many were made.

    ``sources``: the models' files, one per model (None: synthetic models).
    """
    same_length(models=models, outputs=outputs, inputs=sources)
    radius = read_sphere_radius(sphere)
    items = [
        BlockItem(m, {"cube": Path(o)}, source=None if sources is None else Path(sources[k]))
        for k, (m, o) in enumerate(zip(models, outputs, strict=True))
    ]
    return run_block(
        items,
        lambda i: cube_fingerprint(i.model, i.source, radius, settings),
        lambda i, wanted: make_cube_file(i.model, i.source, i.outputs["cube"], radius, settings, wanted),
        manifest,
        done="cubes made",
        progress=progress,
    )
