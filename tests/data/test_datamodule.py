import numpy as np
import pytest
import torch
import xarray as xr

from scidiff.data.datamodule import FieldDataModule
from scidiff.data.netcdf import write_netcdf
from scidiff.data.synthetic import gaussian_random_field, grf_covariance, make_grf_dataset


def test_grf_has_its_exact_covariance():
    x = gaussian_random_field(20000, 8, generator=torch.Generator().manual_seed(0)).reshape(20000, -1).double()
    assert (torch.cov(x.T) - grf_covariance(8)).abs().max() < 0.05


def test_netcdf_roundtrip_keeps_coords_and_attrs(tmp_path):
    ds = make_grf_dataset(n=10, res=8, seed=1)
    write_netcdf(ds, tmp_path / "grf.nc")
    back = xr.open_dataset(tmp_path / "grf.nc")
    assert back["u"].dims == ("sample", "y", "x") and back["x"].attrs["units"] == "1"
    assert back.attrs["seed"] == 1 and np.allclose(back["u"].values, ds["u"].values)
    dm = FieldDataModule(str(tmp_path / "grf.nc"), val_fraction=0.2)
    dm.setup()
    assert dm.event_shape == [1, 8, 8] and len(dm.train_set) == 8 and len(dm.val_set) == 2
    batch = torch.cat([b[0] for b in dm.train_dataloader()])
    assert batch.mean().abs() < 1e-5 and (batch.std() - 1).abs() < 0.05  # standardised with train statistics


def test_clear_errors(tmp_path):
    ds = make_grf_dataset(n=4, res=8)
    write_netcdf(ds, tmp_path / "a.nc")
    with pytest.raises(KeyError, match="not in the dataset"):
        FieldDataModule(str(tmp_path / "a.nc"), variables=["v"]).setup()
    ds["u"][0, 0, 0] = np.nan
    write_netcdf(ds, tmp_path / "nan.nc")
    with pytest.raises(ValueError, match="NaN"):
        FieldDataModule(str(tmp_path / "nan.nc")).setup()
    ds2 = make_grf_dataset(n=4, res=8).rename({"sample": "member"})
    write_netcdf(ds2, tmp_path / "dims.nc")
    with pytest.raises(ValueError, match="expected a 'sample' dimension"):
        FieldDataModule(str(tmp_path / "dims.nc")).setup()
    with pytest.raises(ValueError, match="exactly one of"):
        FieldDataModule()
    with pytest.raises(FileNotFoundError):
        FieldDataModule(str(tmp_path / "missing.nc")).setup()
