"""What the rules and block jobs know about how a file was made (coemu.io.provenance)."""

import shutil

import pytest

from coemu.io import provenance


@pytest.fixture()
def package_copy(tmp_path, monkeypatch):
    """A copy of the coemu package for code_digest to hash."""
    root = tmp_path / "coemu"
    shutil.copytree(provenance._PACKAGE_ROOT, root, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(provenance, "_PACKAGE_ROOT", root)
    provenance.code_digest.cache_clear()
    yield root
    provenance.code_digest.cache_clear()


def digests():
    provenance.code_digest.cache_clear()
    return {stage: provenance.code_digest(stage) for stage in provenance.STAGE_PACKAGES}


def test_code_digest_follows_code_not_comments_or_docstrings(package_copy):
    before = digests()
    assert len(set(before.values())) == len(before)  # one digest per stage
    lte = package_copy / "rt" / "lte.py"
    text = lte.read_text()
    lte.write_text('"""Another module docstring."""\n# a comment\n' + text.split('"""', 2)[2] + "\n\n")
    assert digests() == before  # docstring, comment and blank lines: nothing reruns
    lte.write_text(text + "\nEXTRA = 1\n")
    after = digests()
    changed = {stage for stage in before if after[stage] != before[stage]}
    assert changed == {
        "images",
        "training",
        "evaluation",
        "observations",
        "fit",
    }  # the stages that run coemu.rt


def test_fingerprint_is_order_independent_and_value_sensitive():
    a = provenance.fingerprint(x=1, y=[1, 2], z={"b": 1, "a": 2})
    assert a == provenance.fingerprint(z={"a": 2, "b": 1}, y=[1, 2], x=1)
    assert a != provenance.fingerprint(x=1, y=[2, 1], z={"b": 1, "a": 2})


def test_stored_fingerprint_of_missing_or_corrupt_file_is_none(tmp_path):
    assert provenance.stored_fingerprint(tmp_path / "missing.nc") is None
    (tmp_path / "bad.nc").write_bytes(b"not netCDF")
    assert provenance.stored_fingerprint(tmp_path / "bad.nc") is None
