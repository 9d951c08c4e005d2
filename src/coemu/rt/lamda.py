"""LAMDA line data: reader, transition selection, molar mass from the formula.

The LAMDA format (Schoier et al. 2005): levels with energies in cm-1 and
statistical weights, radiative transitions with Einstein A (s-1) and
frequencies (GHz). Conversions follow pomme 0.2.1 exactly: E [J] =
100 h c E [cm-1], B_ul = A_ul c^2 / (2 h nu^3), B_lu = g_u / g_l B_ul, and the
molar mass is computed from the chemical formula with standard atomic weights
(CO: 28.0101 g/mol; the LAMDA header's 28.0 is rounded and not used).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from coemu.constants import ATOMIC_MASS_UNIT, PLANCK, SPEED_OF_LIGHT
from coemu.io.errors import CoemuInputError

#: Standard atomic weights (g/mol) as tabulated in pomme 0.2.1 (pomme.utils).
ATOMIC_WEIGHTS = {
    "H": 1.00794, "D": 2.01410178, "He": 4.002602, "C": 12.0107, "N": 14.0067, "O": 15.9994,
    "F": 18.9984032, "Na": 22.98976928, "Mg": 24.305, "Al": 26.9815386, "Si": 28.0855,
    "P": 30.973762, "S": 32.065, "Cl": 35.453, "Ar": 39.948, "K": 39.0983, "Ca": 40.078,
    "Ti": 47.867, "Fe": 55.845,
}  # fmt: skip

#: Molecule name -> LAMDA file shipped in coemu/rt/data.
SHIPPED = {"co": "co.dat"}


def molar_mass(formula: str) -> float:
    """Molar mass (g/mol) of a chemical formula such as ``CO``, ``H2O``, ``SiO``, ``HC3N``."""
    tokens = re.findall(r"([A-Z][a-z]?)(\d*)", formula)
    if not tokens or "".join(e + n for e, n in tokens) != formula:
        raise ValueError(f"cannot parse the chemical formula '{formula}'")
    total = 0.0
    for element, count in tokens:
        if element not in ATOMIC_WEIGHTS:
            raise ValueError(f"no atomic weight for element '{element}' in '{formula}'")
        total += ATOMIC_WEIGHTS[element] * (int(count) if count else 1)
    return total


@dataclass(frozen=True, eq=False)
class LineData:
    """All levels and radiative transitions of one LAMDA file (SI units, 0-based indices).

    Attributes:
        molecule: name in the file header (e.g. ``CO``).
        energy: (n_levels,) J.
        weight: (n_levels,) statistical weights g.
        j: (n_levels,) rotational quantum numbers as strings (LAMDA's label column).
        upper, lower: (n_transitions,) level indices.
        einstein_a: (n_transitions,) s-1.
        frequency: (n_transitions,) Hz.
    """

    molecule: str
    energy: np.ndarray
    weight: np.ndarray
    j: tuple[str, ...]
    upper: np.ndarray
    lower: np.ndarray
    einstein_a: np.ndarray
    frequency: np.ndarray
    source: str


def _sections(path: Path) -> dict[str, list[str]]:
    """Split a LAMDA file into its '!'-headed sections (header text -> data lines)."""
    out: dict[str, list[str]] = {}
    key = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line:
            continue
        if line.startswith("!"):
            key = line[1:].strip().upper()
            if key in out:  # collision sections repeat; only the first of each matters here
                key = f"{key}#{len(out)}"
            out[key] = []
        elif key is not None:
            out[key].append(line)
    return out


def _find(sections: dict[str, list[str]], prefix: str, path: Path) -> list[str]:
    for key, lines in sections.items():
        if key.startswith(prefix):
            return lines
    raise CoemuInputError(path, prefix.lower(), "section missing: not a LAMDA file?")


def read_lamda(path: str | Path) -> LineData:
    """Read a LAMDA file.

    Raises:
        CoemuInputError: missing file or section, wrong counts or unparsable numbers.
    """
    path = Path(path)
    if not path.is_file():
        raise CoemuInputError(path, None, "LAMDA file not found")
    sec = _sections(path)
    try:
        molecule = _find(sec, "MOLECULE", path)[0].split()[0]
        n_levels = int(_find(sec, "NUMBER OF ENERGY LEVELS", path)[0].split()[0])
        levels = [line.split() for line in _find(sec, "LEVEL", path)[:n_levels]]
        n_trans = int(_find(sec, "NUMBER OF RADIATIVE TRANSITIONS", path)[0].split()[0])
        trans = [line.split() for line in _find(sec, "TRANS", path)[:n_trans]]
        if len(levels) != n_levels or len(trans) != n_trans:
            raise ValueError(
                f"{len(levels)} levels / {len(trans)} transitions, header says {n_levels} / {n_trans}"
            )
        energy_cm = np.array([float(f[1]) for f in levels])
        data = LineData(
            molecule=molecule,
            energy=energy_cm * 1.0e2 * PLANCK * SPEED_OF_LIGHT,
            weight=np.array([float(f[2]) for f in levels]),
            j=tuple(f[3] if len(f) > 3 else f[0] for f in levels),
            upper=np.array([int(f[1]) - 1 for f in trans]),
            lower=np.array([int(f[2]) - 1 for f in trans]),
            einstein_a=np.array([float(f[3]) for f in trans]),
            frequency=np.array([float(f[4]) for f in trans]) * 1.0e9,
            source=str(path),
        )
    except (IndexError, ValueError) as err:
        raise CoemuInputError(path, None, f"cannot parse LAMDA file ({err})") from None
    return data


def lamda_path(molecule: str = "co", datafile: str | Path | None = None) -> Path:
    """The LAMDA file to use: ``datafile`` if given, else the one shipped for ``molecule``."""
    if datafile is not None:
        return Path(datafile)
    name = SHIPPED.get(molecule.lower())
    if name is None:
        raise CoemuInputError(None, "molecule", f"no LAMDA file shipped for '{molecule}'; give datafile")
    return Path(str(resources.files("coemu.rt") / "data" / name))


@dataclass(frozen=True, eq=False)
class Line:
    """One radiative transition with everything the LTE solver needs (SI).

    Attributes:
        frequency: rest frequency nu0, Hz.
        einstein_a: A_ul, s-1.
        einstein_b_ul: stimulated emission B_ul (pomme's ``Einstein_Bs``).
        einstein_b_lu: absorption B_lu (pomme's ``Einstein_Ba``).
        upper, lower: level indices into ``data``.
        mass: molecular mass, kg.
        data: the whole LAMDA file (for the partition function).
    """

    name: str
    frequency: float
    einstein_a: float
    einstein_b_ul: float
    einstein_b_lu: float
    upper: int
    lower: int
    mass: float
    data: LineData

    @property
    def description(self) -> str:
        return f"{self.name}(J={self.data.j[self.upper]}-{self.data.j[self.lower]})"


def load_line(
    molecule: str = "CO", transition: int = 1, datafile: str | Path | None = None, formula: str | None = None
) -> Line:
    """Select ``transition`` (0-based LAMDA transition index; CO 1 = J 2-1, 230.538 GHz).

    Args:
        molecule: name; picks the shipped LAMDA file when ``datafile`` is None.
        transition: 0-based index into the file's radiative transitions.
        datafile: a LAMDA file to use instead of the shipped one.
        formula: chemical formula for the molar mass (default: the molecule named in the
            LAMDA file's header, e.g. ``CO``).
    """
    data = read_lamda(lamda_path(molecule, datafile))
    if not 0 <= transition < len(data.upper):
        raise CoemuInputError(
            data.source, "transition", f"{transition} out of range 0..{len(data.upper) - 1}"
        )
    u, lo = int(data.upper[transition]), int(data.lower[transition])
    nu = float(data.frequency[transition])
    a = float(data.einstein_a[transition])
    b_ul = a * SPEED_OF_LIGHT**2 / (2.0 * PLANCK * nu**3)
    b_lu = data.weight[u] / data.weight[lo] * b_ul
    try:
        mass = molar_mass(formula or data.molecule) * ATOMIC_MASS_UNIT
    except ValueError as err:
        raise CoemuInputError(data.source, "molecule", str(err)) from None
    return Line(molecule, nu, a, b_ul, float(b_lu), u, lo, mass, data)
