"""Hydro-model readers (netCDF, Magritte HDF5) and their errors on bad input."""

import h5py
import netCDF4
import numpy as np
import pytest

from coemu.constants import SPEED_OF_LIGHT
from coemu.hydro.readers import read_hydro_model
from coemu.io.errors import CoemuInputError


def test_netcdf_round_trip(model_nc, small_model):
    m = read_hydro_model(model_nc)
    assert m.name == "m00003" and m.n_points == small_model.n_points
    for name in ("position", "velocity", "temperature", "number_density_co"):
        np.testing.assert_allclose(getattr(m, name), getattr(small_model, name), rtol=1e-6)
    with netCDF4.Dataset(model_nc) as ds:
        assert ds["position"].dimensions == ("point", "xyz")
        assert ds["temperature"].units == "K"
        assert ds["number_density_co"].dtype == np.float32


def write_magritte(path, small_model, n_species=3):
    n = small_model.n_points
    abundance = np.zeros((n, n_species))
    abundance[:, 1] = small_model.number_density_co
    abundance[:, 0] = 1e12  # H2, ignored
    with h5py.File(path, "w") as f:
        f["geometry/points/position"] = small_model.position
        f["geometry/points/velocity"] = small_model.velocity / SPEED_OF_LIGHT
        f["thermodynamics/temperature/gas"] = small_model.temperature
        f["thermodynamics/turbulence/vturb2"] = np.full(n, 150.0**2)
        f["chemistry/species/abundance"] = abundance


def test_magritte_reader_converts_units_and_picks_co(tmp_path, small_model):
    path = tmp_path / "wind.hdf5"
    write_magritte(path, small_model)
    m = read_hydro_model(path)
    assert m.name == "wind"
    np.testing.assert_allclose(m.velocity, small_model.velocity, rtol=1e-12)
    np.testing.assert_allclose(m.number_density_co, small_model.number_density_co, rtol=1e-12)
    np.testing.assert_allclose(m.temperature, small_model.temperature, rtol=1e-12)


def test_magritte_missing_field_is_named(tmp_path, small_model):
    path = tmp_path / "wind.h5"
    write_magritte(path, small_model)
    with h5py.File(path, "a") as f:
        del f["thermodynamics/temperature/gas"]
    with pytest.raises(
        CoemuInputError, match=r"wind\.h5: variable 'thermodynamics/temperature/gas': missing"
    ):
        read_hydro_model(path)


def corrupt(path, variable, how):
    """Rewrite ``variable`` of a hydro netCDF file in a bad way."""
    with netCDF4.Dataset(path, "a") as ds:
        var = ds[variable]
        data = var[...]
        if how == "nan":
            data.flat[5] = np.nan
        elif how == "negative":
            data.flat[::7] = -1.0
        elif how == "zero":
            data.flat[3] = 0.0
        var[...] = data


@pytest.mark.parametrize(
    "variable, how, message",
    [
        ("temperature", "nan", r"variable 'temperature': 1 non-finite values \(1 NaN\)"),
        ("velocity", "nan", r"variable 'velocity': 1 non-finite values \(1 NaN\)"),
        ("temperature", "negative", r"variable 'temperature': \d+ non-positive temperatures"),
        ("temperature", "zero", r"variable 'temperature': 1 non-positive temperatures"),
        ("number_density_co", "negative", r"variable 'number_density_co': \d+ negative densities"),
    ],
)
def test_bad_values_are_reported_with_file_and_variable(model_nc, variable, how, message):
    corrupt(model_nc, variable, how)
    with pytest.raises(CoemuInputError, match=rf"m00003\.nc: {message}"):
        read_hydro_model(model_nc)


def test_missing_variable(tmp_path, small_model):
    from coemu.hydro.model import hydro_to_dataset

    path = tmp_path / "nodens.nc"
    hydro_to_dataset(small_model).drop_vars("number_density_co").to_netcdf(path)
    with pytest.raises(CoemuInputError, match=r"nodens\.nc: variable 'number_density_co': missing variable"):
        read_hydro_model(path)


def test_wrong_shape(tmp_path, small_model):
    import xarray as xr

    from coemu.hydro.model import hydro_to_dataset

    ds = hydro_to_dataset(small_model)
    ds["temperature"] = xr.Variable(("point", "xyz"), np.ones((small_model.n_points, 3), np.float32))
    path = tmp_path / "shape.nc"
    ds.to_netcdf(path)
    with pytest.raises(CoemuInputError, match=r"shape\.nc: variable 'temperature': wrong shape"):
        read_hydro_model(path)


def test_truncated_netcdf(model_nc):
    data = model_nc.read_bytes()
    model_nc.write_bytes(data[: len(data) // 2])
    with pytest.raises(CoemuInputError, match=r"m00003\.nc: .*(corrupt or truncated|unreadable)"):
        read_hydro_model(model_nc)


def test_not_netcdf_at_all(tmp_path):
    path = tmp_path / "junk.nc"
    path.write_text("this is not a netCDF file\n")
    with pytest.raises(CoemuInputError, match=r"junk\.nc: corrupt or truncated netCDF"):
        read_hydro_model(path)


def test_unknown_suffix_and_missing_file(tmp_path):
    with pytest.raises(CoemuInputError, match="unknown model format"):
        read_hydro_model(tmp_path / "model.vtk")
    with pytest.raises(CoemuInputError, match="file not found"):
        read_hydro_model(tmp_path / "absent.nc")
