"""Block jobs' keep-or-make loop and manifests (coemu.io.blocks), on real netCDF files."""

from __future__ import annotations

import json

import pytest
import xarray as xr

from coemu.io.blocks import BlockItem, model_files, read_manifests, run_block, write_manifest
from coemu.io.errors import CoemuInputError
from coemu.io.provenance import FINGERPRINT_ATTR


def test_run_block_makes_what_lacks_its_fingerprint_and_lists_everything(tmp_path):
    made = []

    def make(item, wanted):
        made.append(item.model)
        ds = xr.Dataset({"v": ("x", [1.0])}, attrs={FINGERPRINT_ATTR: wanted})
        ds.to_netcdf(item.outputs["out"])

    items = [BlockItem(m, {"out": tmp_path / f"{m}.nc"}, inputs={"src": tmp_path / "src.json"}) for m in "ab"]
    (tmp_path / "src.json").write_text("{}")
    manifest = tmp_path / "blocks" / "b0000.json"
    recipe = {"a": "1111", "b": "2222"}
    assert run_block(items, lambda i: recipe[i.model], make, manifest, progress=False) == 2
    assert run_block(items, lambda i: recipe[i.model], make, manifest, progress=False) == 0
    recipe["b"] = "3333"  # b's inputs changed
    assert run_block(items, lambda i: recipe[i.model], make, manifest, progress=False) == 1
    assert made == ["a", "b", "b"]
    doc = json.loads(manifest.read_text())
    assert doc["block"] == "b0000" and doc["n_models"] == 2
    assert doc["models"]["b"]["out"]["fingerprint"] == "3333"
    assert doc["models"]["a"]["src"]["path"] == str(tmp_path / "src.json")
    files = read_manifests([manifest])
    assert files["a"] == {"src": tmp_path / "src.json", "out": tmp_path / "a.nc"}


def test_manifests_that_do_not_fit_are_named(tmp_path):
    (tmp_path / "x.nc").write_text("x")
    write_manifest(tmp_path / "b0.json", "b0", {"m1": {"cube": tmp_path / "x.nc"}})
    write_manifest(tmp_path / "b1.json", "b1", {"m1": {"cube": tmp_path / "x.nc"}})
    with pytest.raises(CoemuInputError, match=r"b1.json: variable 'models': model 'm1' is also in .*b0.json"):
        read_manifests([tmp_path / "b0.json", tmp_path / "b1.json"])
    (tmp_path / "bad.json").write_text('{"models": [1, 2]}')
    with pytest.raises(CoemuInputError, match="bad.json: variable 'models': not a block manifest"):
        read_manifests([tmp_path / "bad.json"])
    with pytest.raises(CoemuInputError, match="missing.json: cannot be read"):
        read_manifests([tmp_path / "missing.json"])
    files = read_manifests([tmp_path / "b0.json"])
    with pytest.raises(CoemuInputError, match="split.json: model 'm2': model is in no manifest given"):
        model_files(files, ["m1", "m2"], ("cube",), "split.json")
    with pytest.raises(CoemuInputError, match="split.json: model 'm1': its manifest lists no image file"):
        model_files(files, ["m1"], ("cube", "image"), "split.json")
