"""A physics-aligned emulator: a learned segment network along each ray, and the exact transfer sum.

With LTE populations and no scattering, a pixel's spectrum depends only on the
cells along its own ray, and the formal solution is a sum over the ray's
segments (:mod:`coemu.rt.transfer`): segment k, between nodes k and k+1 (node
0 faces the observer), adds ``E_k exp(-tau_<k)`` at the observer, ``E_k`` the
intensity it emits towards the observer and ``tau_<k`` the optical depth in
front of it. :class:`ColumnEmulator` keeps that structure exactly and learns
only what is local: a small network (shared by every segment, pixel and
channel) maps each segment's two nodes to its optical depth ``dtau_k`` and
source term ``S_k``, and the output is

    ln I = logsumexp_k ( ln S_k + ln(1 - exp(-dtau_k)) - tau_<k )   (+ the background, attenuated),

normalised like the training targets (:mod:`coemu.data.transform`). The
segment network sees, for each channel f, the Doppler-scaled offsets ``b =
(v_z - v_f) / w(T)`` at both nodes (``w = sqrt(2 k T / m + v_turb^2)``, the
line's Doppler width: the only physics given to it), and the normalised ln T
and ln n at both nodes, so a channel is any velocity: the weights do not
depend on the number of channels (pretraining on one line-centre channel
carries over to seven exactly).

What it learns is the line's local physics (level populations, profile
integral over a segment with a velocity gradient, source function); what it
cannot learn is anything non-local (non-LTE coupling between rays, scattering):
for that the global receptive field of :class:`coemu.nn.COEmuNet` is kept.
Its cost grows like the solver's (the segments within ``WING_CUT`` line
widths of each channel, x the network's width), so it is not faster than the
LTE solver it emulates; ``bench/emulators.py`` and the timing stage measure
both.

Input (batch, 3, G, G, G): preprocessed velocity, temperature, density
(the training data's channels); output (batch, F, G, G): normalised ln
intensity, F = ``len(channel_velocities)``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from coemu.constants import BOLTZMANN
from coemu.nn.base import Emulator
from coemu.rt.transfer import WING_CUT

#: ln of the segment source term's initial value below the data's peak ln I.
_SOURCE_START = 1.0
#: |b| beyond which the network sees the Doppler offsets clipped (the profile term is not).
_B_CLIP = 6.0
#: Features of a segment: b and the profile, ln T and ln n at both nodes.
N_FEATURES = 7
#: ln dtau of a segment the line does not reach (dtau = 0 in float32 and float64).
_NO_LINE = -1.0e4


def _log1mexp(x: Tensor) -> Tensor:
    """ln(1 - exp(-x)) for x > 0, accurate at both ends (Maechler 2012)."""
    return torch.where(x < math.log(2.0), torch.log(-torch.expm1(-x)), torch.log1p(-torch.exp(-x)))


def _log_erfc(x: Tensor) -> Tensor:
    """ln erfc(x) for x >= 0, without underflow far in the tail."""
    return math.log(2.0) + torch.special.log_ndtr(-math.sqrt(2.0) * x)


#: |b1 - b0| below which the segment profile is its midpoint value.
_SMALL_DB = 1.0e-3


def log_segment_profile(b0: Tensor, b1: Tensor) -> Tensor:
    """ln of the mean of exp(-b^2) over a segment along which b runs linearly from b0 to b1.

    The Gaussian line profile averaged over a segment with a velocity gradient
    (``sqrt(pi) / 2 (erf b1 - erf b0) / (b1 - b0)``), computed in logs so that
    the far wings (|b| of tens) do not underflow; 0 at the line centre.
    """
    lo, hi = torch.minimum(b0, b1), torch.maximum(b0, b1)
    d = (hi - lo).clamp_min(_SMALL_DB)
    near, far = torch.minimum(lo.abs(), hi.abs()), torch.maximum(lo.abs(), hi.abs())
    ln_near, ln_far = _log_erfc(near), _log_erfc(far)
    same_side = ln_near + _log1mexp((ln_near - ln_far).clamp_min(1.0e-12))
    across = torch.log((torch.erf(hi.clamp_min(0.0)) - torch.erf(lo.clamp_max(0.0))).clamp_min(1.0e-30))
    log_integral = math.log(math.sqrt(math.pi) / 2.0) + torch.where(lo * hi >= 0, same_side, across)
    midpoint = -((0.5 * (b0 + b1)) ** 2)
    return torch.where(hi - lo < _SMALL_DB, midpoint, log_integral - torch.log(d))


class ColumnEmulator(Emulator, kind="column"):
    """Per-segment network along each ray, exact transfer sum (see the module docstring).

    Args:
        channel_velocities: the output channels' velocity offsets from the line centre, m s-1 (F,).
        preprocessing: the input and target transform's constants
            (:meth:`coemu.data.transform.Preprocessing.to_dict`).
        molecular_mass: mass of the line's molecule, kg (its Doppler width).
        v_turbulence: turbulent velocity of the training images, m s-1.
        background: intensity entering each ray at its far end, W m-2 Hz-1 sr-1 (0 or one per channel).
        hidden: width of the segment network's hidden layers.
        layers: number of hidden layers.

    The arguments are kept (``model.kwargs``) and saved in model files.
    """

    def __init__(
        self,
        channel_velocities: Sequence[float] = (0.0,),
        preprocessing: Mapping[str, float] | None = None,
        molecular_mass: float = 4.651e-26,
        v_turbulence: float = 0.0,
        background: float | Sequence[float] = 0.0,
        hidden: int = 32,
        layers: int = 2,
    ):
        super().__init__()
        if preprocessing is None:
            raise ValueError("ColumnEmulator needs the preprocessing constants (Preprocessing.to_dict())")
        if hidden < 1 or layers < 1:
            raise ValueError(f"hidden and layers must be >= 1, got {hidden} and {layers}")
        p = dict(preprocessing)
        self.n_freq = len(channel_velocities)
        # from the arguments, not weights: not in the state dict (a 1-channel model's weights fit 7)
        self.register_buffer(
            "velocities", torch.tensor(list(channel_velocities), dtype=torch.float64), persistent=False
        )
        bg = torch.as_tensor(background, dtype=torch.float64).expand(self.n_freq).clone()
        if (bg < 0).any():
            raise ValueError("background intensities must be >= 0")
        self.register_buffer("log_background", torch.log(bg), persistent=False)  # -inf: none
        self.p = p
        self.thermal = 2.0 * BOLTZMANN / molecular_mass  # m2 s-2 K-1
        self.v_turbulence2 = float(v_turbulence) ** 2
        self.log_floor = math.log(p["intensity_floor"])
        self.span = p["log_intensity_max"] - p["log_intensity_min"]
        widths = [N_FEATURES] + [hidden] * layers
        net: list[nn.Module] = []
        for a, b in zip(widths[:-1], widths[1:], strict=True):
            net += [nn.Linear(a, b), nn.SiLU()]
        net.append(nn.Linear(widths[-1], 2))
        self.segment = nn.Sequential(*net)
        with torch.no_grad():
            out = self.segment[-1]
            out.weight.mul_(0.1)
            # at the start: dtau = the profile at the data's median density; S near the peak intensity
            start = -(p["log_density_min"] + p["log_density_scale"])
            out.bias.copy_(torch.tensor([start, p["log_intensity_max"] - _SOURCE_START]))

    @classmethod
    def from_data(cls, data, **settings) -> ColumnEmulator:
        """For ``data`` (a :class:`coemu.data.description.DataDescription`): its channels, line,
        transform and background."""
        return cls(
            channel_velocities=data.channel_velocities,
            preprocessing=data.preprocessing,
            molecular_mass=data.molecular_mass,
            v_turbulence=data.v_turbulence,
            background=data.background_intensity,
            **settings,
        )

    def doppler_offsets(self, x: Tensor) -> Tensor:
        """(batch, F, G, G, G) ``(v_z - v_f) / w(T)`` from the preprocessed input."""
        p = self.p
        velocity = x[:, 0] * p["velocity_std"] + p["velocity_mean"]
        temperature = torch.exp(x[:, 1] * p["log_temperature_scale"] + p["log_temperature_min"])
        width = torch.sqrt(self.thermal * temperature + self.v_turbulence2)
        v_f = self.velocities.to(x.dtype).view(1, -1, 1, 1, 1)
        return (velocity.unsqueeze(1) - v_f) / width.unsqueeze(1)

    def segment_terms(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(ln dtau, ln S), each (batch, F, G, G, G-1): the network on every segment and channel.

        ln dtau is the segment's mean line profile (:func:`log_segment_profile`)
        plus its mean ln n plus what the network adds (ln of the cross-section
        times the path: populations, stimulated emission, cell size).
        """
        b = self.doppler_offsets(x)
        b0, b1 = b[..., :-1], b[..., 1:]
        profile = log_segment_profile(b0, b1)
        f = b.shape[1]
        tn = x[:, 1:3, None].expand(-1, -1, f, -1, -1, -1)  # (batch, 2, F, G, G, G)
        t, n = tn[:, 0], tn[:, 1]
        features = torch.stack(
            [
                b0.clamp(-_B_CLIP, _B_CLIP) / _B_CLIP,
                b1.clamp(-_B_CLIP, _B_CLIP) / _B_CLIP,
                profile.clamp_min(-(_B_CLIP**2)) / _B_CLIP**2,
                t[..., :-1],
                t[..., 1:],
                n[..., :-1],
                n[..., 1:],
            ],
            dim=-1,
        )
        # the network only where the line reaches: further than WING_CUT widths from the line
        # centre along the whole segment the profile is below exp(-36), so dtau and the
        # segment's emission vanish (the solver skips those segments the same way)
        active = profile > -(WING_CUT**2)
        dtype = torch.promote_types(features.dtype, torch.float32)  # float32 also under bf16 autocast
        out = features.new_zeros(*features.shape[:-1], 2, dtype=dtype)
        out[active] = self._segment_network(features[active], dtype)
        p = self.p
        log_density = 0.5 * (n[..., :-1] + n[..., 1:]) * p["log_density_scale"] + p["log_density_min"]
        log_dtau = torch.where(active, profile + log_density + out[..., 0], _NO_LINE)
        return log_dtau, out[..., 1]

    def _segment_network(self, features: Tensor, dtype: torch.dtype) -> Tensor:
        """The MLP; its last layer in ``dtype`` (at least float32) even under bf16 autocast.

        Its outputs are ln dtau and ln S, of size 20-40: in bf16 their steps would be
        0.125-0.25, i.e. 6-12 % in dtau and S.
        """
        hidden = self.segment[:-1](features)
        with torch.autocast(features.device.type, enabled=False):
            return self.segment[-1](hidden.to(dtype))

    def log_intensity(self, x: Tensor) -> Tensor:
        """(batch, F, G, G) ln I (W m-2 Hz-1 sr-1) leaving node 0 of each ray."""
        log_dtau, log_source = self.segment_terms(x)
        dtau = torch.exp(log_dtau)
        tau = torch.cumsum(dtau, dim=-1)
        front = tau - dtau  # optical depth in front of each segment
        emitted = torch.where(  # ln(1 - exp(-dtau)), without log(0) where dtau underflows
            dtau < 1.0e-4, log_dtau - 0.5 * dtau, _log1mexp(dtau.clamp_min(1.0e-4))
        )
        terms = log_source + emitted - front
        bg = self.log_background.to(x.dtype).view(1, -1, 1, 1, 1)
        terms = torch.cat([terms, (bg - tau[..., -1:]).expand(*terms.shape[:-1], 1)], dim=-1)
        return torch.logsumexp(terms, dim=-1)

    def forward(self, x: Tensor) -> Tensor:
        """(batch, 3, G, G, G) preprocessed cube -> (batch, F, G, G) normalised ln intensity."""
        log_i = torch.logaddexp(self.log_intensity(x), x.new_tensor(self.log_floor))
        return (log_i - self.p["log_intensity_min"]) / self.span
