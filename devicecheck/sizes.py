"""How big the device check's work is: ``paper`` (the default on CUDA) and ``small`` (on the CPU, in CI).

Two parts of different size:

* in memory, the solver and the emulators at the measured geometry: ``paper``
  is the paper's (64^3 cubes of a 128-cell box, 7 channels, COEmuNet with its
  published widths, 143,294,737 parameters);
* on disk, a mini data set made through the pipeline's own stages (``coemu
  sphere``, ``cubes-many``, ``render-many``, ``split``, ``stats``), which DDP
  training, ``coemu predict``, ``coemu evaluate`` and ``coemu timing`` then use.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Sizes:
    """One preset.

    Attributes:
        name: ``paper`` or ``small``.
        grid, box_cells, channels: the measured geometry (cells per axis, cells across the
            sphere's box, channels 300 m/s apart).
        models, rotations, n_base, levels, finest_spacing: the synthetic cubes made in memory
            (:func:`coemu.hydro.synthetic.synthetic_model`, au for the spacing).
        solver_max_batch: the largest batch of cubes the solver's throughput search tries.
        infer_max_batch, train_max_batch: the same for the emulators, per kind; a kind not
            listed gets the smallest listed (:meth:`infer_cap`, :meth:`train_cap`).
        kinds: each emulator kind's constructor settings (``{}``: the kind's defaults, for
            ``coemunet`` the paper's widths); a kind not listed gets ``unlisted_kinds``'s
            (:meth:`kind_settings`).
        unlisted_kinds: the settings of a kind that ``kinds`` does not list: ``constructor``
            (its constructor's defaults, the paper's by coemu.nn's convention) or ``schema``
            (the config schema's ``training.model.KIND`` defaults, the small networks of the
            default run; the constructor's when the schema has none).
        pipeline: config sections of the mini data set (merged over the schema's defaults).
        epochs: of the DDP fine-tuning runs (one is killed and resumed).
        repeats: timed calls per measurement (after a warm-up call).
        budget_s: seconds for the whole check; the throughput searches stop early to keep it.
        step_limit_s: a search stops doubling the batch once one call takes longer.
    """

    name: str
    grid: int
    box_cells: int
    channels: int
    models: int
    rotations: int
    n_base: int
    levels: int
    finest_spacing: float
    solver_max_batch: int
    infer_max_batch: dict[str, int]
    train_max_batch: dict[str, int]
    kinds: dict[str, dict]
    pipeline: dict = field(default_factory=dict)
    epochs: int = 10
    repeats: int = 3
    budget_s: float = 450.0
    step_limit_s: float = 10.0
    unlisted_kinds: str = "constructor"

    def kind_settings(self, kind: str) -> dict:
        """The constructor settings of emulator ``kind`` at this preset (a new kind needs no entry)."""
        if kind in self.kinds:
            return self.kinds[kind]
        if self.unlisted_kinds == "schema":
            from coemu.settings import section

            return dict(section("training")["model"].get(kind, {}))
        return {}

    def infer_cap(self, kind: str) -> int:
        """The largest inference batch the search tries for ``kind``."""
        return self.infer_max_batch.get(kind, min(self.infer_max_batch.values()))

    def train_cap(self, kind: str) -> int:
        """The largest training batch the search tries for ``kind``."""
        return self.train_max_batch.get(kind, min(self.train_max_batch.values()))


def _pipeline(count, n_base, levels, spacing, rotations, box_cells, grid, channels) -> dict:
    return {
        "models": {"count": count, "n_base": n_base, "levels": levels, "finest_spacing": spacing},
        "cubes": {"rotations": rotations, "box_cells": box_cells, "grid": grid},
        "images": {"channels": channels},
    }


PRESETS = {
    "paper": Sizes(
        name="paper",
        grid=64,
        box_cells=128,
        channels=7,
        models=2,
        rotations=4,
        n_base=64,
        levels=7,
        finest_spacing=0.2,
        solver_max_batch=512,
        infer_max_batch={"column": 1024, "coemunet": 1024},
        train_max_batch={"column": 256, "coemunet": 512},
        kinds={"column": {"hidden": 32, "layers": 2}, "coemunet": {}},
        pipeline=_pipeline(6, 32, 5, 0.4, 8, 64, 32, 7),
        epochs=10,
        repeats=3,
        budget_s=450.0,
        step_limit_s=10.0,
    ),
    "small": Sizes(
        name="small",
        grid=16,
        box_cells=32,
        channels=3,
        models=2,
        rotations=2,
        n_base=16,
        levels=4,
        finest_spacing=0.8,
        solver_max_batch=4,
        infer_max_batch={"column": 4, "coemunet": 4},
        train_max_batch={"column": 4, "coemunet": 4},
        kinds={
            "column": {"hidden": 8, "layers": 1},
            "coemunet": {
                "stem": 2,
                "widths": [4, 4, 8],
                "blocks_per_stage": 1,
                "latent": 64,
                "decoder_channels": 16,
            },
        },
        pipeline=_pipeline(6, 16, 4, 0.8, 2, 32, 16, 3),
        epochs=8,
        repeats=2,
        budget_s=300.0,
        step_limit_s=10.0,
        unlisted_kinds="schema",  # on the CPU: the default run's small networks
    ),
}
