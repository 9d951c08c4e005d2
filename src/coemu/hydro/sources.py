"""Loading models and their extents from either source (synthetic or files)."""

from __future__ import annotations

from pathlib import Path

from coemu.geometry.sphere import Extent
from coemu.hydro.catalog import synthetic_model_id
from coemu.hydro.model import HydroModel
from coemu.hydro.readers import read_hydro_model
from coemu.hydro.synthetic import domain_bounds, draw_parameters, synthetic_model


def load_model(
    path: str | Path | None = None,
    synthetic_index: int | None = None,
    seed: int = 0,
    n_base: int = 32,
    levels: int = 3,
) -> HydroModel:
    """A validated model: read from ``path``, or synthetic model ``synthetic_index``."""
    if (path is None) == (synthetic_index is None):
        raise ValueError("give exactly one of path and synthetic_index")
    if path is not None:
        return read_hydro_model(path)
    return synthetic_model(seed, synthetic_index, n_base=n_base, levels=levels)


def synthetic_extents(seed: int, count: int) -> dict[str, Extent]:
    """Extents of synthetic models 0..count-1, from their drawn domains.

    Exact without generating the points: the generator's outer AMR level
    includes the domain boundary, so the points' bounding box is the domain
    (tested against the generated points).
    """
    return {synthetic_model_id(i): Extent(*domain_bounds(draw_parameters(seed, i))) for i in range(count)}


def file_extents(files: dict[str, Path], progress: bool = False) -> dict[str, Extent]:
    """Extents of model files (only the positions are read)."""
    items = files.items()
    if progress:
        from tqdm import tqdm

        items = tqdm(items, desc="extents", unit="model")
    return {model: Extent.of_points(read_hydro_model(path, positions_only=True)) for model, path in items}
