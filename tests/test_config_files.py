"""Files and folders named in the config: a missing one is refused by ``settings.check``,
naming the key, before any job of the workflow runs (issue 27, 6)."""

from __future__ import annotations

import shutil

import pytest
from conftest import REPO, copy_workflow, run_cli, snakemake

from coemu import settings
from coemu.io.errors import CoemuInputError

CO_DAT = REPO / "src" / "coemu" / "rt" / "data" / "co.dat"


def _check(config: dict) -> None:
    settings.check(settings.complete(config), "my.yaml")


@pytest.mark.parametrize(
    "config, key, problem",
    [
        ({"images": {"datafile": "nowhere/co.dat"}}, "images.datafile", "no such file: nowhere/co.dat"),
        (
            {"models": {"source": "directory", "directory": "/no/such/models"}},
            "models.directory",
            "no such folder: /no/such/models",
        ),
        (
            {"dask": {"security": {"ca_file": "ca.pem", "cert": "cert.pem", "key": "key.pem"}}},
            "dask.security.ca_file",
            "no such file: ca.pem",
        ),
    ],
)
def test_a_missing_file_is_refused_naming_the_key(tmp_path, monkeypatch, config, key, problem):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CoemuInputError) as err:
        _check(config)
    assert str(err.value).startswith(f"my.yaml: config key '{key}': {problem}")


def test_relative_paths_are_relative_to_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = {"images": {"datafile": "line/co.dat"}}
    with pytest.raises(CoemuInputError, match=f"no such file: line/co.dat \\(relative to {tmp_path}\\)"):
        _check(config)
    (tmp_path / "line").mkdir()
    with pytest.raises(CoemuInputError, match="config key 'images.datafile': a folder, not a file"):
        _check({"images": {"datafile": "line"}})
    shutil.copy(CO_DAT, tmp_path / "line" / "co.dat")
    _check(config)


def test_files_that_exist_and_the_defaults_pass(tmp_path):
    _check({})  # datafile null: the shipped co.dat; models synthetic: no folder
    (tmp_path / "models").mkdir()
    pem = {name: str(tmp_path / f"{name}.pem") for name in ("ca_file", "cert", "key")}
    for path in pem.values():
        open(path, "w").close()
    _check(
        {
            "images": {"datafile": str(CO_DAT)},
            "models": {"source": "directory", "directory": str(tmp_path / "models")},
            "dask": {"security": pem},
        }
    )
    with pytest.raises(CoemuInputError, match="config key 'dask.security.key': no such file"):
        _check({"dask": {"security": {**pem, "key": str(tmp_path / "gone.pem")}}})
    with pytest.raises(CoemuInputError, match="config key 'models.directory': not a folder"):
        _check({"models": {"source": "directory", "directory": str(CO_DAT)}})


def test_a_command_by_hand_refuses_a_missing_datafile(tmp_path):
    proc = run_cli("render", "cube.nc", "out.nc", "--datafile", "gone.dat", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "config key 'images.datafile': no such file: gone.dat" in proc.stderr


@pytest.mark.parametrize(
    "bad, key",
    [
        ("images: {datafile: line/gone.dat}\n", "images.datafile"),
        ("models: {source: directory, directory: gone-models}\n", "models.directory"),
    ],
)
def test_the_workflow_refuses_a_missing_file_before_any_job(tmp_path, bad, key):
    workdir = copy_workflow(tmp_path / "run")
    (workdir / "bad.yaml").write_text(bad)
    proc = snakemake(workdir, "-n", "--configfile", "bad.yaml", check=False)
    said = proc.stdout + proc.stderr
    assert proc.returncode != 0 and f"config key '{key}': no such" in said
    assert "Job stats" not in said and not (workdir / "results").exists()
