"""Model lists and the blocks of models that one image job renders."""

import pytest

from coemu.hydro.catalog import list_model_files, model_blocks, model_ids, synthetic_index


def test_blocks_are_consecutive_and_cover_every_model_once():
    models = model_ids({"source": "synthetic", "count": 10})
    blocks = model_blocks(models, 4)
    assert list(blocks) == ["b0000", "b0001", "b0002"]
    assert [m for ms in blocks.values() for m in ms] == models
    assert blocks["b0002"] == ["m00008", "m00009"]


def test_appending_models_changes_only_the_last_block():
    before = model_blocks(model_ids({"source": "synthetic", "count": 10}), 4)
    after = model_blocks(model_ids({"source": "synthetic", "count": 13}), 4)
    assert after["b0000"] == before["b0000"] and after["b0001"] == before["b0001"]
    assert after["b0002"] != before["b0002"] and "b0003" in after


def test_directory_listing(tmp_path):
    for name in ("b.nc", "a.h5", "notes.txt"):
        (tmp_path / name).write_text("")
    assert list(list_model_files(tmp_path)) == ["a", "b"]
    (tmp_path / "a.nc").write_text("")
    with pytest.raises(ValueError, match="two model files named 'a'"):
        list_model_files(tmp_path)
    with pytest.raises(FileNotFoundError):
        list_model_files(tmp_path / "absent")


def test_synthetic_ids_round_trip():
    assert synthetic_index("m00042") == 42
    with pytest.raises(ValueError):
        synthetic_index("wind7")
    with pytest.raises(ValueError):
        model_blocks(["m00000"], 0)
