"""Global statistics on a real Dask LocalCluster (two worker processes) against numpy."""

from __future__ import annotations

import gc
import json

import numpy as np
import pytest
import xarray as xr

from coemu.data.variables import DEFAULT_INTENSITY_FLOOR, INPUT_VARIABLES, transformed_values
from coemu.io.blocks import write_manifest
from coemu.io.errors import CoemuInputError
from coemu.stats.cluster import dask_client
from coemu.stats.global_stats import global_statistics
from coemu.stats.lazy import lazy_files
from coemu.stats.reductions import key_values, sort_keys
from tests.conftest import run_cli

FLOORS = {"number_density_co": 1.0, "intensity": DEFAULT_INTENSITY_FLOOR}
SHAPE = (3, 6, 6, 6)  # rotations, x, y, z


def write_pair(folder, name, rng, zeros=0.0):
    """A cube file and an image file in the contract's layout, random but physical."""
    cube = xr.Dataset(
        {
            "temperature": (("rotation", "x", "y", "z"), rng.lognormal(5.5, 0.6, SHAPE).astype(np.float32)),
            "number_density_co": (
                ("rotation", "x", "y", "z"),
                (10 ** rng.uniform(6, 14, SHAPE) * (rng.random(SHAPE) > zeros)).astype(np.float32),
            ),
            "velocity_z": (("rotation", "x", "y", "z"), rng.normal(50.0, 4e3, SHAPE).astype(np.float32)),
        }
    )
    cube.attrs = {"model": name, "cell_size": 2.0e11, "sphere_radius": 1.6e13}  # as the contract has
    intensity = 10 ** rng.uniform(-19, -13, (SHAPE[0], 3, SHAPE[1], SHAPE[2]))
    intensity[rng.random(intensity.shape) < 0.2] = 0.0  # ties at zero, below the floor
    image = xr.Dataset({"intensity": (("rotation", "frequency", "x", "y"), intensity.astype(np.float32))})
    (folder / "cubes").mkdir(exist_ok=True)
    (folder / "images").mkdir(exist_ok=True)
    cube.to_netcdf(folder / "cubes" / f"{name}.nc")
    image.to_netcdf(folder / "images" / f"{name}.nc")
    return cube, image


@pytest.fixture(scope="module")
def client():
    with dask_client({"workers": 2, "threads_per_worker": 1, "memory_limit": "1GiB"}) as c:
        assert len(c.scheduler_info()["workers"]) == 2
        yield c


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(5)
    pairs = [write_pair(folder, f"m{i:05d}", rng, zeros=0.05) for i in range(5)]
    names = [f"m{i:05d}" for i in range(5)]
    return folder, names, pairs


def numpy_reference(values_per_file, transform=None):
    per_file = [v.astype(np.float64) if transform is None else transform(v) for v in values_per_file]
    allv = np.concatenate([v.ravel() for v in per_file])
    return {
        "count": allv.size,
        "mean": allv.mean(),
        "variance": allv.var(),
        "min": allv.min(),
        "max": allv.max(),
        "median": np.median(allv),
        "median_of_medians": np.median([np.median(v) for v in per_file]),
    }


def check_equal(stats, ref):
    assert stats["count"] == ref["count"]
    for key in ("mean", "variance"):
        assert stats[key] == pytest.approx(ref[key], rel=1e-6, abs=1e-12)
    for key in ("min", "max", "median", "median_of_medians"):
        assert stats[key] == ref[key], key


@pytest.mark.slow
@pytest.mark.parametrize("block_rotations", [1, None])
def test_statistics_equal_numpy_over_chunks_and_files(client, dataset, block_rotations):
    folder, names, pairs = dataset
    cubes = [str(folder / "cubes" / f"{n}.nc") for n in names]
    images = [str(folder / "images" / f"{n}.nc") for n in names]
    stats = global_statistics(client, cubes, images, FLOORS, block_rotations=block_rotations)
    for var in INPUT_VARIABLES:
        values = [cube[var].values for cube, _ in pairs]
        check_equal(stats["cubes"][var], numpy_reference(values))
        ref_t = numpy_reference(values, lambda v, var=var: transformed_values(var, v, FLOORS))
        check_equal(stats["cubes"][var]["transformed"], ref_t)
    values = [image["intensity"].values for _, image in pairs]
    check_equal(stats["images"]["intensity"], numpy_reference(values))
    ref_t = numpy_reference(values, lambda v: transformed_values("intensity", v, FLOORS))
    check_equal(stats["images"]["intensity"]["transformed"], ref_t)
    assert stats["files"] == {"cubes": 5, "images": 5}


def test_sort_keys_order_like_the_values_and_invert():
    rng = np.random.default_rng(2)
    values = np.concatenate(
        [
            rng.normal(0, 1e3, 500),
            10 ** rng.uniform(-30, 30, 500),
            [0.0, -0.0, 1e-45, -1e-45, 3.4e38, -3.4e38],
        ]
    ).astype(np.float32)
    keys = sort_keys(values)
    order = np.argsort(keys, kind="stable")
    assert np.all(np.diff(values[order].astype(np.float64)) >= 0)
    np.testing.assert_array_equal(key_values(keys), values)


@pytest.mark.slow
def test_lazy_files_are_chunked_by_rotation(client, dataset):
    folder, names, _ = dataset
    arrays = lazy_files(client, [str(folder / "cubes" / f"{n}.nc") for n in names], "temperature", 1)
    assert len(arrays) == 5 and arrays[0].numblocks == (3, 1, 1, 1)


@pytest.mark.slow
def test_bad_files_are_named(client, tmp_path, dataset):
    folder, names, _ = dataset
    good = str(folder / "cubes" / f"{names[0]}.nc")
    with pytest.raises(CoemuInputError, match="missing.nc: file is missing"):
        lazy_files(client, [good, str(tmp_path / "missing.nc")], "temperature")
    corrupt = tmp_path / "corrupt.nc"
    corrupt.write_bytes(b"this is not netCDF" * 100)
    with pytest.raises(CoemuInputError, match="corrupt.nc: not a readable netCDF"):
        lazy_files(client, [good, str(corrupt)], "temperature")
    truncated = tmp_path / "truncated.nc"
    truncated.write_bytes((folder / "cubes" / f"{names[1]}.nc").read_bytes()[:3000])
    with pytest.raises(CoemuInputError, match="truncated.nc"):
        arrays = lazy_files(client, [good, str(truncated)], "temperature")
        client.compute(arrays[1].sum()).result()
    with pytest.raises(CoemuInputError, match="variable 'speed': missing"):
        lazy_files(client, [good], "speed")
    nan = tmp_path / "nan.nc"
    ds = xr.open_dataset(good).load()
    ds["temperature"][0, 0, 0, 0] = np.nan
    ds.to_netcdf(nan)
    arrays = lazy_files(client, [str(nan)], "temperature")
    with pytest.raises(CoemuInputError, match="nan.nc: variable 'temperature': 1 non-finite values"):
        client.compute(arrays[0].sum()).result()


@pytest.mark.slow
def test_cli_split_then_stats_of_the_training_models(tmp_path, dataset):
    folder, names, pairs = dataset
    sphere = tmp_path / "sphere.json"
    sphere.write_text(json.dumps({"models": {n: {} for n in names}}))
    split = tmp_path / "split.json"
    run_cli("split", sphere, split, "--train", "0.6", "--validation", "0.2", "--test", "0.2", "--seed", "3")
    parts = json.loads(split.read_text())
    assert parts["counts"] == {"train": 3, "validation": 1, "test": 1}
    out = tmp_path / "stats" / "global.json"
    manifest = tmp_path / "blocks" / "b0000.json"
    files = {n: {"cube": folder / "cubes" / f"{n}.nc", "image": folder / "images" / f"{n}.nc"} for n in names}
    write_manifest(manifest, "b0000", files)
    dask = ["--workers", "2", "--threads-per-worker", "1", "--memory-limit", "1GiB"]
    proc = run_cli("stats", split, out, "--manifests", manifest, *dask)
    assert "dashboard" in proc.stderr
    stats = json.loads(out.read_text())
    assert stats["models"] == parts["train"] and stats["subset"] == "train"
    train = [pairs[names.index(m)] for m in parts["train"]]
    values = [cube["temperature"].values for cube, _ in train]
    check_equal(stats["cubes"]["temperature"], numpy_reference(values))
    assert set(stats["images"]["intensity"]["transformed"]) == {
        "count",
        "mean",
        "variance",
        "min",
        "max",
        "median",
        "median_of_medians",
    }
    # a training model whose image is missing: a clear error, and global.json is left as it was
    (folder / "images" / f"{parts['train'][0]}.nc").rename(tmp_path / "moved.nc")
    try:
        before = out.read_bytes()
        proc = run_cli("stats", split, out, "--manifests", manifest, *dask, check=False)
    finally:
        (tmp_path / "moved.nc").rename(folder / "images" / f"{parts['train'][0]}.nc")
    assert proc.returncode == 2
    assert f"{parts['train'][0]}.nc: file is missing" in proc.stderr
    assert out.read_bytes() == before


def test_the_cluster_speaks_tls_and_refuses_clients_without_its_credentials(client):
    """dask.security auto: TLS with temporary credentials; the dashboard on this host only."""
    from distributed import Client
    from distributed.security import Security

    address = client.scheduler.address
    assert address.startswith("tls://127.0.0.1:")
    assert client.dashboard_link.startswith("http://127.0.0.1:")
    assert client.submit(sum, [1, 2]).result() == 3
    for attempt in (
        lambda: Client(address, timeout=5),  # no credentials
        lambda: Client(address.replace("tls://", "tcp://"), timeout=5),  # plain TCP
        lambda: Client(address, security=Security.temporary(), timeout=5),  # other credentials
    ):
        with pytest.raises(Exception):  # noqa: B017 (refused, whatever the layer that refuses)
            attempt()
        collect_refused_clients()


def collect_refused_clients() -> None:
    """Collect the refused Client now. Left to the garbage collector, its ``__del__`` can run
    inside the next Client's start, where ``close`` waits for the loop runner that start holds:
    the test then hangs until its timeout (seen once in 2 runs on a loaded 2-core machine)."""
    gc.collect()


def test_a_running_scheduler_is_reached_with_the_certificate_files_of_the_config(tmp_path):
    """dask.security {ca_file, cert, key}: a started cluster and a scheduler_address client share them."""
    from distributed.security import Security

    pem = Security.temporary()
    files = {}
    for key, value in (
        ("ca_file", pem.tls_ca_file),
        ("cert", pem.tls_client_cert),
        ("key", pem.tls_client_key),
    ):
        files[key] = str(tmp_path / f"{key}.pem")
        (tmp_path / f"{key}.pem").write_text(value)
    settings = {"workers": 1, "memory_limit": "1GiB", "security": files}
    with dask_client(settings) as started:
        address = started.scheduler.address
        assert address.startswith("tls://")
        with dask_client({"scheduler_address": address, "security": files}) as joined:
            assert joined.submit(sum, [2, 3]).result() == 5
    with dask_client({"workers": 1, "memory_limit": "1GiB", "security": "none"}) as plain:
        assert plain.scheduler.address.startswith("tcp://127.0.0.1:")
