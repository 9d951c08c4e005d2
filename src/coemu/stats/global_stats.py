"""``results/stats/global.json``: statistics of every cube variable and of the image intensity.

Contract (docs/contracts.md): ``{"cubes": {VAR: S, ...}, "images": {"intensity": S}}``
with S = ``{count, mean, variance, min, max, median, median_of_medians}`` over
the raw values and the same keys under ``S["transformed"]`` for the values
preprocessing normalises (:func:`coemu.data.variables.transformed_values`:
ln T, ln max(n, floor), ln max(I, floor), v itself). Also ``floors``, the
models the statistics cover, and the number of files.

The transformed medians come from the raw order statistics: ln and max(., floor)
are monotone, so the middle values of ln x are ln of the middle values of x
(the tests check this against numpy on the transformed values). The data are
read twice: moments, extremes, per-file medians and the first radix pass
together, then the second radix pass (:mod:`coemu.stats.reductions`).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from pathlib import Path

import dask
import dask.array as da
import numpy as np

from coemu.data.variables import INPUT_VARIABLES, transformed_values
from coemu.stats.lazy import lazy_files
from coemu.stats.reductions import exact_medians, file_medians, moments, top_counts

log = logging.getLogger(__name__)

KEYS = ("count", "mean", "variance", "min", "max", "median", "median_of_medians")


def _flat(files: list):
    return da.concatenate([a.ravel() for a in files])


def global_statistics(
    client,
    cube_paths: Sequence[str],
    image_paths: Sequence[str],
    floors: dict[str, float],
    block_rotations: int | None = None,
) -> dict:
    """Compute the contract's statistics on the cluster behind ``client``.

    Args:
        cube_paths, image_paths: the files to reduce (e.g. the training models').
        floors: ``{"number_density_co": m-3, "intensity": W m-2 Hz-1 sr-1}``.
        block_rotations: rotations per Dask chunk (default: one chunk per file).
    """
    sources = {v: ("cubes", cube_paths) for v in INPUT_VARIABLES} | {"intensity": ("images", image_paths)}
    files = {v: lazy_files(client, paths, v, block_rotations) for v, (_, paths) in sources.items()}
    flats = {v: _flat(f) for v, f in files.items()}
    lazy = {}
    for v, f in files.items():
        transform = functools.partial(transformed_values, v, floors=floors)
        lazy[v] = {
            "raw": moments(flats[v]) | {"file_medians": file_medians(f), "top_counts": top_counts(f)},
            "transformed": moments(flats[v].map_blocks(transform, dtype=np.float64))
            | {"file_medians": file_medians(f, transform)},
        }
    log.info("pass 1: moments, extremes, per-file medians, radix counts of %s", ", ".join(files))
    (first,) = dask.compute(lazy)
    log.info("pass 2: exact medians")
    middles = exact_medians(files, {v: first[v]["raw"]["top_counts"] for v in files})
    result: dict = {"cubes": {}, "images": {}, "floors": dict(floors)}
    for v, (group, _) in sources.items():
        transform = functools.partial(transformed_values, v, floors=floors)
        entry = {}
        for kind in ("raw", "transformed"):
            s = first[v][kind]
            lo_hi = (
                middles[v] if kind == "raw" else tuple(float(transform(np.float64(m))) for m in middles[v])
            )
            entry[kind] = {
                "count": int(s["count"]),
                "mean": float(s["mean"]),
                "variance": float(s["variance"]),
                "min": float(s["min"]),
                "max": float(s["max"]),
                "median": (lo_hi[0] + lo_hi[1]) / 2.0,
                "median_of_medians": float(np.median(s["file_medians"])),
            }
        result[group][v] = entry["raw"] | {"transformed": entry["transformed"]}
    result["files"] = {"cubes": len(cube_paths), "images": len(image_paths)}
    return result


def statistics_of_split(
    split: str | Path,
    manifests: Sequence[str | Path],
    output: str | Path,
    dask_settings: dict,
    preprocessing: dict,
    subset: str = "train",
) -> dict:
    """``global.json`` of the ``subset`` models of ``split.json``, their files from the image manifests.

    Args:
        dask_settings: the ``dask`` config section (cluster, and ``block_rotations``).
        preprocessing: the ``preprocessing`` section (the floors of the logarithms).
    """
    import time

    from coemu.io.atomic import write_json_atomic
    from coemu.io.blocks import model_files, read_manifests
    from coemu.io.errors import CoemuInputError
    from coemu.io.validation import read_json
    from coemu.stats.cluster import dask_client

    try:
        models = read_json(split)[subset]
    except (KeyError, TypeError) as err:
        raise CoemuInputError(split, subset, f"cannot be read ({err!r})") from None
    if not models:
        raise CoemuInputError(split, subset, "no models")
    files = model_files(read_manifests(manifests), models, ("cube", "image"), split)
    floors = {
        "number_density_co": preprocessing["density_floor"],
        "intensity": preprocessing["intensity_floor"],
    }
    t0 = time.perf_counter()
    with dask_client(dask_settings) as client:
        stats = global_statistics(
            client,
            [str(files[m]["cube"]) for m in models],
            [str(files[m]["image"]) for m in models],
            floors,
            dask_settings.get("block_rotations"),
        )
    stats |= {"subset": subset, "models": models}
    write_json_atomic(stats, output)
    log.info("statistics of %d models in %.1f s -> %s", len(models), time.perf_counter() - t0, output)
    return stats
