"""What an emulator was trained on, as plain data: the line, channels, grid, transform and value ranges.

A model file carries this beside its weights (key ``data``), so a trained
emulator can be used, checked and rebuilt without the pipeline that made it
(:meth:`coemu.nn.Emulator.load`). Everything here is numbers, strings and
lists (``torch.load(weights_only=True)`` reads it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from coemu.io.errors import CoemuInputError
from coemu.io.validation import plain

#: The cube variables an emulator takes, in the order of ``predict``'s arguments, and their units.
INPUT_VARIABLES = {"temperature": "K", "number_density_co": "m-3", "velocity_z": "m s-1"}


@dataclass(frozen=True)
class DataDescription:
    """The training data of an emulator.

    Attributes:
        molecule, transition: the line (LAMDA name and 0-based radiative transition).
        datafile: the LAMDA file the images used ('' = the shipped one).
        rest_frequency: Hz.
        molecular_mass: kg.
        channel_velocities: the output channels' offsets from the line centre, m s-1 (F,).
        v_turbulence: m s-1; background: ``zero`` or ``cmb``.
        background_intensity: W m-2 Hz-1 sr-1 per channel (F,).
        grid: cells per axis of the input cube; cell_size: m.
        preprocessing: :meth:`coemu.data.transform.Preprocessing.to_dict`.
        input_ranges: variable -> [min, max] over the training cubes (units of
            :data:`INPUT_VARIABLES`); inputs outside are extrapolation.
    """

    molecule: str
    transition: int
    datafile: str
    rest_frequency: float
    molecular_mass: float
    channel_velocities: list[float]
    v_turbulence: float
    background: str
    background_intensity: list[float]
    grid: int
    cell_size: float
    preprocessing: dict[str, float]
    input_ranges: dict[str, list[float]] = field(default_factory=dict)

    @property
    def n_freq(self) -> int:
        return len(self.channel_velocities)

    def to_dict(self) -> dict[str, Any]:
        """Plain numbers, strings, lists and dicts (no numpy scalar reaches a model file)."""
        return plain(asdict(self))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str | Path | None = None) -> DataDescription:
        """From :meth:`to_dict`'s output; CoemuInputError naming ``source`` when keys are missing."""
        try:
            return cls(**data)
        except TypeError as err:
            raise CoemuInputError(source, "data", f"not an emulator's data description ({err})") from None


def describe(
    target_file: str | Path, cube_file: str | Path, preprocessing, stats: Mapping
) -> DataDescription:
    """The description of a data set from one of its target images, its cube and its statistics.

    Args:
        target_file: an image (or face-on) file of the training set: line, channels, solver settings.
        cube_file: its cube: grid and cell size.
        preprocessing: the training transform (:class:`coemu.data.transform.Preprocessing`).
        stats: the contents of global.json (the training cubes' min and max).
    """
    import xarray as xr

    from coemu.geometry.cube_contract import check_cube
    from coemu.rt.lamda import load_line
    from coemu.rt.solver import background_intensity

    with xr.open_dataset(target_file) as image:
        attrs = dict(image.attrs)
        velocities = [float(v) for v in image["velocity"].values]
        frequencies = np.asarray(image["frequency"].values, dtype=np.float64)
    with xr.open_dataset(cube_file) as cube:
        check_cube(cube, cube_file)
        grid = int(cube.sizes["z"])
        cell_size = float(cube.attrs["cell_size"])
    try:
        molecule, transition = str(attrs["setting_molecule"]), int(attrs["transition_index"])
        datafile = str(attrs.get("setting_datafile", "") or "")
        background = str(attrs.get("setting_background", "zero"))
        v_turbulence = float(attrs.get("setting_v_turbulence", 0.0))
    except (KeyError, ValueError) as err:
        raise CoemuInputError(target_file, None, f"no line attributes ({err!r})") from None
    line = load_line(molecule, transition, datafile or None)
    ranges = {
        name: [float(stats["cubes"][name]["min"]), float(stats["cubes"][name]["max"])]
        for name in INPUT_VARIABLES
    }
    return DataDescription(
        molecule=molecule,
        transition=transition,
        datafile=datafile,
        rest_frequency=float(line.frequency),
        molecular_mass=float(line.mass),
        channel_velocities=velocities,
        v_turbulence=v_turbulence,
        background=background,
        background_intensity=[float(b) for b in background_intensity(background, frequencies)],
        grid=grid,
        cell_size=cell_size,
        preprocessing=preprocessing.to_dict(),
        input_ranges=ranges,
    )
