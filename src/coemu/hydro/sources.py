"""Loading models and their extents from either source (synthetic or files)."""

from __future__ import annotations

from pathlib import Path

from coemu.geometry.sphere import Extent
from coemu.hydro.catalog import synthetic_model_id
from coemu.hydro.model import HydroModel
from coemu.hydro.readers import read_hydro_model
from coemu.hydro.synthetic import FINEST_SPACING, domain_bounds, draw_parameters, synthetic_model


def load_model(
    path: str | Path | None = None,
    synthetic_index: int | None = None,
    seed: int = 0,
    n_base: int = 32,
    levels: int = 3,
    finest_spacing: float = FINEST_SPACING,
) -> HydroModel:
    """A validated model: read from ``path``, or synthetic model ``synthetic_index`` (its layout:
    :func:`coemu.hydro.synthetic.amr_points`)."""
    if (path is None) == (synthetic_index is None):
        raise ValueError("give exactly one of path and synthetic_index")
    if path is not None:
        return read_hydro_model(path)
    return synthetic_model(seed, synthetic_index, n_base, levels, finest_spacing)


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


def model_for(
    model_id: str | None,
    path: str | Path | None,
    seed: int,
    n_base: int,
    levels: int,
    finest_spacing: float = FINEST_SPACING,
) -> HydroModel:
    """The model a cube job works on: the file ``path``, or synthetic ``model_id`` (``m00042``).

    Raises:
        CoemuInputError: neither or both given, an id that is not synthetic, or a
            file that holds another model than ``model_id``.
    """
    from coemu.hydro.catalog import synthetic_index
    from coemu.io.errors import CoemuInputError

    if path is None:
        try:
            index = synthetic_index(model_id or "")
        except ValueError as err:
            raise CoemuInputError(None, "model", f"{err}; give a model file for other models") from None
        return load_model(None, index, seed, n_base, levels, finest_spacing)
    model = load_model(path=path)
    if model_id is not None and model_id != model.name:
        raise CoemuInputError(path, None, f"file holds model '{model.name}', not '{model_id}'")
    return model


def write_synthetic_model(
    output: str | Path,
    index: int,
    seed: int,
    n_base: int,
    levels: int,
    finest_spacing: float = FINEST_SPACING,
    layout: str = "amr",
) -> HydroModel:
    """Synthetic model ``index`` as a hydro-model netCDF file (its drawn parameters as attributes;
    ``layout``: :data:`coemu.hydro.synthetic.LAYOUTS`)."""
    from coemu.hydro.model import hydro_to_dataset
    from coemu.io.atomic import write_netcdf_atomic

    model = synthetic_model(seed, index, n_base, levels, finest_spacing, layout)
    params = {f"param_{k}": v for k, v in draw_parameters(seed, index).to_dict().items()}
    params["param_domain_half_extent"] = list(params["param_domain_half_extent"])
    write_netcdf_atomic(hydro_to_dataset(model, {"seed": seed, **params}), output)
    return model


def write_sphere(output: str | Path, config: dict) -> dict:
    """Every model's extent and the global sphere radius (fan-in) into ``sphere.json``.

    Args:
        config: completed config with ``seed`` and ``models`` (source, count or directory).
    """
    from coemu.geometry.sphere import sphere_summary
    from coemu.hydro.catalog import list_model_files
    from coemu.io.atomic import write_json_atomic
    from coemu.io.errors import CoemuInputError

    models = config["models"]
    if models["source"] == "directory":
        try:
            files = list_model_files(models["directory"])
        except (FileNotFoundError, ValueError) as err:
            raise CoemuInputError(models["directory"], None, str(err)) from None
        extents = file_extents(files, progress=True)
    else:
        extents = synthetic_extents(config["seed"], models["count"])
    summary = sphere_summary(extents)
    write_json_atomic(summary, output)
    return summary
