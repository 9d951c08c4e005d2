"""Files that are not coemu model files: refused by the one loader, naming the file, saying
how to remake it, and never advising to load them with ``weights_only=False`` (issue 27, 5)."""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import signal
import zipfile
from pathlib import Path

import pytest
import torch
from conftest import copy_workflow, run_cli, snakemake

from coemu.data.transform import Preprocessing
from coemu.io.errors import CoemuInputError
from coemu.nn import ColumnEmulator, Emulator
from coemu.training import checkpoint


class _RunsCode:
    """Unpickling it would create ``target`` (a file that would run code)."""

    def __init__(self, target: str):
        self.target = target

    def __reduce__(self):
        return (os.mkdir, (self.target,))


def _emulator() -> ColumnEmulator:
    """A tiny untrained emulator."""
    prep = Preprocessing(0.0, 1.0, 0.0, 1.0, 0.0, 1.0, -40.0, 0.0)
    return ColumnEmulator(channel_velocities=[0.0], preprocessing=prep.to_dict(), hidden=2, layers=1)


def _model_file(path: Path) -> Path:
    """A real (untrained) model file at ``path``."""
    checkpoint.save(path, _emulator().model_file())
    return path


def _bad_file(kind: str, path: Path) -> Path:
    """A file at ``path`` that is not a coemu model file, of ``kind``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("this is not a model\n")
    elif kind == "truncated":
        whole = _model_file(path).read_bytes()
        path.write_bytes(whole[: len(whole) // 2])
    elif kind == "plain pickle":
        path.write_bytes(pickle.dumps({"kind": "column", "kwargs": {}, "model": {}}))
    elif kind == "foreign zip":
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("notes.txt", "a zip file, not a torch archive")
    elif kind == "list":
        torch.save([1, 2, 3], path)
    elif kind == "other dict":
        torch.save({"weights": torch.zeros(2)}, path)
    elif kind == "wrong types":
        torch.save({"kind": "column", "kwargs": [2, 1], "model": {}}, path)
    elif kind == "folder":
        path.mkdir()
    elif kind != "missing":
        raise ValueError(kind)
    return path


BAD_KINDS = {
    "missing": "no such file",
    "empty": "0 bytes",
    "text": "not a torch archive",
    "truncated": "not a torch archive",
    "plain pickle": "not a torch archive",
    "foreign zip": "not a torch archive, a zip file torch cannot read",
    "list": "a torch archive of a list",
    "other dict": "a torch archive without 'kind', 'kwargs', 'model'",
    "wrong types": "its 'kwargs' is a list, not a dict",
    "folder": "not a regular file",
}


@pytest.mark.parametrize("kind", list(BAD_KINDS))
def test_a_file_that_is_not_a_model_file_is_refused_naming_it(tmp_path, kind):
    bad = _bad_file(kind, tmp_path / "bad.pt")
    with pytest.raises(CoemuInputError) as err:
        Emulator.load(bad)
    message = str(err.value)
    assert message.startswith(f"{bad}: not a coemu model file ({BAD_KINDS[kind]}")
    assert "weights_only" not in message and "remake it with `coemu train`" in message
    assert "snakemake" not in message  # not where the pipeline keeps its model files


def test_a_real_model_file_still_loads(tmp_path):
    loaded = Emulator.load(_model_file(tmp_path / "model.pt"))
    assert isinstance(loaded, ColumnEmulator) and not loaded.training


def test_a_file_that_would_run_code_is_refused_without_advice_to_unpickle(tmp_path):
    target = tmp_path / "made-by-the-pickle"
    crafted = tmp_path / "model.pt"
    torch.save({"kind": "column", "kwargs": {}, "model": {}, "payload": _RunsCode(str(target))}, crafted)
    with pytest.raises(CoemuInputError) as err:
        Emulator.load(crafted)
    message = str(err.value)
    assert message.startswith(f"{crafted}: refused: it holds more than tensors and plain data (")
    assert "GLOBAL" in message  # what it needs, from torch's refusal
    assert "weights_only" not in message and "Re-running" not in message
    assert not target.exists()


def test_a_checkpoint_that_is_not_one_is_refused_without_a_remake_hint(tmp_path):
    bad = _bad_file("empty", tmp_path / "results/train/finetune/checkpoints/last.pt")
    with pytest.raises(CoemuInputError, match=r"last.pt: not a coemu checkpoint \(0 bytes\)$"):
        checkpoint.load(bad)


def test_fine_tuning_from_a_bad_model_file_is_refused(tmp_path):
    """``coemu train --init`` copies the pretrained weights through the same loader."""
    model = _emulator()
    bad = _bad_file("text", tmp_path / "results/train/pretrain/model.pt")
    with pytest.raises(CoemuInputError, match="pretrain/model.pt: not a coemu model file"):
        checkpoint.load_matching(model, bad)


def test_files_carry_their_format_and_one_without_it_is_format_1(tmp_path):
    """``checkpoint.save`` writes ``format``; a model file from before the field (the same
    content, no ``format``) is read as format 1."""
    saved = torch.load(_model_file(tmp_path / "model.pt"), weights_only=True)
    assert saved["format"] == checkpoint.FORMAT == 1
    older = tmp_path / "older.pt"
    torch.save(_emulator().model_file(), older)  # as coemu wrote model files before the field
    assert "format" not in torch.load(older, weights_only=True) and checkpoint.UNMARKED_FORMAT == 1
    assert isinstance(Emulator.load(older), ColumnEmulator)


@pytest.mark.parametrize(
    "found, problem",
    [
        (2, "format 2 (written by a newer coemu); this coemu reads format 1"),
        (0, "format 0 (written by an older coemu); this coemu reads format 1"),
        ("1", "format '1', not a format number; this coemu reads format 1"),
        (True, "format True, not a format number; this coemu reads format 1"),
    ],
)
def test_a_model_file_of_another_format_is_refused_with_both_formats_and_how_to_remake_it(
    tmp_path, found, problem
):
    path = tmp_path / "results/train/column/finetune/model.pt"
    path.parent.mkdir(parents=True)
    torch.save(_emulator().model_file() | {"format": found}, path)
    with pytest.raises(CoemuInputError) as err:
        Emulator.load(path)
    assert str(err.value) == (
        f"{path}: a coemu model file of {problem}; remake it with `coemu train` (in the pipeline:"
        f" `cd {tmp_path} && snakemake --forcerun results/train/column/finetune/model.pt`)"
    )
    with pytest.raises(CoemuInputError, match="a coemu model file of format"):
        checkpoint.load_matching(_emulator(), path)  # fine-tuning from it: the same refusal


def test_a_checkpoint_of_another_format_is_refused(tmp_path):
    path = tmp_path / "last.pt"
    torch.save({"model": {}, "format": checkpoint.FORMAT + 1}, path)
    with pytest.raises(
        CoemuInputError, match=r"last.pt: a coemu checkpoint of format 2 \(written by a newer"
    ):
        checkpoint.load(path)


@pytest.mark.parametrize(
    "path, hint",
    [
        (
            "results/train/coemunet/finetune/model.pt",
            "`snakemake --forcerun results/train/coemunet/finetune/model.pt`",
        ),
        (
            "results/train/column/pretrain/model.pt",
            "`snakemake --forcerun results/train/column/pretrain/model.pt`",
        ),
        (
            "/runs/a b/results/train/column/finetune/model.pt",
            "`cd '/runs/a b' && snakemake --forcerun results/train/",
        ),
        ("results/train/finetune/model.pt", None),  # the layout before every kind had its folder
        ("results/train/column/finetune/best.pt", None),
        ("results/evaluation/finetune/model.pt", None),
        ("elsewhere/finetune/model.pt", None),
    ],
)
def test_the_remake_hint_names_the_pipeline_target(path, hint):
    text = checkpoint.remake_hint(path)
    assert text.startswith("remake it with `coemu train`")
    if hint is None:
        assert "snakemake" not in text
    else:
        assert f"(in the pipeline: {hint}" in text


def test_coemu_predict_refuses_a_bad_model_file_with_the_pipeline_command(tmp_path):
    """A zero-byte model.pt where the pipeline keeps it: exit 2, the file, why, and the command."""
    bad = _bad_file("empty", tmp_path / "results/train/column/finetune/model.pt")
    out = tmp_path / "out.nc"
    proc = run_cli("predict", bad.relative_to(tmp_path), "cube.nc", out, cwd=tmp_path, check=False)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: results/train/column/finetune/model.pt: not a coemu model file (0 bytes); remake it"
        " with `coemu train` (in the pipeline: `snakemake --forcerun results/train/column/finetune/model.pt`)"
    )
    assert "Traceback" not in proc.stderr and not out.exists()


@pytest.mark.parametrize("kind", list(BAD_KINDS))
def test_coemu_predict_refuses_each_bad_file_without_advice_to_unpickle(tmp_path, kind):
    bad = _bad_file(kind, tmp_path / "model.pt")
    status, said = _cli("predict", bad, tmp_path / "cube.nc", tmp_path / "out.nc")
    assert status == 2 and said.startswith(f"error: {bad}: not a coemu model file ({BAD_KINDS[kind]}")
    assert "weights_only" not in said and "Traceback" not in said
    assert not (tmp_path / "out.nc").exists()


def _cli(*args) -> tuple[int, str]:
    """``coemu ARGS`` in this process (the subprocess costs seconds): exit status and stderr."""
    from coemu.cli import main

    stderr, handler = io.StringIO(), signal.getsignal(signal.SIGTERM)
    try:
        with contextlib.redirect_stderr(stderr):
            status = main([str(a) for a in args])
    finally:
        signal.signal(signal.SIGTERM, handler)  # main installs its own
    return status, stderr.getvalue()


STAGES = ("pretrain", "finetune")


def test_the_hint_knows_every_model_file_of_the_workflow(tmp_path):
    """Every model.pt the workflow makes (two kinds) is where :func:`pipeline_target` looks,
    and nothing else it makes is; Snakemake takes one as a ``--forcerun`` target."""
    workdir = copy_workflow(tmp_path / "run")
    (workdir / "kinds.yaml").write_text("training: {model: {kind: [coemunet, column]}}\n")
    summary = snakemake(workdir, "--summary", "--configfile", "kinds.yaml").stdout
    rows = [line.split("\t") for line in summary.splitlines()[1:] if "\t" in line]
    models = {row[0] for row in rows if row[0].endswith("/model.pt")}
    assert models == {f"results/train/{k}/{s}/model.pt" for k in ("coemunet", "column") for s in STAGES}
    for row in rows:
        expected = (Path(), row[0]) if row[0] in models else None
        assert checkpoint.pipeline_target(row[0]) == expected, row[0]
    target = "results/train/column/finetune/model.pt"
    plan = snakemake(workdir, "-n", "--configfile", "kinds.yaml", "--forcerun", target).stdout
    assert f"output: {target}" in plan
