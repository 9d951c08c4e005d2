"""Synthetic observations of a model (``coemu observe``) and of the pipeline's test images.

:func:`observe_model`: a hydro model (a file, or a synthetic model id with the
config's seed and layout) seen from a direction (:mod:`coemu.observe.viewing`)
as one cube of the config's geometry (``cubes.box_cells``, ``cubes.grid``; the
sphere is the model's own unless a sphere.json is given, which a trained
emulator's cell size needs), on ``images.channels`` channels
``images.spacing`` apart centred on the systemic velocity, rendered by the
solver (the ``images`` settings) or by a trained emulator (its predict API,
when its grid, cell size and channels match), written as a FITS cube
(:mod:`coemu.observe.fits`) and optionally its moment maps.

:func:`export_images`: the pipeline's rule: every rotation of each test
model's image file as a FITS cube and its moment-0 map, with one moment-0
map and one channel map drawn for the report.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from coemu.io.errors import CoemuInputError
from coemu.observe.fits import ObservationSettings, moment_maps, observation, write_fits
from coemu.observe.viewing import viewing_matrix
from coemu.rt.lamda import Line

log = logging.getLogger(__name__)


def check_channels(line: Line, frequencies: np.ndarray, velocities: np.ndarray) -> None:
    """Every channel nearer this line than any other transition of its LAMDA file.

    Raises:
        CoemuInputError: naming ``spacing``: a channel at or below 0 Hz, or one that lies
            nearer another transition (the solver models one line).
    """
    others = np.sort(np.asarray([f for f in line.data.frequency if f != line.frequency], dtype=np.float64))
    below, above = others[others < line.frequency], others[others > line.frequency]
    lo = (below[-1] + line.frequency) / 2 if len(below) else 0.0
    hi = (above[0] + line.frequency) / 2 if len(above) else np.inf
    for f, v in zip(frequencies, velocities, strict=True):
        if not lo < f < hi:
            raise CoemuInputError(
                line.data.source,
                "spacing",
                f"the channel at {v / 1e3:.6g} km/s ({f / 1e9:.6g} GHz) lies outside"
                f" {lo / 1e9:.6g}-{hi / 1e9:.6g} GHz, nearer another transition of the line data"
                f" than {line.description} (the solver models one line)",
            )


def observe_model(
    output: str | Path,
    config: Mapping[str, Any],
    model_id: str | None = None,
    model_file: str | Path | None = None,
    inclination: float = 0.0,
    position_angle: float = 0.0,
    azimuth: float = 0.0,
    sphere: str | Path | None = None,
    emulator: str | Path | None = None,
    device: str = "cpu",
    moments: bool = False,
) -> Path:
    """Write the FITS cube of a model seen from (inclination, position angle, azimuth) degrees.

    Args:
        config: a completed config (``models``, ``cubes``, ``images``, ``observations``, ``seed``).
        model_id, model_file: a synthetic model id (``m00003``) or a model file.
        sphere: sphere.json whose radius sets the cell size (default: the model's own extent).
        emulator: a model.pt to render with instead of the solver.
        moments: also write ``OUTPUT`` with ``.mom0.fits``, ``.mom1.fits``, ``.mom2.fits``.

    Raises:
        CoemuInputError: a bad setting (naming it) before anything is rendered or written, or
            a cube that breaks the cube contract (:func:`coemu.geometry.cube_contract.check_cube`).
    """
    from coemu.hydro.sources import model_for
    from coemu.rt.lamda import load_line
    from coemu.rt.spectral import channel_velocities, velocity_to_frequency

    settings = ObservationSettings.from_config(config)
    images, m = config["images"], config["models"]
    matrix = viewing_matrix(inclination, position_angle, azimuth)
    offsets = channel_velocities(images["channels"], images["spacing"])  # m/s from the line centre
    line = load_line(images["molecule"], images["transition"], images["datafile"])
    check_channels(line, velocity_to_frequency(offsets, line.frequency), offsets + 1e3 * settings.v_sys)
    model = model_for(model_id, model_file, config["seed"], m["n_base"], m["levels"], m["finest_spacing"])
    cube, cell_size = _viewed_cube(model, matrix, config, settings, sphere)
    intensity, renderer = _render(cube, cell_size, config, line, offsets, emulator, device)
    meta = {
        "OBJECT": model.name,
        "INCLIN": (float(inclination), "deg, 0 = face-on (coemu.observe.viewing)"),
        "POSANG": (float(position_angle), "deg E of N, orbital axis"),
        "AZIMUTH": (float(azimuth), "deg about the orbital axis"),
        "RENDERER": renderer,
    }
    hdu = observation(intensity, offsets + 1e3 * settings.v_sys, line.frequency, cell_size, settings, meta)
    path = write_fits(hdu, output)
    log.info("wrote %s: %s, %d channels, %s", path, model.name, len(offsets), settings.unit)
    if moments:
        moment_maps(path, Path(output).with_suffix(""), settings)
    return path


def _viewed_cube(model, matrix: np.ndarray, config: Mapping[str, Any], settings, sphere):
    """(the cube file of ``model`` seen through the rotation ``matrix`` (3, 3), its cell size m).

    The cube's geometry is the config's ``cubes`` section on the sphere of ``sphere``
    (sphere.json) or, without one, on the model's own. The observation settings are checked
    against the cell size before the cube is made.
    """
    from coemu.geometry.cube import make_cubes
    from coemu.geometry.cube_contract import check_cube
    from coemu.geometry.sphere import Extent, read_sphere_radius

    cubes = config["cubes"]
    if sphere is not None:
        radius = read_sphere_radius(sphere)
    else:
        radius = Extent.of_points(model.position).radius  # the model's own sphere
    cell_size = 2 * radius / cubes["box_cells"]
    settings.check(cell_size)  # before the work: a bad beam or unit is refused here
    cube = make_cubes(
        model,
        radius,
        config["seed"],
        1,
        cubes["box_cells"],
        cubes["grid"],
        method=cubes["method"],
        matrices=matrix[None],
    )
    check_cube(cube, model.source or model.name, coordinates=True)  # what every cube reader checks
    return cube, cell_size


def _render(cube, cell_size: float, config, line: Line, offsets: np.ndarray, emulator, device: str):
    """((F, X, Y) W m-2 Hz-1 sr-1 of the cube's one rotation, the renderer's name for the
    header): by the ``emulator`` (a model.pt) if given, else by the solver."""
    from coemu.rt.render import RenderSettings

    if emulator is not None:
        return _emulate(emulator, cube, cell_size, offsets, device), f"emulator {Path(emulator).name}"
    return _solve(cube, cell_size, RenderSettings.from_config(config), line, offsets), "coemu.rt solver"


def _solve(cube, cell_size: float, render, line: Line, offsets: np.ndarray) -> np.ndarray:
    """(F, X, Y) W m-2 Hz-1 sr-1 of the cube's one rotation, by the solver."""
    from coemu.rt.render import render_cube
    from coemu.rt.spectral import velocity_to_frequency

    ds = render_cube(
        cube, cell_size, render, line, frequencies=velocity_to_frequency(offsets, line.frequency)
    )
    return ds["intensity"].values[0].astype(np.float64)


def _emulate(path, cube, cell_size: float, offsets: np.ndarray, device: str) -> np.ndarray:
    """(F, X, Y) W m-2 Hz-1 sr-1 by a trained emulator, whose channels and cells must be these."""
    from coemu.emulate import CELL_SIZE_RTOL
    from coemu.nn import Emulator

    emulator = Emulator.load(path, device)
    data = emulator.data
    if data is None:
        raise CoemuInputError(path, "data", "no data description (a model file from an older coemu)")
    if len(data.channel_velocities) != len(offsets) or not np.allclose(
        data.channel_velocities, offsets, atol=1e-3
    ):
        raise CoemuInputError(
            path,
            "channel_velocities",
            f"the emulator's channels {data.channel_velocities} m/s are not {list(offsets)}",
        )
    if abs(cell_size - data.cell_size) > CELL_SIZE_RTOL * data.cell_size or cube.sizes["z"] != data.grid:
        raise CoemuInputError(
            path,
            "cell_size",
            f"the emulator takes {data.grid}^3 cells of {data.cell_size:.6g} m, this cube has"
            f" {cube.sizes['z']}^3 of {cell_size:.6g} m (give the pipeline's --sphere and cubes settings)",
        )
    arrays = [cube[k].values[0] for k in ("temperature", "number_density_co", "velocity_z")]
    return np.asarray(emulator.predict(*arrays), dtype=np.float64)


def export_images(
    split: str | Path,
    manifests: Sequence[str | Path],
    out_dir: str | Path,
    settings: ObservationSettings,
) -> Path:
    """Every rotation of each test model's image file as FITS (cube and moment 0); returns the manifest.

    Writes ``OUT_DIR/{model}/r{rotation:03d}.fits`` and ``.mom0.fits``, ``moment0.png`` and
    ``channels.png`` (the first test model's rotation 0) and, last, ``manifest.json``.
    """
    import xarray as xr

    from coemu.io.atomic import write_json_atomic
    from coemu.io.blocks import model_files, read_manifests
    from coemu.io.validation import read_json

    out_dir = Path(out_dir)
    test = read_json(split).get("test") or []
    if not test:
        raise CoemuInputError(split, "test", "no test models to export")
    files = model_files(read_manifests(manifests), test, ("image",), split)
    written = {}
    for model in test:
        with xr.open_dataset(files[model]["image"]) as image:
            rest = float(image.attrs["rest_frequency"])
            velocities = image["velocity"].values.astype(np.float64) + 1e3 * settings.v_sys
            for r, rotation in enumerate(image["rotation"].values):
                hdu = observation(
                    image["intensity"].values[r].astype(np.float64),
                    velocities,
                    rest,
                    float(image.attrs["cell_size"]),
                    settings,
                    {"OBJECT": model, "ROTATION": (int(rotation), "rotation of the pipeline's cube file")},
                )
                path = write_fits(hdu, out_dir / model / f"r{int(rotation):03d}.fits")
                moment_maps(path, path.with_suffix(""), settings, which=("moment0",))
                written.setdefault(model, []).append(str(path))
    first = Path(written[test[0]][0])
    draw_moment0(first.with_suffix(".mom0.fits"), out_dir / "moment0.png")
    draw_channels(first, out_dir / "channels.png")
    manifest = out_dir / "manifest.json"
    write_json_atomic({"settings": settings.__dict__, "files": written}, manifest)
    return manifest


def _offsets_arcsec(header) -> tuple[float, float, float, float]:
    """imshow extent (east left) in arcsec offsets from the centre."""
    nx, ny = header["NAXIS1"], header["NAXIS2"]
    dx, dy = abs(header["CDELT1"]) * 3600, abs(header["CDELT2"]) * 3600
    return (nx / 2 * dx, -nx / 2 * dx, -ny / 2 * dy, ny / 2 * dy)


def draw_moment0(path: str | Path, png: str | Path) -> Path:
    """A moment-0 FITS map as a PNG (arcsec offsets, east left, the beam drawn)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from astropy.io import fits

    from coemu.io.atomic import atomic_output

    with fits.open(path) as hdul:
        data, header = hdul[0].data, hdul[0].header
    fig, ax = plt.subplots(figsize=(5, 4.2))
    im = ax.imshow(data, origin="lower", extent=_offsets_arcsec(header), cmap="inferno")
    fig.colorbar(im, ax=ax, label=header.get("BUNIT", ""))
    if "BMAJ" in header:
        from matplotlib.patches import Ellipse

        ext = _offsets_arcsec(header)
        bmaj, bmin = header["BMAJ"] * 3600, header["BMIN"] * 3600
        ax.add_patch(
            Ellipse(
                (ext[0] * 0.8, ext[2] * 0.8),
                bmin,
                bmaj,
                angle=-header["BPA"],
                facecolor="none",
                edgecolor="white",
            )
        )
    ax.set_xlabel("RA offset (arcsec)")
    ax.set_ylabel("Dec offset (arcsec)")
    ax.set_title(f"{header.get('OBJECT', '')} moment 0")
    with atomic_output(png) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    plt.close(fig)
    return Path(png)


def draw_channels(path: str | Path, png: str | Path) -> Path:
    """Every channel of a FITS cube side by side on one colour scale, labelled by radio velocity."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from astropy import units as u
    from spectral_cube import SpectralCube

    from coemu.io.atomic import atomic_output

    cube = SpectralCube.read(str(path)).with_spectral_unit(u.km / u.s, velocity_convention="radio")
    n = cube.shape[0]
    data = cube.unmasked_data[:].value
    ext = _offsets_arcsec(cube.header)
    fig, axes = plt.subplots(1, n, figsize=(2.2 * n, 2.4), squeeze=False)
    for k, ax in enumerate(axes[0]):
        im = ax.imshow(data[k], origin="lower", extent=ext, cmap="inferno", vmin=data.min(), vmax=data.max())
        ax.set_title(f"{cube.spectral_axis[k].value:.2f} km/s", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(im, ax=axes[0].tolist(), label=str(cube.unit), shrink=0.8)
    with atomic_output(png) as tmp:
        fig.savefig(tmp, dpi=100, bbox_inches="tight", format="png")
    plt.close(fig)
    return Path(png)
