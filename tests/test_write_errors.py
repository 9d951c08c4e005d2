"""Write failures name their cause (issue 27, item 4): no space left on device,
permission denied, read-only file system, with the target's path; the CLI exits 2
with that message; the temporary file is removed and an existing target kept.

The disk-full and read-only cases mount a 4 MiB tmpfs and so run as root only
(skipped with the reason elsewhere); permission denied runs as root by dropping
to user ``nobody`` in a subprocess.
"""

from __future__ import annotations

import os
import pickle
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from conftest import run_cli

from coemu.io.atomic import (
    NEARLY_FULL_BYTES,
    atomic_output,
    diagnose_folder,
    write_json_atomic,
    write_netcdf_atomic,
)
from coemu.io.errors import CoemuInputError, CoemuWriteError

#: Size of the small file system, in bytes: above NEARLY_FULL_BYTES, so that a
#: diagnosis of "full" holds only while the failed write's temporary file fills it.
DISK_BYTES = 4 << 20
#: Content of the target that exists before each failed write.
OLD = b"the previous, complete output\n"
#: Uid and gid of user ``nobody``.
NOBODY = 65534


def _mount(*args: str) -> subprocess.CompletedProcess:
    """Run ``mount ARGS``; a missing ``mount`` reads as a failure (rc 127)."""
    try:
        return subprocess.run(["mount", *args], capture_output=True, text=True)
    except FileNotFoundError as err:
        return subprocess.CompletedProcess(["mount", *args], 127, "", str(err))


@pytest.fixture
def small_disk(tmp_path: Path):
    """A fresh folder with a 4 MiB tmpfs mounted on it (root only), unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (the tests run as an ordinary user)")
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = _mount("-t", "tmpfs", "-o", f"size={DISK_BYTES},mode=0755", "tmpfs", str(disk))
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    assert free_bytes(disk) > NEARLY_FULL_BYTES  # empty, it does not count as full
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=False)


def free_bytes(folder: Path) -> int:
    """Bytes free for this user on the file system of ``folder``."""
    fs = os.statvfs(folder)
    return fs.f_bavail * fs.f_frsize


def fill(disk: Path, leave: int) -> None:
    """Write a filler file so that about ``leave`` bytes stay free on ``disk``."""
    (disk / "filler").write_bytes(bytes(max(free_bytes(disk) - leave, 0)))


def names(folder: Path) -> list[str]:
    """The names in ``folder``, hidden temporaries included, sorted."""
    return sorted(p.name for p in folder.iterdir())


def big_dataset() -> xr.Dataset:
    """A dataset of 12.8 MB (1.6 million float64 that do not compress), three times the small disk."""
    values = np.random.default_rng(0).random(1_600_000)
    return xr.Dataset({"temperature": ("cell", values)})


def exactly(path: Path, cause: str) -> str:
    """A pattern for the whole message of a write error on ``path`` that has no detail."""
    return f"^{re.escape(str(path))}: cannot write: {cause}$"


def assert_kept(target: Path, before: list[str]) -> None:
    """The target still holds :data:`OLD` and no temporary file is left beside it."""
    assert target.read_bytes() == OLD
    assert names(target.parent) == before


def test_netcdf_on_a_full_disk_names_no_space(small_disk: Path):
    """netCDF4 says only 'HDF error'; the error names the cause from the file system."""
    target = small_disk / "model.nc"
    target.write_bytes(OLD)
    with pytest.raises(CoemuWriteError, match="no space left on device") as info:
        write_netcdf_atomic(big_dataset(), target)
    assert str(info.value).startswith(f"{target}: cannot write: no space left on device")
    assert info.value.cause == "no space left on device"
    assert "HDF error" in str(info.value)  # the writer's own words kept as evidence
    assert_kept(target, ["model.nc"])
    assert free_bytes(small_disk) > DISK_BYTES // 2  # the temporary's space is given back


def test_json_and_plain_writes_on_a_full_disk_name_no_space(small_disk: Path):
    """ENOSPC from Python's own writes (errno set) gives the same error."""
    target = small_disk / "summary.json"
    target.write_bytes(OLD)
    with pytest.raises(CoemuWriteError, match=exactly(target, "no space left on device")):
        write_json_atomic({"values": list(range(1_000_000))}, target)  # about 11 MB of JSON
    assert_kept(target, ["summary.json"])
    with pytest.raises(CoemuWriteError, match="no space left on device"):
        with atomic_output(target) as tmp:
            tmp.write_bytes(bytes(2 * DISK_BYTES))
    assert_kept(target, ["summary.json"])


def test_errnoless_failure_on_a_full_disk_is_diagnosed(small_disk: Path):
    """A writer that hides the errno (as HDF5 does) on a full disk: the file system is asked."""
    target = small_disk / "table.md"
    target.write_bytes(OLD)
    with pytest.raises(CoemuWriteError, match="no space left on device") as info:
        with atomic_output(target) as tmp:
            with open(tmp, "wb") as f, pytest.raises(OSError):
                f.write(bytes(2 * DISK_BYTES))
                f.flush()
            raise RuntimeError("NetCDF: HDF error")
    assert isinstance(info.value.__cause__, RuntimeError)
    assert f"bytes free in {small_disk}" in str(info.value)
    assert_kept(target, ["table.md"])


def test_fits_refused_by_preallocation_names_no_space(small_disk: Path):
    """astropy (numpy's preallocation) refuses a too large FITS file before writing it, with
    an errno-less OSError on a disk that is not full: the cause is read from its words."""
    from astropy.io import fits

    from coemu.observe.fits import write_fits

    target = small_disk / "cube.fits"
    target.write_bytes(OLD)
    hdu = fits.PrimaryHDU(np.zeros((2000, 2000)))  # 32 MB: numpy preallocates above 16 MiB
    with pytest.raises(CoemuWriteError, match="no space left on device") as info:
        write_fits(hdu, target)
    assert str(info.value).startswith(f"{target}: cannot write: no space left on device")
    assert "Not enough" in str(info.value)  # astropy's own words kept as evidence
    assert_kept(target, ["cube.fits"])


def test_errno_in_the_chain_is_named(tmp_path: Path):
    """A writer that wraps an OSError (quota spent) in its own error: the errno is found."""
    import errno

    target = tmp_path / "model.pt"
    with pytest.raises(CoemuWriteError, match="^.*: cannot write: disk quota exceeded") as info:
        with atomic_output(target):
            try:
                raise OSError(errno.EDQUOT, "over quota")  # only the errno says it
            except OSError as err:
                raise RuntimeError("file write failed") from err
    assert info.value.path == str(target)
    assert names(tmp_path) == []


def test_other_failures_on_a_full_disk_pass_unchanged(small_disk: Path):
    """A bad-input error raised by the writer stays what it is, even on a full disk."""
    target = small_disk / "model.nc"
    fill(small_disk, leave=0)
    bad = CoemuInputError("in.nc", "temperature", "3 NaN values")
    with pytest.raises(CoemuInputError) as info:
        with atomic_output(target):
            raise bad
    assert info.value is bad
    assert names(small_disk) == ["filler"]


def test_other_failures_on_a_roomy_disk_pass_unchanged(tmp_path: Path):
    """An unrelated error where there is space and permission is re-raised as it was."""
    assert diagnose_folder(tmp_path) is None, "tmp_path must have room for this test"
    assert free_bytes(tmp_path) >= NEARLY_FULL_BYTES
    with pytest.raises(RuntimeError, match="^unrelated$"):
        with atomic_output(tmp_path / "x.txt") as tmp:
            tmp.write_text("partial")
            raise RuntimeError("unrelated")
    assert names(tmp_path) == []


def test_read_only_file_system_is_named(small_disk: Path):
    """Writes on a file system remounted read-only: the target kept, the cause named."""
    target = small_disk / "model.nc"
    target.write_bytes(OLD)
    remounted = _mount("-o", "remount,ro", str(small_disk))
    assert remounted.returncode == 0, remounted.stderr
    dataset = xr.Dataset({"temperature": ("cell", np.arange(4.0))})
    with pytest.raises(CoemuWriteError, match=exactly(target, "read-only file system")):
        write_netcdf_atomic(dataset, target)
    assert_kept(target, ["model.nc"])
    new = small_disk / "sub" / "split.json"  # its folder cannot be made either
    with pytest.raises(CoemuWriteError, match=exactly(new, "read-only file system")):
        write_json_atomic({}, new)
    assert diagnose_folder(small_disk) == (
        "read-only file system",
        f"{small_disk} is on a read-only file system",
    )


#: Writes ``{"a": 1}`` to argv[1] (as ``nobody`` when started as root) and prints
#: the error and the diagnosis of the folder.
WRITE_AS_USER = f"""
import os, sys
from coemu.io.atomic import diagnose_folder, write_json_atomic
from coemu.io.errors import CoemuWriteError
if os.geteuid() == 0:
    os.setgid({NOBODY})
    os.setuid({NOBODY})
target = sys.argv[1]
print(diagnose_folder(os.path.dirname(target)))
try:
    write_json_atomic({{"a": 1}}, target)
except CoemuWriteError as err:
    print(err)
    sys.exit(2)
"""


@pytest.fixture
def open_folder():
    """A fresh folder of mode 0o755 in the system's temporary folder, which ``nobody`` can reach
    (pytest's own ``/tmp/pytest-of-root`` is 0o700); removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="coemu-write-errors-"))
    folder.chmod(0o755)
    yield folder
    for path in sorted(folder.rglob("*"), reverse=True):
        path.chmod(0o700)
    shutil.rmtree(folder)


def test_permission_denied_is_named(open_folder: Path):
    """A folder without write permission (mode 0o500); root drops to ``nobody`` to feel it."""
    folder = open_folder / "locked"
    folder.mkdir()
    target = folder / "metrics.json"
    target.write_bytes(OLD)
    if os.geteuid() == 0:
        os.chown(folder, NOBODY, NOBODY)
    folder.chmod(0o500)
    command = [sys.executable, "-c", WRITE_AS_USER, str(target)]
    proc = subprocess.run(command, capture_output=True, text=True)
    if os.geteuid() != 0 and proc.returncode == 0:
        pytest.skip("this user writes into a folder of mode 0o500 (CAP_DAC_OVERRIDE?)")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    diagnosis, message = proc.stdout.splitlines()
    assert diagnosis == str(("permission denied", f"{folder} is not writable by this user"))
    assert message == f"{target}: cannot write: permission denied"
    assert_kept(target, ["metrics.json"])


def test_cli_on_a_full_disk_exits_2_with_the_cause(small_disk: Path):
    """``coemu hydro`` into a full disk: exit status 2, one line naming path and cause, no traceback."""
    target = small_disk / "m00001.nc"
    target.write_bytes(OLD)
    fill(small_disk, leave=16 * 1024)  # the model file is about 130 kB
    proc = run_cli("hydro", target, "--index", "1", "--n-base", "12", "--levels", "3", check=False)
    assert proc.returncode == 2, proc.stderr
    assert f"error: {target}: cannot write: no space left on device" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert_kept(target, ["filler", "m00001.nc"])


def test_write_error_pickles_whole():
    """Sent back from a Dask worker, the error keeps its type, parts and message."""
    err = CoemuWriteError("/scratch/out.nc", "no space left on device", "0 bytes free in /scratch")
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is CoemuWriteError
    assert (back.path, back.cause, back.detail, str(back)) == (err.path, err.cause, err.detail, str(err))
    assert str(back) == "/scratch/out.nc: cannot write: no space left on device (0 bytes free in /scratch)"
    assert isinstance(back, CoemuInputError)
