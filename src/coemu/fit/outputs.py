"""What a fit writes: posterior samples (arviz InferenceData as netCDF), a corner plot, channel maps.

``{family}.posterior.nc``: groups ``posterior`` (each free parameter,
(chain, draw), physical units as in :data:`coemu.fit.family.UNITS`; a nested
sampler's equal-weight draws are one chain) and ``sample_stats`` (NUTS:
``lp``, ln(L x prior) in the sampler's coordinates, and ``log_likelihood``;
nested: ``log_likelihood``); ``arviz.from_netcdf`` reads it.

``{family}.corner.png``: the corner plot (corner), with the true values when
they are known. ``{family}.channels.png``: the observed channels, the MAP
model (nested: the sampled point of highest ln L) and the residual in units
of the noise rms.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from coemu.fit.family import UNITS
from coemu.io.atomic import atomic_output


def write_posterior(draws, family, path: str | Path, attrs: dict, sample_stats: dict | None = None) -> Path:
    """Posterior draws as an arviz InferenceData netCDF file, written atomically.

    Args:
        draws: parameter -> (C, D) physical values (C chains of D draws; a nested sampler's M
            equal-weight draws as one chain, (1, M)); a :class:`coemu.fit.sample.Chains`
            (its ``values``, and ``lp`` and ``log_likelihood`` as ``sample_stats``) is taken too.
        sample_stats: name -> (C, D) (``lp``: ln(L x prior) in the sampler's coordinates,
            ``log_likelihood``: ln L), or None.
    """
    import arviz as az

    if hasattr(draws, "values") and hasattr(draws, "log_density"):  # a Chains
        sample_stats = {"lp": draws.log_density, "log_likelihood": draws.log_likelihood}
        draws = draws.values
    idata = az.from_dict(
        posterior={p: np.asarray(draws[p]) for p in family.free},
        sample_stats=dict(sample_stats or {}),
        attrs={k: str(v) for k, v in attrs.items()},
    )
    for p in family.free:
        idata.posterior[p].attrs["units"] = UNITS.get(p, "1")
    with atomic_output(path, suffix=".nc") as tmp:
        idata.to_netcdf(str(tmp))
    return Path(path)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def corner_plot(
    draws, family, path: str | Path, truths: dict | None = None, title: str | None = None
) -> Path:
    """Corner plot of the free parameters (log10 for the log-uniform ones).

    Args:
        draws: parameter -> (C, D) physical values (any shape: flattened), or a
            :class:`coemu.fit.sample.Chains`.
        title: the figure's title (default: the family and the draws' shape).
    """
    import corner

    plt = _plt()
    if hasattr(draws, "values") and hasattr(draws, "log_density"):  # a Chains
        draws = draws.values
    shape = np.shape(draws[family.free[0]])
    title = title or f"{family.name} family: " + " x ".join(str(n) for n in shape) + " draws"
    columns, labels, marks = [], [], []
    for prior in family.priors:
        v = np.asarray(draws[prior.parameter]).reshape(-1)
        t = None if truths is None else truths.get(prior.parameter)
        unit = UNITS.get(prior.parameter)
        if prior.kind == "log-uniform":
            v, t = np.log10(v), (None if t is None else np.log10(t))
            labels.append(f"log10 {prior.parameter}" + (f" [{unit}]" if unit else ""))
        else:
            labels.append(prior.parameter + (f" [{unit}]" if unit else ""))
        columns.append(v)
        marks.append(t)
    fig = corner.corner(
        np.stack(columns, axis=1),
        labels=labels,
        truths=None if truths is None else marks,
        quantiles=[0.16, 0.5, 0.84],
        show_titles=True,
        title_kwargs={"fontsize": 8},
        label_kwargs={"fontsize": 8},
    )
    fig.suptitle(title, y=1.02)
    with atomic_output(path) as tmp:
        fig.savefig(tmp, dpi=80, bbox_inches="tight", format="png")
    plt.close(fig)
    return Path(path)


def channel_maps(observed: np.ndarray, model: np.ndarray, noise: float, offsets, unit: str, path) -> Path:
    """Observed, model and (observed - model) / noise for every channel (FITS orientation)."""
    plt = _plt()
    n = observed.shape[0]
    fig, axes = plt.subplots(3, n, figsize=(1.9 * n, 5.6), squeeze=False)
    lo, hi = float(min(observed.min(), model.min())), float(max(observed.max(), model.max()))
    residual = (observed - model) / noise
    for k in range(n):
        images = (observed[k], model[k], residual[k])
        for row, (img, cmap, vmin, vmax) in enumerate(
            zip(images, ("inferno", "inferno", "RdBu_r"), (lo, lo, -4), (hi, hi, 4), strict=True)
        ):
            ax = axes[row, k]
            im = ax.imshow(img, origin="lower", cmap=cmap, vmin=vmin, vmax=vmax)
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(f"{offsets[k] / 1e3:+.2f} km/s", fontsize=8)
            if k == n - 1:
                fig.colorbar(
                    im, ax=axes[row].tolist(), shrink=0.8, label=unit if row < 2 else "residual / rms"
                )
    for row, name in enumerate(("observed", "MAP model", "residual")):
        axes[row, 0].set_ylabel(name, fontsize=9)
    with atomic_output(path) as tmp:
        fig.savefig(tmp, dpi=80, bbox_inches="tight", format="png")
    plt.close(fig)
    return Path(path)
