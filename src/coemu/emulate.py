"""Images of a cube file by a trained emulator, in the image contract (``coemu predict``).

The emulator's model file says what it was trained on (line, channels, grid,
cell size, value ranges: :class:`coemu.data.description.DataDescription`); a
cube on another grid or with other cells is refused with the file and the
variable named, values outside the training ranges are warned about, and the
output is the same netCDF as the images stage writes, in physical units
(W m-2 Hz-1 sr-1), with ``emulator`` attributes saying which model made it.
"""

from __future__ import annotations

import logging
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from coemu.io.errors import CoemuInputError

log = logging.getLogger(__name__)

#: Relative difference of cell sizes accepted as the same grid.
CELL_SIZE_RTOL = 1.0e-3


def predict_file(
    model_path: str | Path,
    cube_path: str | Path,
    image_path: str | Path,
    device: str = "cpu",
    batch_size: int = 8,
):
    """Write the emulator's images of every rotation of ``cube_path`` to ``image_path`` (atomically).

    Returns:
        the image dataset written.

    Raises:
        CoemuInputError: an unusable model file, a cube that breaks the cube contract
            (:func:`coemu.rt.render.read_cube`), or one whose grid or cell size is not the
            emulator's (naming the file and the variable).
    """
    from coemu.io.atomic import write_netcdf_atomic
    from coemu.nn import Emulator
    from coemu.rt.lamda import load_line
    from coemu.rt.render import image_dataset, read_cube
    from coemu.rt.solver import resolve_device
    from coemu.rt.spectral import velocity_to_frequency

    dev = resolve_device(device)
    emulator = Emulator.load(model_path, dev)
    data = emulator.data
    if data is None:
        raise CoemuInputError(model_path, "data", "no data description (a model file from an older coemu)")
    cube, dx = read_cube(cube_path)  # the cube contract: G^3 cells of cell_size, evenly spaced
    g = data.grid
    shape = tuple(cube["temperature"].shape[1:])  # every field's (the contract's dims)
    if shape != (g, g, g):
        raise CoemuInputError(cube_path, "temperature", f"{shape} cells; the emulator takes {g}^3 cubes")
    if abs(dx - data.cell_size) > CELL_SIZE_RTOL * data.cell_size:
        raise CoemuInputError(
            cube_path,
            "z",
            f"cell size {dx:.6g} m; the emulator was trained on {data.cell_size:.6g} m cells"
            " (the optical depth of a cell depends on it)",
        )
    arrays = [torch.as_tensor(cube[k].values) for k in ("temperature", "number_density_co", "velocity_z")]
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        intensity = emulator.predict(*arrays, batch_size=batch_size)
    for w in caught:
        log.warning("%s: %s", cube_path, w.message)
        warnings.warn(f"{cube_path}: {w.message}", stacklevel=2)
    seconds = time.perf_counter() - t0
    line = load_line(data.molecule, data.transition, data.datafile or None)
    velocities = np.asarray(data.channel_velocities, dtype=np.float64)
    frequencies = velocity_to_frequency(velocities, line.frequency)
    attrs = {
        "emulator": f"{emulator.kind} ({Path(model_path).name})",
        "setting_v_turbulence": data.v_turbulence,
        "setting_background": data.background,
    }
    images = image_dataset(
        intensity.float().numpy(), cube, frequencies, velocities, line, data.transition, dx, attrs
    )
    write_netcdf_atomic(images, image_path)
    log.info(
        "%s: %d images x %d channels by the %s emulator in %.2f s",
        image_path,
        len(cube["rotation"]),
        data.n_freq,
        emulator.kind,
        seconds,
    )
    return images
