"""The paper's preprocessing (eq. 12-16) as one invertible transform, fitted on global statistics.

Inputs, per cell of a cube (the network's three input channels, in this order):

* ``velocity_z`` v (m s-1): standardised, ``v' = (v - mean) / std`` (eq. 12);
* ``temperature`` T (K): ``t = ln T``, ``T' = (t - min t) / median(t - min t)`` (eq. 13-14);
* ``number_density_co`` n (m-3): the same as T on ``ln max(n, density_floor)``.

Target, per pixel and channel: ``t = ln max(I, intensity_floor)`` and
``I' = (t - min t) / (max t - min t)`` in [0, 1] (eq. 15-16). The floor is the
published implementation's clip of ln I at -40 (it also keeps zero intensity
finite); below the floor the transform is not invertible, everywhere else
``inverse(forward(x)) == x`` to rounding.

min, median and max are global statistics over the training models
(``results/stats/global.json``, key ``transformed``; the values are
:func:`coemu.data.variables.transformed_values`), so the same transform
serves training and turning predictions back into physical intensities.

Applied on the fly by the Dataset rather than written once by a rule: the
transform costs less than reading the sample it applies to (bench/stats.py
prints both), and a second copy of the data set (7 TB at the paper's scale)
is not written.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from coemu.data.variables import (
    DEFAULT_DENSITY_FLOOR,
    DEFAULT_INTENSITY_FLOOR,
    INPUT_VARIABLES,
    transformed_values,
)
from coemu.io.errors import CoemuInputError
from coemu.io.validation import read_json


def _log_floor(x: torch.Tensor, floor: float) -> torch.Tensor:
    return torch.log(torch.clamp(x, min=floor))


@dataclass(frozen=True)
class Preprocessing:
    """Constants of the transform (all from the training models' global statistics).

    Attributes:
        velocity_mean, velocity_std: m s-1.
        log_temperature_min, log_temperature_scale: min of ln T and median(ln T - min), ln K.
        log_density_min, log_density_scale: the same for ln max(n, density_floor), ln m-3.
        log_intensity_min, log_intensity_max: of ln max(I, intensity_floor).
        density_floor: m-3; intensity_floor: W m-2 Hz-1 sr-1.
    """

    velocity_mean: float
    velocity_std: float
    log_temperature_min: float
    log_temperature_scale: float
    log_density_min: float
    log_density_scale: float
    log_intensity_min: float
    log_intensity_max: float
    density_floor: float = DEFAULT_DENSITY_FLOOR
    intensity_floor: float = DEFAULT_INTENSITY_FLOOR

    def __post_init__(self) -> None:
        for name in ("velocity_std", "log_temperature_scale", "log_density_scale"):
            if not getattr(self, name) > 0:
                raise ValueError(f"preprocessing constant {name} = {getattr(self, name)} must be > 0")
        if not self.log_intensity_max > self.log_intensity_min:
            raise ValueError("log intensity max must exceed its min (all training images equal?)")

    @classmethod
    def from_stats(cls, stats: dict) -> Preprocessing:
        """From the contents of ``global.json`` (see :mod:`coemu.stats.global_stats`)."""
        cubes, image = stats["cubes"], stats["images"]["intensity"]["transformed"]
        lt, ln = cubes["temperature"]["transformed"], cubes["number_density_co"]["transformed"]
        return cls(
            velocity_mean=cubes["velocity_z"]["mean"],
            velocity_std=math.sqrt(cubes["velocity_z"]["variance"]),
            log_temperature_min=lt["min"],
            log_temperature_scale=lt["median"] - lt["min"],
            log_density_min=ln["min"],
            log_density_scale=ln["median"] - ln["min"],
            log_intensity_min=image["min"],
            log_intensity_max=image["max"],
            density_floor=stats["floors"]["number_density_co"],
            intensity_floor=stats["floors"]["intensity"],
        )

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], floors: Mapping[str, float] | None = None):
        """Fitted on arrays in memory, as the statistics stage fits it on the training files.

        Args:
            arrays: ``temperature`` (K), ``number_density_co`` (m-3), ``velocity_z`` (m s-1) and
                ``intensity`` (W m-2 Hz-1 sr-1), any shapes.
            floors: ``number_density_co`` and ``intensity`` floors (default: the config's defaults).
        """
        floors = {"number_density_co": DEFAULT_DENSITY_FLOOR, "intensity": DEFAULT_INTENSITY_FLOOR} | dict(
            floors or {}
        )

        def summary(name: str) -> dict:
            x = np.asarray(arrays[name], dtype=np.float64).ravel()
            t = transformed_values(name, x, floors)
            return {
                "mean": x.mean(),
                "variance": x.var(),
                "transformed": {"min": t.min(), "median": float(np.median(t)), "max": t.max()},
            }

        cubes = {name: summary(name) for name in INPUT_VARIABLES}
        images = {"intensity": summary("intensity")}
        return cls.from_stats({"cubes": cubes, "images": images, "floors": floors})

    @classmethod
    def from_file(cls, path: str | Path) -> Preprocessing:
        """From ``global.json`` at ``path``; CoemuInputError naming it when it is unusable."""
        stats = read_json(path)
        try:
            return cls.from_stats(stats)
        except (KeyError, ValueError) as err:
            raise CoemuInputError(path, None, f"no usable preprocessing constants ({err})") from None

    def to_dict(self) -> dict[str, float]:
        """The constants as plain floats (what model files hold)."""
        return {k: float(v) for k, v in asdict(self).items()}

    def inputs(
        self, temperature: torch.Tensor, density: torch.Tensor, velocity: torch.Tensor
    ) -> torch.Tensor:
        """(3, ...) network input: velocity, temperature, density channels, from cube variables."""
        v = (velocity - self.velocity_mean) / self.velocity_std
        t = (torch.log(temperature) - self.log_temperature_min) / self.log_temperature_scale
        n = (_log_floor(density, self.density_floor) - self.log_density_min) / self.log_density_scale
        return torch.stack([v, t, n])

    def inputs_inverse(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(temperature K, density m-3, velocity m s-1) from a (3, ...) network input."""
        velocity = x[0] * self.velocity_std + self.velocity_mean
        temperature = torch.exp(x[1] * self.log_temperature_scale + self.log_temperature_min)
        density = torch.exp(x[2] * self.log_density_scale + self.log_density_min)
        return temperature, density, velocity

    def intensity(self, intensity: torch.Tensor) -> torch.Tensor:
        """Normalised target in [0, 1] from intensities in W m-2 Hz-1 sr-1 (any shape)."""
        span = self.log_intensity_max - self.log_intensity_min
        return (_log_floor(intensity, self.intensity_floor) - self.log_intensity_min) / span

    def intensity_inverse(self, normalised: torch.Tensor) -> torch.Tensor:
        """Intensities in W m-2 Hz-1 sr-1 from normalised values (e.g. the network's predictions)."""
        span = self.log_intensity_max - self.log_intensity_min
        return torch.exp(normalised * span + self.log_intensity_min)
