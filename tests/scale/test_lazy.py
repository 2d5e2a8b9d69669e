"""Lazy NetCDF reading: the same training data as the in-memory path, per-index reads, clear errors."""

import numpy as np
import pytest
import torch

from scidiff.data.datamodule import FieldDataModule, MeasurementDataModule
from scidiff.data.lazy import LazyFieldDataset, MeasurementDataset
from scidiff.data.netcdf import write_netcdf
from scidiff.data.synthetic import gaussian_random_field, make_grf_dataset
from scidiff.data.writers import NetCDFPredictionWriter
from scidiff.priors.posterior_task import PosteriorTask, masked_likelihood, masked_measurements


@pytest.fixture
def archive(tmp_path):
    write_netcdf(make_grf_dataset(n=20, res=8, seed=3), tmp_path / "grf.nc")
    return tmp_path / "grf.nc"


def test_lazy_matches_in_memory(archive):
    eager = FieldDataModule(str(archive), val_fraction=0.25, batch_size=5)
    lazy = FieldDataModule(str(archive), val_fraction=0.25, batch_size=5, lazy=True, chunk_size=4)
    eager.setup(), lazy.setup()
    assert lazy.event_shape == eager.event_shape == [1, 8, 8]
    torch.testing.assert_close(lazy.norm_mean, eager.norm_mean)
    torch.testing.assert_close(lazy.norm_std, eager.norm_std)
    a = torch.cat([b[0] if isinstance(b, list) else b for b in eager.train_dataloader()])
    b = torch.cat(list(lazy.train_dataloader()))
    # the same samples, standardised alike (the lazy split is read in file order, so compare as sets)
    key = lambda t: t.flatten(1).sum(1).sort().values  # noqa: E731
    torch.testing.assert_close(key(a), key(b), rtol=1e-5, atol=1e-5)
    assert lazy._data is None  # the archive was never loaded whole


def test_lazy_dataset_survives_pickling_and_reads_slices(archive):
    import pickle

    ds = LazyFieldDataset(archive, ["u"], indices=[3, 7])
    _ = ds[0]  # opens the file
    clone = pickle.loads(pickle.dumps(ds))  # what a DataLoader worker / spawned rank receives
    assert clone._ds is None
    torch.testing.assert_close(clone[1], ds[1])
    import xarray as xr

    torch.testing.assert_close(ds[1][0], torch.from_numpy(xr.open_dataset(archive)["u"].values[7]).float())


def test_clear_errors(tmp_path, archive):
    with pytest.raises(ValueError, match="lazy=True reads a file"):
        FieldDataModule(generate={"name": "grf", "n": 4, "res": 8}, lazy=True)
    with pytest.raises(IndexError, match="indices must lie in"):
        LazyFieldDataset(archive, ["u"], indices=[0, 20])
    with pytest.raises(KeyError, match="not in the dataset"):
        LazyFieldDataset(archive, ["v"])
    ds = make_grf_dataset(n=4, res=8)
    ds["u"][2, 0, 0] = np.nan
    write_netcdf(ds, tmp_path / "nan.nc")
    lazy = LazyFieldDataset(tmp_path / "nan.nc", ["u"])
    _ = lazy[1]
    with pytest.raises(ValueError, match="NaN/inf values among samples \\[2\\]"):
        lazy[2]
    with pytest.raises(ValueError, match="fields must have shape \\(N, 1, \\*dims\\)"):
        masked_measurements(torch.zeros(3, 2, 4, 4), 0.5, 0.1)
    with pytest.raises(ValueError, match="fraction must be in"):
        masked_measurements(torch.zeros(3, 1, 4, 4), 0.0, 0.1)
    with pytest.raises(ValueError, match="does not match its mask"):
        masked_likelihood(torch.zeros(1, 4, 4), torch.zeros(1, 4, 5), 0.1)
    with pytest.raises(ValueError, match="unknown sampler"):
        PosteriorTask("grf32", sampler="magic")
    with pytest.raises(FileNotFoundError, match="no per-measurement results"):
        NetCDFPredictionWriter(str(tmp_path / "empty"), merge="all.nc").merge_parts()
    with pytest.raises(KeyError, match="not in the dataset"):
        MeasurementDataset(archive, ["y"])


def test_measurement_items_carry_their_index(tmp_path):
    fields = gaussian_random_field(5, 4, generator=torch.Generator().manual_seed(0))
    write_netcdf(masked_measurements(fields, 0.5, 0.1, generator=torch.Generator().manual_seed(1)), tmp_path / "m.nc")
    dm = MeasurementDataModule(str(tmp_path / "m.nc"), batch_size=2)
    dm.setup()
    batches = list(dm.predict_dataloader())
    assert [b["index"].tolist() for b in batches] == [[0, 1], [2, 3], [4]]
    assert batches[0]["y"].shape == batches[0]["mask"].shape == (2, 1, 4, 4)
    m = dm.predict_set[3]
    assert ((m["y"] != 0) <= (m["mask"] > 0)).all()  # observed only where the mask is on


@pytest.mark.parametrize("consolidated", [False, True])
def test_lazy_reads_a_zarr_archive_like_netcdf(tmp_path, archive, consolidated):
    pytest.importorskip("zarr")
    import xarray as xr

    with xr.open_dataset(archive) as ds:
        ds.load().to_zarr(tmp_path / "grf.zarr", mode="w", consolidated=consolidated)
    nc = LazyFieldDataset(archive, ["u"], indices=[2, 5, 11])
    zarr_ds = LazyFieldDataset(tmp_path / "grf.zarr", ["u"], indices=[2, 5, 11])
    assert len(zarr_ds) == 3
    for i in range(3):
        torch.testing.assert_close(zarr_ds[i], nc[i])
    lazy = FieldDataModule(str(tmp_path / "grf.zarr"), val_fraction=0.25, batch_size=5, lazy=True, chunk_size=4)
    lazy.setup()
    eager = FieldDataModule(str(archive), val_fraction=0.25, batch_size=5)
    eager.setup()
    torch.testing.assert_close(lazy.norm_mean, eager.norm_mean)
    torch.testing.assert_close(lazy.norm_std, eager.norm_std)
