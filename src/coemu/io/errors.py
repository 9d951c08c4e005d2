"""The one exception type for bad input, so that the CLI can report it cleanly."""

from __future__ import annotations

from pathlib import Path


class CoemuInputError(ValueError):
    """Bad input data or configuration.

    The message always names the file, the variable (where there is one) and
    what is wrong, e.g. ``model.nc: variable 'temperature': 3 NaN values``.
    """

    def __init__(self, path: str | Path | None, variable: str | None, problem: str):
        self.path = None if path is None else str(path)
        self.variable = variable
        self.problem = problem
        where = self.path if self.path is not None else "<input>"
        what = f"variable '{variable}': " if variable else ""
        super().__init__(f"{where}: {what}{problem}")

    def __reduce__(self):
        # pickled across processes (Dask workers): rebuild from the three parts, not the message
        return (type(self), (self.path, self.variable, self.problem))
