"""LTE level populations, line opacity, source function and Doppler width (paper eq. 7-10).

All functions take torch tensors of any shape (cells) and keep their dtype
and device. Formulas as in pomme 0.2.1 (``pomme.lines.Line``).
"""

from __future__ import annotations

import functools
import math

import torch

from coemu.constants import BOLTZMANN, PLANCK, SPEED_OF_LIGHT
from coemu.rt.lamda import Line

#: Temperature range (K) of the tabulated partition function.
TABLE_RANGE = (0.5, 2.0e5)
#: Nodes of the table, uniform in ln T: linear interpolation of ln Z errs by < 1e-7.
TABLE_NODES = 16384


def partition_function_exact(line: Line, temperature: torch.Tensor) -> torch.Tensor:
    """Z(T) = sum over all levels of g_i exp(-E_i / k T), summed directly (n_levels exps per cell)."""
    beta = 1.0 / (BOLTZMANN * temperature)
    energy = torch.as_tensor(line.data.energy, dtype=temperature.dtype, device=temperature.device)
    weight = torch.as_tensor(line.data.weight, dtype=temperature.dtype, device=temperature.device)
    return torch.einsum(
        "l,l...->...", weight, torch.exp(-energy.view((-1,) + (1,) * temperature.dim()) * beta)
    )


@functools.lru_cache(maxsize=16)
def _log_partition_table(line: Line, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    log_t = torch.linspace(
        math.log(TABLE_RANGE[0]), math.log(TABLE_RANGE[1]), TABLE_NODES, dtype=torch.float64
    )
    return torch.log(partition_function_exact(line, torch.exp(log_t))).to(dtype=dtype, device=device)


def check_temperature_range(temperature: torch.Tensor) -> None:
    """Raise ValueError unless every temperature (tensor or array) lies in :data:`TABLE_RANGE`."""
    if isinstance(temperature, torch.Tensor):
        temperature = temperature.detach()
    lo, hi = float(temperature.min()), float(temperature.max())
    if lo < TABLE_RANGE[0] or hi > TABLE_RANGE[1]:
        raise ValueError(f"values {lo:g}..{hi:g} K outside the solver's range {TABLE_RANGE} K")


def log_partition_function(line: Line, temperature: torch.Tensor) -> torch.Tensor:
    """ln Z(T), the partition function over *all* levels of the LAMDA file.

    Z is summed exactly on a table of :data:`TABLE_NODES` temperatures uniform
    in ln T over :data:`TABLE_RANGE` and interpolated linearly in (ln T, ln Z):
    relative error below 1e-7 (tested), at a fraction of the cost of
    n_levels exponentials per cell.
    """
    table = _log_partition_table(line, temperature.dtype, temperature.device)
    lo, hi = math.log(TABLE_RANGE[0]), math.log(TABLE_RANGE[1])
    x = (torch.log(temperature) - lo) * ((TABLE_NODES - 1) / (hi - lo))
    i = x.to(torch.int64).clamp_(min=0, max=TABLE_NODES - 2)
    flat = i.view(-1)
    lower, upper = table.index_select(0, flat).view_as(x), table.index_select(0, flat + 1).view_as(x)
    return torch.lerp(lower, upper, x - i)


def lte_fractions(line: Line, temperature: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Fractions of the molecules in the upper and lower level of ``line`` (eq. 10).

    Args:
        temperature: K, any shape.

    Returns:
        (p_u, p_l), same shape as ``temperature``.
    """
    beta = 1.0 / (BOLTZMANN * temperature)
    log_z = log_partition_function(line, temperature)
    e, g = line.data.energy, line.data.weight
    p_u = g[line.upper] * torch.exp(-float(e[line.upper]) * beta - log_z)
    p_l = g[line.lower] * torch.exp(-float(e[line.lower]) * beta - log_z)
    return p_u, p_l


def opacity_and_source(line: Line, temperature: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Line opacity per molecule (not folded with the profile) and source function (eq. 8-9).

    Returns:
        (chi_ij in m2 Hz sr-1 ... per molecule: h nu0 / (4 pi) (B_lu p_l - B_ul p_u),
        S = eta / chi = A p_u / (B_lu p_l - B_ul p_u) in W m-2 Hz-1 sr-1).
    """
    p_u, p_l = lte_fractions(line, temperature)
    factor = PLANCK * line.frequency / (4.0 * math.pi)
    stim = line.einstein_b_lu * p_l - line.einstein_b_ul * p_u
    return factor * stim, line.einstein_a * p_u / stim


def inverse_doppler_width(line: Line, temperature: torch.Tensor, v_turbulence: float | torch.Tensor = 0.0):
    """1 / delta nu with delta nu = nu0 / c sqrt(2 k T / m + v_turb^2) (eq. 7), Hz-1."""
    thermal = 2.0 * BOLTZMANN / line.mass
    return 1.0 / ((line.frequency / SPEED_OF_LIGHT) * torch.sqrt(thermal * temperature + v_turbulence**2))
