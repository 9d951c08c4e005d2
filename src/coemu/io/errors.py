"""The one exception type for bad input, so that the CLI can report it cleanly."""

from __future__ import annotations

from pathlib import Path


class CoemuInputError(ValueError):
    """Bad input data or configuration.

    The message always names the file, the variable (where there is one) and
    what is wrong, e.g. ``model.nc: variable 'temperature': 3 NaN values``; for
    settings ``kind`` is ``config key``: ``x.yaml: config key 'cubes.grid': ...``.
    """

    def __init__(self, path: str | Path | None, variable: str | None, problem: str, kind: str = "variable"):
        self.path = None if path is None else str(path)
        self.variable = variable
        self.problem = problem
        self.kind = kind
        where = self.path if self.path is not None else "<input>"
        what = f"{kind} '{variable}': " if variable else ""
        super().__init__(f"{where}: {what}{problem}")

    def __reduce__(self):
        # pickled across processes (Dask workers): rebuild from the parts, not the message
        return (type(self), (self.path, self.variable, self.problem, self.kind))


class CoemuWriteError(CoemuInputError):
    """An output could not be written, with the cause in words.

    ``cause`` is one of ``no space left on device``, ``disk quota exceeded``,
    ``permission denied``, ``read-only file system``; ``detail`` gives the evidence,
    e.g. ``out.nc: cannot write: no space left on device (0 bytes free in /scratch;
    the writer said RuntimeError: NetCDF: HDF error)``. A subclass of
    :class:`CoemuInputError`, so that the CLI reports it as ``error: ...`` with exit status 2.
    """

    def __init__(self, path: str | Path, cause: str, detail: str = ""):
        self.cause = cause
        self.detail = detail
        problem = f"cannot write: {cause}" + (f" ({detail})" if detail else "")
        super().__init__(path, None, problem, kind="output")

    def __reduce__(self):
        return (type(self), (self.path, self.cause, self.detail))
