"""No command writes over its own input: an output that is one of the inputs (same path, a
symbolic link or a hard link to it) is refused before anything is read, naming both."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from coemu.cli import main

# command line (FILE = an existing file that is an input and an output) for each command
# that writes; D is a folder the command writes in (--out)
CASES = {
    "hydro": "hydro FILE --index 1 --config FILE",
    "sphere": "sphere FILE --config FILE",
    "cubes": "cubes FILE FILE --sphere s.json",
    "cubes --output/--input": "cubes --output FILE --input FILE --sphere s.json",
    "cubes-many": "cubes-many --models m1 --outputs FILE --inputs FILE --sphere s.json --manifest b.json",
    "render": "render FILE FILE",
    "render --faceon": "render FILE image.nc --faceon FILE",
    "render datafile": "render cube.nc FILE --datafile FILE",
    "render-many": "render-many --cubes FILE --images FILE",
    "split": "split FILE FILE",
    "stats": "stats s.json FILE --manifests FILE",
    "train": "train --stage finetune --split s.json --stats g.json --manifests b.json --out D"
    " --init D/model.pt",
    "evaluate": "evaluate --stage finetune --model m.pt --split D/metrics.json --stats g.json"
    " --manifests b.json --out D",
    "compare": "compare FILE other.json --out FILE",
    "timing": "timing --models m.pt --split s.json --stats D/timing.md --manifests b.json --out D",
    "predict": "predict FILE cube.nc FILE",
    "observe": "observe FILE --input FILE",
    "observe --moments": "observe obs.fits --input model.nc --sphere obs.mom1.fits --moments",
    "export-observations": "export-observations --split s.json --manifests D/manifest.json --out D",
    "fit": "fit D/family.posterior.nc --out D",
}


def refused(argv: list[str], capsys) -> str:
    assert main(argv) == 2
    return capsys.readouterr().err


@pytest.mark.parametrize("case", CASES)
def test_an_output_that_is_an_input_is_refused_before_anything_is_read(case, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "D").mkdir()
    argv = CASES[case].split()
    named = {"FILE": "file.nc", "D/model.pt": "D/model.pt", "D/metrics.json": "D/metrics.json"}
    named |= {"D/timing.md": "D/timing.md", "D/manifest.json": "D/manifest.json"}
    named |= {"D/family.posterior.nc": "D/family.posterior.nc", "obs.mom1.fits": "obs.mom1.fits"}
    victim = next(named[a] for a in argv if a in named)
    argv = [named.get(a, a) for a in argv]
    content = b"seed: 3  # an input: not to be replaced\n"  # a config file, where it is --config
    (tmp_path / victim).write_bytes(content)
    err = refused(argv, capsys)
    assert f"{victim}: is an output and also an input" in err and "give another output path" in err
    assert (tmp_path / victim).read_bytes() == content
    assert sorted(p.name for p in tmp_path.rglob("*")) == sorted({"D", *(Path(victim).parts)})


def test_a_symbolic_or_hard_link_to_the_input_is_the_same_file(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    Path("model.pt").write_bytes(b"weights\n")
    os.symlink("model.pt", "link.pt")
    os.link("model.pt", "hard.pt")
    for output in ("link.pt", "hard.pt"):
        err = refused(["predict", "model.pt", "cube.nc", output], capsys)
        assert f"{output}: is an output and also an input (model.pt)" in err
    err = refused(["predict", "link.pt", "cube.nc", "model.pt"], capsys)
    assert "model.pt: is an output and also an input (link.pt)" in err
    assert Path("model.pt").read_bytes() == b"weights\n" and os.path.islink("link.pt")


def test_distinct_outputs_pass_the_check(tmp_path, monkeypatch, capsys):
    """Another output path goes on to read the input (which then fails here: it is not a cube)."""
    monkeypatch.chdir(tmp_path)
    Path("cube.nc").write_bytes(b"not netCDF\n")
    err = refused(["render", "cube.nc", "image.nc"], capsys)
    assert "is an output and also an input" not in err and "cube.nc" in err
    assert not Path("image.nc").exists()


def test_cubes_takes_its_files_by_position_or_by_name_not_both(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    err = refused(["cubes", "a.nc", "--output", "b.nc", "--sphere", "s.json", "--synthetic"], capsys)
    assert "give OUTPUT or --output, not both" in err
    err = refused(["cubes", "--sphere", "s.json", "--synthetic", "--model", "m00001"], capsys)
    assert "OUTPUT or --output" in err
    with pytest.raises(SystemExit):
        main(["cubes", "--help"])
    text = capsys.readouterr().out
    assert "the cube netCDF file to WRITE (first)" in text and "the model file to READ (second" in text
    assert "--output OUTPUT" in text and "--input INPUT" in text


def test_the_files_a_manifest_lists_are_inputs_too(tmp_path, monkeypatch, capsys):
    """`coemu stats` reads the cube and image files its manifests list: none may be its output."""
    monkeypatch.chdir(tmp_path)
    Path("img.nc").write_bytes(b"an image\n")
    entry = {"path": "img.nc", "fingerprint": None, "size": 9, "mtime_ns": 0}
    Path("b.json").write_text(json.dumps({"block": "b", "n_models": 1, "models": {"m1": {"image": entry}}}))
    err = refused(["stats", "s.json", "img.nc", "--manifests", "b.json"], capsys)
    assert "img.nc: is an output and also an input" in err
    assert Path("img.nc").read_bytes() == b"an image\n"


def test_an_output_below_a_file_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    Path("afile").write_text("x")
    err = refused(["hydro", "afile/m.nc", "--index", "1", "--n-base", "8", "--levels", "2"], capsys)
    assert "afile/m.nc: cannot write: a folder on its path is a file" in err
