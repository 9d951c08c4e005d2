"""The model-wise split and the preprocessing transform."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from coemu.data.split import split_counts, split_models
from coemu.data.transform import Preprocessing
from coemu.data.variables import transformed_values

FRACTIONS = {"train": 0.8, "validation": 0.1, "test": 0.1}


def test_split_puts_each_model_in_exactly_one_split():
    models = [f"m{i:05d}" for i in range(103)]
    split = split_models(models, FRACTIONS, seed=1)
    assert sorted(sum(split.values(), [])) == models
    assert [len(split[k]) for k in ("train", "validation", "test")] == [83, 10, 10]
    assert split == split_models(models, FRACTIONS, seed=1)  # reproducible
    assert split != split_models(models, FRACTIONS, seed=2)


def test_adding_models_keeps_most_assignments():
    models = [f"m{i:05d}" for i in range(200)]
    before = split_models(models[:190], FRACTIONS, seed=4)
    after = split_models(models, FRACTIONS, seed=4)
    where = {m: k for k, v in after.items() for m in v}
    moved = [m for k, v in before.items() for m in v if where[m] != k]
    assert len(moved) <= 4


def test_small_data_sets_still_get_validation_and_test_models():
    assert split_counts(12, FRACTIONS) == {"validation": 1, "test": 1, "train": 10}
    with pytest.raises(ValueError, match="too few"):
        split_counts(2, FRACTIONS)
    with pytest.raises(ValueError, match="sum to 1"):
        split_counts(10, {"train": 0.8, "validation": 0.1, "test": 0.2})


def make_transform():
    return Preprocessing(
        velocity_mean=12.0,
        velocity_std=3.0e3,
        log_temperature_min=math.log(20.0),
        log_temperature_scale=2.5,
        log_density_min=math.log(1e5),
        log_density_scale=9.0,
        log_intensity_min=-40.0,
        log_intensity_max=-28.0,
    )


def test_inputs_follow_the_paper_and_invert():
    p = make_transform()
    g = torch.Generator().manual_seed(0)
    t = 20 * torch.exp(4 * torch.rand(2, 4, 4, 4, generator=g, dtype=torch.float64))
    n = 1e5 * 10 ** (8 * torch.rand(2, 4, 4, 4, generator=g, dtype=torch.float64))
    v = 5e3 * torch.randn(2, 4, 4, 4, generator=g, dtype=torch.float64)
    x = p.inputs(t, n, v)
    assert x.shape == (3, 2, 4, 4, 4)
    np.testing.assert_allclose(x[0], (v - 12.0) / 3e3)  # eq. 12
    np.testing.assert_allclose(x[1], (torch.log(t) - math.log(20.0)) / 2.5)  # eq. 13-14
    back = p.inputs_inverse(x)
    for a, b in zip(back, (t, n, v), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12)


def test_intensity_is_min_max_scaled_and_inverts_above_the_floor():
    p = make_transform()
    intensity = torch.tensor([math.exp(-40.0), math.exp(-34.0), math.exp(-28.0)], dtype=torch.float64)
    np.testing.assert_allclose(p.intensity(intensity), [0.0, 0.5, 1.0], atol=1e-12)  # eq. 15-16
    np.testing.assert_allclose(p.intensity_inverse(p.intensity(intensity)), intensity, rtol=1e-12)
    below = torch.tensor([0.0, 1e-30], dtype=torch.float64)
    assert torch.equal(p.intensity(below), torch.zeros(2, dtype=torch.float64))  # clipped at the floor


def test_constants_from_the_statistics_file_contract():
    def s(mn, med, mean=0.0, var=1.0):
        return {"min": mn, "median": med, "max": med + 1, "mean": mean, "variance": var}

    stats = {
        "cubes": {
            "velocity_z": s(-1e4, 0.0, mean=5.0, var=4e6) | {"transformed": s(-1e4, 0.0, mean=5.0, var=4e6)},
            "temperature": s(10.0, 300.0) | {"transformed": s(2.3, 5.7)},
            "number_density_co": s(0.0, 1e9) | {"transformed": s(0.0, 20.7)},
        },
        "images": {"intensity": s(0.0, 1e-16) | {"transformed": {"min": -40.0, "max": -30.0, "median": -35}}},
        "floors": {"number_density_co": 1.0, "intensity": math.exp(-40)},
    }
    p = Preprocessing.from_stats(stats)
    assert p.velocity_std == pytest.approx(2e3) and p.velocity_mean == 5.0
    assert p.log_temperature_scale == pytest.approx(3.4) and p.log_density_scale == pytest.approx(20.7)
    assert (p.log_intensity_min, p.log_intensity_max) == (-40.0, -30.0)
    stats["cubes"]["temperature"]["transformed"]["median"] = 2.3
    with pytest.raises(ValueError, match="log_temperature_scale"):
        Preprocessing.from_stats(stats)


def test_numpy_transform_matches_the_torch_transform():
    floors = {"number_density_co": 1.0, "intensity": math.exp(-40)}
    n = np.array([0.0, 0.5, 1e9], dtype=np.float32)
    np.testing.assert_array_equal(transformed_values("number_density_co", n, floors), [0.0, 0.0, np.log(1e9)])
    p = make_transform()
    i = np.array([0.0, 1e-17, 1e-13], dtype=np.float64)
    expect = (transformed_values("intensity", i, floors) + 40.0) / 12.0
    np.testing.assert_allclose(p.intensity(torch.as_tensor(i)), expect, rtol=1e-12)


def test_fitting_on_arrays_equals_the_statistics_of_the_same_training_files(small_results):
    """Preprocessing.from_arrays (the device check's cubes in memory) = the constants of global.json."""
    import json

    import xarray as xr

    split = json.loads((small_results / "split.json").read_text())
    arrays = {"temperature": [], "number_density_co": [], "velocity_z": [], "intensity": []}
    for model in split["train"]:
        with xr.open_dataset(small_results / "cubes" / f"{model}.nc") as cube:
            for name in ("temperature", "number_density_co", "velocity_z"):
                arrays[name].append(cube[name].values)
        with xr.open_dataset(small_results / "images" / f"{model}.nc") as image:
            arrays["intensity"].append(image["intensity"].values)
    fitted = Preprocessing.from_arrays({k: np.concatenate(v) for k, v in arrays.items()})
    expected = Preprocessing.from_file(small_results / "stats" / "global.json")
    for key, value in expected.to_dict().items():
        assert fitted.to_dict()[key] == pytest.approx(value, rel=1e-6), key
    with pytest.raises(KeyError, match="intensity"):
        Preprocessing.from_arrays({k: v for k, v in arrays.items() if k != "intensity"})
