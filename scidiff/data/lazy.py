"""Datasets that read NetCDF archives (or Zarr stores) one sample at a time, for archives larger than memory.

The file is opened lazily in each process that reads it (DataLoader workers, DDP ranks): an open HDF5 handle
is never pickled. ``xarray.open_dataset`` without dask keeps variables as lazily indexed arrays, so
``isel(sample=i)`` reads just that slice from disk. Which indices a rank reads is the sampler's business
(``DistributedSampler``), so every rank opens the same file and touches only its shard.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset


def open_archive(path: str | Path):
    """Open a NetCDF file (h5netcdf) or Zarr store lazily: nothing is read until values are asked for."""
    import xarray as xr

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no dataset at {path}")
    if path.suffix == ".zarr" or path.is_dir():
        # consolidated metadata (one read) when the store has it, else the per-array metadata, without a warning
        return xr.open_zarr(path, chunks=None, consolidated=_consolidated(path))
    return xr.open_dataset(path, engine="h5netcdf", cache=False)


def _consolidated(path: Path) -> bool:
    """Whether a Zarr store carries consolidated metadata (v2: ``.zmetadata``; v3: a key of the root ``zarr.json``)."""
    import json

    if (path / ".zmetadata").exists():
        return True
    root = path / "zarr.json"
    return root.exists() and json.loads(root.read_text()).get("consolidated_metadata") is not None


def check_variables(ds, variables: Sequence[str], sample_dim: str) -> None:
    """Clear errors for variables that are missing or cannot be stacked as channels along ``sample_dim``."""
    missing = [v for v in variables if v not in ds.data_vars]
    if missing:
        raise KeyError(f"variable(s) {missing} not in the dataset; it has {sorted(ds.data_vars)}")
    dims = {v: ds[v].dims for v in variables}
    first = dims[variables[0]]
    if sample_dim not in first:
        raise ValueError(f"variable {variables[0]!r} has dims {first}; expected a {sample_dim!r} dimension")
    if any(d != first for d in dims.values()):
        raise ValueError(f"variables to stack as channels must share dims; got {dims}")


class _LazyArchive(Dataset):
    """Shared plumbing: the path, the lazily opened handle (per process), and per-index reads."""

    def __init__(self, path: str | Path, variables: Sequence[str], sample_dim: str = "sample",
                 indices: Sequence[int] | None = None):
        self.path, self.variables, self.sample_dim = Path(path), list(variables), sample_dim
        ds = open_archive(self.path)
        try:
            check_variables(ds, self.variables, sample_dim)
            n = ds.sizes[sample_dim]
            self.event_shape = [len(self.variables), *(ds.sizes[d] for d in ds[self.variables[0]].dims if d != sample_dim)]
        finally:
            ds.close()
        self.indices = np.arange(n) if indices is None else np.asarray(indices, dtype=np.int64)
        if len(self.indices) and (self.indices.min() < 0 or self.indices.max() >= n):
            raise IndexError(f"indices must lie in [0, {n}); got min {self.indices.min()}, max {self.indices.max()}")
        self._ds = None

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_ds"] = None  # each worker/rank opens its own handle
        return state

    def __len__(self) -> int:
        return len(self.indices)

    def read(self, positions: Sequence[int] | slice, variables: Sequence[str] | None = None) -> Tensor:
        """Samples at ``positions`` (into ``indices``) as float32 ``(n, C, *spatial)``, one channel per variable
        (``self.variables`` by default); checks NaN/inf."""
        if self._ds is None:
            self._ds = open_archive(self.path)
        idx = self.indices[positions]
        arrays = [np.asarray(self._ds[v].isel({self.sample_dim: idx}).transpose(self.sample_dim, ...).values,
                             dtype=np.float32) for v in (variables or self.variables)]
        data = torch.from_numpy(np.stack(arrays, axis=1))
        if not torch.isfinite(data).all():
            raise ValueError(f"{self.path} holds NaN/inf values among samples {idx.tolist()[:8]} (clean or mask them)")
        return data


class LazyFieldDataset(_LazyArchive):
    """Standardised fields ``(C, *spatial)`` read from disk per index; ``mean``/``std`` are per channel."""

    def __init__(self, path, variables, sample_dim="sample", indices=None, mean: Tensor | None = None,
                 std: Tensor | None = None):
        super().__init__(path, variables, sample_dim, indices)
        c, k = self.event_shape[0], len(self.event_shape) - 1
        self.mean = (torch.zeros(c) if mean is None else torch.as_tensor(mean, dtype=torch.float32)).reshape(-1, *[1] * k)
        self.std = (torch.ones(c) if std is None else torch.as_tensor(std, dtype=torch.float32)).reshape(-1, *[1] * k)

    def __getitem__(self, i: int) -> Tensor:
        return (self.read([i])[0] - self.mean) / self.std

    def channel_stats(self, chunk_size: int = 256) -> tuple[Tensor, Tensor]:
        """Per-channel mean and std over this dataset, reading ``chunk_size`` samples at a time (float64 sums)."""
        total = sq = None
        count = 0
        for start in range(0, len(self), chunk_size):
            x = self.read(slice(start, start + chunk_size)).double()
            x = x.transpose(0, 1).reshape(x.shape[1], -1)
            total = x.sum(1) if total is None else total + x.sum(1)
            sq = x.pow(2).sum(1) if sq is None else sq + x.pow(2).sum(1)
            count += x.shape[1]
        mean = total / count
        var = (sq - count * mean**2) / max(count - 1, 1)  # unbiased, as torch.std
        return mean.float(), var.clamp_min(0).sqrt().float().clamp_min(1e-12)


class MeasurementDataset(_LazyArchive):
    """One measurement set per index: ``{"index": i, "y": (C, *dims)}`` plus any ``extra`` variables by name.

    As for fields, the ``variables`` are the channels of ``y``; each ``extra`` variable comes as ``(1, *dims)``.

    ``index`` is the position in the archive, so results can be keyed by it whatever rank or batch
    computed them.
    """

    def __init__(self, path, variables: Sequence[str] = ("y",), sample_dim: str = "sample",
                 indices=None, extra: Sequence[str] = ()):
        super().__init__(path, variables, sample_dim, indices)
        self.extra = list(extra)
        if self.extra:
            ds = open_archive(self.path)
            try:
                check_variables(ds, self.extra, sample_dim)
            finally:
                ds.close()

    def __getitem__(self, i: int) -> dict:
        item = {"index": int(self.indices[i]), "y": self.read([i])[0]}
        for v in self.extra:
            item[v] = self.read([i], [v])[0]
        return item
