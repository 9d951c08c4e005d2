"""File formats of the pipeline: errors, atomic writes, netCDF contracts."""

from coemu.io.atomic import atomic_output, write_json_atomic, write_netcdf_atomic
from coemu.io.errors import CoemuInputError

__all__ = [
    "CoemuInputError",
    "atomic_output",
    "write_json_atomic",
    "write_netcdf_atomic",
]
