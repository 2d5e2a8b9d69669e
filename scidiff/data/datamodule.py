"""A LightningDataModule over xarray Datasets (NetCDF/Zarr on disk, in memory, or generated)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Sampler, TensorDataset


def dataset_to_tensor(
    ds, variables: list[str], sample_dim: str = "sample", units: dict[str, str] | None = None
) -> torch.Tensor:
    """Stack ``variables`` as channels: ``(N, C, *spatial)``, with clear errors for what cannot be stacked.

    ``units`` maps variables to the ``units`` attribute they must carry (CF conventions), so a file in other
    units is refused rather than trained on.
    """
    missing = [v for v in variables if v not in ds.data_vars]
    if missing:
        raise KeyError(f"variable(s) {missing} not in the dataset; it has {sorted(ds.data_vars)}")
    for name, expected in (units or {}).items():
        found = ds[name].attrs.get("units") if name in ds.variables else None
        if found is None:
            raise ValueError(f"variable {name!r} has no 'units' attribute; expected {expected!r}")
        if str(found) != expected:
            raise ValueError(f"variable {name!r} has units {found!r}; expected {expected!r}")
    dims = {v: ds[v].dims for v in variables}
    first = dims[variables[0]]
    if sample_dim not in first:
        raise ValueError(f"variable {variables[0]!r} has dims {first}; expected a {sample_dim!r} dimension")
    if any(d != first for d in dims.values()):
        raise ValueError(f"variables to stack as channels must share dims; got {dims}")
    arrays = [np.asarray(ds[v].transpose(sample_dim, ...).values, dtype=np.float32) for v in variables]
    data = torch.from_numpy(np.stack(arrays, axis=1))
    bad = ~torch.isfinite(data)
    if bad.any():
        per_var = {v: int(bad[:, i].sum()) for i, v in enumerate(variables) if bad[:, i].any()}
        raise ValueError(f"the dataset contains NaN/inf values: {per_var} (clean or mask them before training)")
    return data


class StepShuffle(Sampler[int]):
    """Shuffled indices whose order is a function of ``(seed, epoch)`` and that can resume mid-epoch.

    Epoch ``e`` visits ``randperm(n)`` drawn from ``seed + e``. ``__iter__`` asks ``position()`` for
    ``(epoch, batches already trained in it)`` and starts from that batch, so a run restored from a mid-epoch
    checkpoint sees exactly the batches an uninterrupted run would have seen next.
    """

    def __init__(self, n: int, batch_size: int, seed: int, position=lambda batches_per_epoch: (0, 0)):
        self.n, self.batch_size, self.seed, self.position = n, batch_size, seed, position
        self.batches_per_epoch = -(-n // batch_size)

    def order(self, epoch: int) -> torch.Tensor:
        return torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed + epoch))

    def __iter__(self):
        epoch, batch = self.position(self.batches_per_epoch)
        return iter(self.order(epoch)[batch * self.batch_size :].tolist())

    def __len__(self) -> int:
        return self.n


class FieldDataModule(pl.LightningDataModule):
    """Fields from an xarray Dataset as ``(N, C, *spatial)`` tensors, standardised per channel.

    Args:
        path: a NetCDF file (``.nc``) or Zarr store; or ``None`` with ``generate``.
        variables: data variables stacked as channels.
        generate: ``{"name": "grf", ...kwargs}`` to build the dataset in memory with a registered generator.
        val_fraction: share of samples held out (split with ``seed``).
        normalize: standardise each channel with the training split's mean and std; the statistics are
            copied into the prior at fit start, so samples come back in physical units.
        units: ``{variable: units}`` the file must declare (its ``units`` attributes), e.g. ``{"u": "m s-1"}``.
    """

    def __init__(
        self,
        path: str | None = None,
        variables: list[str] | None = None,
        generate: dict[str, Any] | None = None,
        sample_dim: str = "sample",
        val_fraction: float = 0.1,
        batch_size: int = 32,
        num_workers: int = 0,
        seed: int = 0,
        normalize: bool = True,
        units: dict[str, str] | None = None,
    ):
        super().__init__()
        self.save_hyperparameters()  # plain types: recorded in checkpoints as the data provenance
        if (path is None) == (generate is None):
            raise ValueError("give exactly one of `path` (a NetCDF/Zarr file) or `generate` (a generator spec)")
        if not 0 <= val_fraction < 1:
            raise ValueError(f"val_fraction must be in [0, 1); got {val_fraction}")
        self.path, self.generate_spec = path, dict(generate) if generate else None
        self.variables = list(variables or ["u"])
        self.sample_dim, self.val_fraction = sample_dim, val_fraction
        self.batch_size, self.num_workers, self.seed, self.normalize = batch_size, num_workers, seed, normalize
        self.units = dict(units) if units else None
        self._data: torch.Tensor | None = None
        self.norm_mean = self.norm_std = None

    def _load(self):
        import xarray as xr

        from .synthetic import generate

        if self.generate_spec is not None:
            spec = dict(self.generate_spec)
            return generate(spec.pop("name"), **spec)
        path = Path(self.path)
        if not path.exists():
            raise FileNotFoundError(f"no dataset at {path}")
        if path.suffix == ".zarr" or path.is_dir():
            return xr.open_zarr(path)
        return xr.open_dataset(path)

    @property
    def data(self) -> torch.Tensor:
        if self._data is None:
            ds = self._load()
            try:
                self._data = dataset_to_tensor(ds, self.variables, self.sample_dim, self.units)
            finally:
                ds.close()
        return self._data

    @property
    def event_shape(self) -> list[int]:
        """``[C, *spatial]`` of one sample: link it to the prior's ``shape``."""
        return list(self.data.shape[1:])

    def setup(self, stage: str | None = None) -> None:
        data = self.data
        n = data.shape[0]
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed))
        n_val = int(round(self.val_fraction * n))
        train, val = data[perm[n_val:]], data[perm[:n_val]]
        if len(train) == 0:
            raise ValueError(f"no training samples left: {n} samples with val_fraction={self.val_fraction}")
        reduce = [0, *range(2, data.ndim)]
        if self.normalize:
            self.norm_mean, self.norm_std = train.mean(reduce), train.std(reduce).clamp_min(1e-12)
        else:
            self.norm_mean, self.norm_std = torch.zeros(data.shape[1]), torch.ones(data.shape[1])
        shape = (1, -1, *([1] * (data.ndim - 2)))
        self.train_set = TensorDataset((train - self.norm_mean.reshape(shape)) / self.norm_std.reshape(shape))
        self.val_set = TensorDataset((val - self.norm_mean.reshape(shape)) / self.norm_std.reshape(shape))

    def _loader(self, dataset, shuffle: bool) -> DataLoader:
        g = torch.Generator().manual_seed(self.seed)
        return DataLoader(dataset, batch_size=self.batch_size, shuffle=shuffle, num_workers=self.num_workers, generator=g)

    def _position(self, batches_per_epoch: int) -> tuple[int, int]:
        """``(epoch, batches done in it)`` from the trainer's optimiser step (one process, no accumulation).

        Under several processes Lightning wraps the sampler to shard each epoch, and with gradient accumulation
        steps are not batches: there only whole epochs are reproduced (a mid-epoch resume restarts the epoch).
        """
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return 0, 0
        if trainer.world_size > 1 or trainer.accumulate_grad_batches != 1:
            return trainer.current_epoch, 0
        return divmod(trainer.global_step, batches_per_epoch)

    def train_dataloader(self):
        # The order depends on (seed, epoch, step) only: a resumed run continues the interrupted epoch.
        sampler = StepShuffle(len(self.train_set), self.batch_size, self.seed, self._position)
        g = torch.Generator().manual_seed(self.seed)  # worker seeds from here, not from the global RNG
        return DataLoader(self.train_set, batch_size=self.batch_size, sampler=sampler, num_workers=self.num_workers, generator=g)

    def val_dataloader(self):
        return self._loader(self.val_set, False) if len(self.val_set) else []

    def predict_dataloader(self):
        return self._loader(self.val_set if len(self.val_set) else self.train_set, False)
