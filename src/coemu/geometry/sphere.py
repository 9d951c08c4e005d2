"""The auxiliary sphere of the paper's appendix A1.1.

Each model's local radius is the largest sphere centred on the centre of its
bounding box that fits inside the box, ``r_i = min_k (max_k - min_k) / 2``;
the global radius is the minimum over all models, and every model is trimmed
to the sphere of that radius around its own centre.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Extent:
    """Bounding box of a model: ``lower``/``upper`` corners (3,) in m."""

    lower: np.ndarray
    upper: np.ndarray

    @classmethod
    def of_points(cls, position: np.ndarray) -> Extent:
        """Extent of the points ``position`` (N, 3) in m."""
        return cls(position.min(axis=0), position.max(axis=0))

    @property
    def centre(self) -> np.ndarray:
        """Centre of the box (3,) in m (the paper's centroid ``c_i``)."""
        return (self.lower + self.upper) / 2

    @property
    def radius(self) -> float:
        """Largest centred sphere inside the box, m (the paper's ``r_i``)."""
        return float(np.min(self.upper - self.lower) / 2)

    def to_dict(self) -> dict:
        return {
            "lower": [float(v) for v in self.lower],
            "upper": [float(v) for v in self.upper],
            "centre": [float(v) for v in self.centre],
            "radius": self.radius,
        }


def global_radius(extents: dict[str, Extent]) -> tuple[float, str]:
    """The global sphere radius (m) and the id of the model that limits it."""
    if not extents:
        raise ValueError("no models: cannot compute the sphere radius")
    limiting = min(extents, key=lambda k: extents[k].radius)
    return extents[limiting].radius, limiting


def trim_to_sphere(position: np.ndarray, centre: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Centre the points and keep those within ``radius`` of ``centre``.

    Args:
        position: (N, 3) m.
        centre: (3,) m.
        radius: m.

    Returns:
        (centred positions (M, 3) m, boolean mask (N,) of the kept points).
    """
    centred = position - centre
    keep = np.einsum("ij,ij->i", centred, centred) <= radius * radius
    return centred[keep], keep


def sphere_summary(extents: dict[str, Extent]) -> dict:
    """The content of ``results/sphere.json``: global radius (m), limiting model, per-model extents."""
    radius, limiting = global_radius(extents)
    return {
        "radius": radius,
        "units": "m",
        "limiting_model": limiting,
        "n_models": len(extents),
        "models": {k: e.to_dict() for k, e in extents.items()},
    }


def read_sphere_radius(path) -> float:
    """The global radius (m) from a ``sphere.json``; CoemuInputError naming the file if unusable."""
    from coemu.io.errors import CoemuInputError
    from coemu.io.validation import read_json

    try:
        radius = read_json(path)["radius"]
    except (KeyError, TypeError) as err:
        raise CoemuInputError(path, "radius", f"not a sphere file ({err!r})") from None
    if not isinstance(radius, (int, float)) or not radius > 0:
        raise CoemuInputError(path, "radius", f"must be a positive number, got {radius!r}")
    return float(radius)
