"""The image stage: cube file -> image file (read and check a cube, render it, write the image
contract), and a block of cube files -> their images and the block's manifest.

Each image file carries a fingerprint (:func:`image_fingerprint`) of the cube
file it was rendered from, the solver settings and this stage's code; a block
job renders only the models whose fingerprint changed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr

from coemu.geometry.cube_contract import check_cube
from coemu.io.errors import CoemuInputError
from coemu.io.validation import check_values
from coemu.rt.lamda import Line, load_line
from coemu.rt.lte import check_temperature_range
from coemu.rt.solver import background_intensity, line_images, resolve_device
from coemu.rt.spectral import channel_frequencies, channel_velocities, frequency_to_velocity

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RenderSettings:
    """Solver settings: the ``images`` section of the config, whose schema holds the defaults
    (``RenderSettings.from_config(coemu.settings.complete({...}))``).

    Attributes:
        channels: number of frequency channels.
        spacing: channel spacing in velocity, m s-1.
        molecule: name of the species (its shipped LAMDA file unless ``datafile``).
        transition: 0-based LAMDA radiative transition (CO: 1 = J 2-1).
        datafile: LAMDA file to use instead of the shipped one.
        v_turbulence: turbulent velocity, m s-1.
        background: ``zero`` or ``cmb``.
        device: ``auto`` (CUDA when present), ``cpu`` or ``cuda``.
        dtype: ``float32`` (production) or ``float64`` (validation).
        compile: fuse the solver's per-segment kernels with torch.compile.
    """

    channels: int
    spacing: float
    molecule: str
    transition: int
    datafile: str | None
    v_turbulence: float
    background: str
    device: str
    dtype: str
    compile: bool

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> RenderSettings:
        """From a completed config (``coemu.settings.complete``): its ``images`` section."""
        return cls(**config["images"])


def faceon_settings(settings: RenderSettings) -> RenderSettings:
    """The face-on image's settings: one channel, the line centre (velocity 0, the rest frequency).

    A face-on file records these (``setting_channels`` 1), so its attributes describe its
    one channel; its fingerprint is the image file's (:func:`image_fingerprint`).
    """
    return replace(settings, channels=1)


def read_cube(path: str | Path) -> tuple[xr.Dataset, float]:
    """Open and check a cube file; return it (loaded) and its cell size in m.

    The geometry is checked from the header before the fields are loaded
    (:func:`coemu.geometry.cube_contract.check_cube`, coordinates required: the images copy
    them); the cell size is the spacing of the ``z`` coordinate, equal to ``cell_size``.

    Raises:
        CoemuInputError: unreadable file, missing variable, wrong dimensions, a cube that breaks
            the contract's geometry (unequal sides, uneven coordinates, inconsistent
            ``cell_size``), NaN/inf, non-positive temperature or negative density.
    """
    path = Path(path)
    if not path.exists():
        raise CoemuInputError(path, None, "file not found")
    unreadable = (OSError, ValueError, RuntimeError)
    try:
        lazy = xr.open_dataset(path)
    except unreadable as err:
        raise CoemuInputError(path, None, f"corrupt or truncated netCDF file ({err})") from None
    with lazy:
        dx = check_cube(lazy, path, coordinates=True)
        try:
            ds = lazy.load()
        except unreadable as err:
            raise CoemuInputError(path, None, f"corrupt or truncated netCDF file ({err})") from None
    for name, kw in (
        ("temperature", {"positive": True, "what": "temperatures"}),
        ("number_density_co", {"nonnegative": True, "what": "densities"}),
        ("velocity_z", {}),
    ):
        check_values(path, name, ds[name].values, **kw)
    try:
        check_temperature_range(ds["temperature"].values)
    except ValueError as err:
        raise CoemuInputError(path, "temperature", str(err)) from None
    return ds, dx


def render_cube(
    cube: xr.Dataset,
    dx: float,
    settings: RenderSettings,
    line: Line,
    rotations: slice = slice(None),
    frequencies: np.ndarray | None = None,
) -> xr.Dataset:
    """Images of the selected rotations of ``cube`` as an image-contract dataset."""
    device = resolve_device(settings.device)
    dtype = {"float32": torch.float32, "float64": torch.float64}[settings.dtype]
    if frequencies is None:
        frequencies = channel_frequencies(line.frequency, settings.channels, settings.spacing)
        velocities = channel_velocities(settings.channels, settings.spacing)
    else:
        velocities = frequency_to_velocity(frequencies, line.frequency)
    sub = cube.isel(rotation=rotations)
    tensors = [
        torch.as_tensor(sub[k].values, dtype=dtype, device=device)
        for k in ("temperature", "number_density_co", "velocity_z")
    ]
    images = line_images(
        line,
        *tensors,
        frequencies,
        dx,
        v_turbulence=settings.v_turbulence,
        background=background_intensity(settings.background, frequencies),
        compile=settings.compile,
    )
    intensity = images.permute(0, 3, 1, 2).to("cpu", torch.float32).numpy()  # (rotation, frequency, x, y)
    attrs = {
        "solver": "coemu.rt (Pomme-equivalent LTE, rays along z, observer at z index 0)",
        **{
            f"setting_{k}": ("" if v is None else v if not isinstance(v, bool) else int(v))
            for k, v in asdict(settings).items()
        },
    }
    return image_dataset(intensity, sub, frequencies, velocities, line, int(settings.transition), dx, attrs)


def image_dataset(
    intensity, cube: xr.Dataset, frequencies, velocities, line: Line, transition: int, dx, attrs
):
    """An image-contract dataset: ``intensity`` (rotation, frequency, x, y) in W m-2 Hz-1 sr-1 of
    the rotations of ``cube``, on channels ``frequencies`` (Hz) / ``velocities`` (m s-1)."""
    base = {
        "model": cube.attrs.get("model", ""),
        "molecule": line.name,
        "transition": line.description,
        "transition_index": int(transition),
        "rest_frequency": float(line.frequency),
        "rest_frequency_units": "Hz",
        "cell_size": dx,
    }
    return xr.Dataset(
        {
            "intensity": (
                ("rotation", "frequency", "x", "y"),
                np.asarray(intensity, dtype=np.float32),
                {"units": "W m-2 Hz-1 sr-1", "long_name": "specific intensity leaving the cube"},
            )
        },
        coords={
            "rotation": cube["rotation"].values,
            "frequency": ("frequency", frequencies, {"units": "Hz", "long_name": "observed frequency"}),
            "velocity": (
                "frequency",
                velocities,
                {"units": "m s-1", "long_name": "velocity offset of the channel"},
            ),
            "x": cube["x"],
            "y": cube["y"],
        },
        attrs=base | dict(attrs),
    )


def render_file(cube_path, image_path, settings: RenderSettings, faceon_path=None, attrs=None) -> xr.Dataset:
    """Render every rotation of a cube file; optionally the face-on line-centre image too
    (rotation 0, :func:`faceon_settings`).

    Both outputs are checked and rendered before either is written, and each
    is written atomically; ``attrs`` (dict) are added to both files' attributes.
    """
    from coemu.io.atomic import write_netcdf_atomic

    cube, dx = read_cube(cube_path)
    line = load_line(settings.molecule, settings.transition, settings.datafile)
    images = render_cube(cube, dx, settings, line)
    faceon = None
    if faceon_path is not None:
        faceon = render_cube(cube, dx, faceon_settings(settings), line, rotations=slice(0, 1))
    for ds in (images, faceon):
        if ds is not None:
            ds.attrs.update(attrs or {})
    write_netcdf_atomic(images, image_path)
    if faceon is not None:
        write_netcdf_atomic(faceon, faceon_path)
    return images


def image_fingerprint(cube: str | Path, faceon: bool, settings: RenderSettings) -> str:
    """What an image file is made from: the cube file, the solver settings and this stage's code."""
    from coemu.io.provenance import code_digest, file_digest, file_identity, fingerprint, stored_fingerprint

    solver = asdict(settings)
    del solver["compile"]  # fused kernels: the same images to rounding, not a reason to render again
    if settings.datafile:
        solver["datafile_sha256"] = file_digest(settings.datafile)
    return fingerprint(
        cube_file=file_identity(cube),
        cube=stored_fingerprint(cube),
        faceon=faceon,
        settings=solver,
        code=code_digest("images"),
    )


def render_one(
    cube: str | Path,
    image: str | Path,
    faceon: str | Path | None,
    settings: RenderSettings,
    fingerprint: str | None = None,
) -> xr.Dataset:
    """Render one cube file (and its face-on image); ``fingerprint`` when the caller has it already."""
    from coemu.io.provenance import FINGERPRINT_ATTR

    t0 = time.perf_counter()
    attrs = {FINGERPRINT_ATTR: fingerprint or image_fingerprint(cube, faceon is not None, settings)}
    images = render_file(cube, image, settings, faceon_path=faceon, attrs=attrs)
    seconds = time.perf_counter() - t0
    n = images.sizes["rotation"]
    log.info(
        "%s: %d images x %d channels on %s (%s) in %.2f s (%.1f ms per image)",
        cube,
        n,
        images.sizes["frequency"],
        settings.device,
        settings.dtype,
        seconds,
        1e3 * seconds / n,
    )
    return images


def render_block(
    cubes: Sequence[str | Path],
    images: Sequence[str | Path],
    faceon: Sequence[str | Path] | None,
    manifest: str | Path | None,
    settings: RenderSettings,
    progress: bool = True,
) -> int:
    """Render a block of cube files; keep the images already made from the same inputs.

    The manifest (when given) lists each model's ``cube``, ``image`` and
    ``faceon`` files, the model id being the cube file's stem. Returns the
    number of models rendered.
    """
    from coemu.io.blocks import BlockItem, run_block, same_length

    same_length(cubes=cubes, images=images, faceon=faceon)
    items = [
        BlockItem(
            Path(c).stem,
            {"image": Path(i)} | ({} if faceon is None else {"faceon": Path(faceon[k])}),
            inputs={"cube": Path(c)},
        )
        for k, (c, i) in enumerate(zip(cubes, images, strict=True))
    ]
    return run_block(
        items,
        lambda i: image_fingerprint(i.inputs["cube"], "faceon" in i.outputs, settings),
        lambda i, wanted: render_one(
            i.inputs["cube"], i.outputs["image"], i.outputs.get("faceon"), settings, wanted
        ),
        manifest,
        done="models rendered",
        progress=progress,
    )
