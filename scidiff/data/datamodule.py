"""A LightningDataModule over xarray Datasets (NetCDF/Zarr on disk, in memory, or generated)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from .lazy import LazyFieldDataset, MeasurementDataset, check_variables, open_archive


def dataset_to_tensor(
    ds, variables: list[str], sample_dim: str = "sample", units: dict[str, str] | None = None
) -> torch.Tensor:
    """Stack ``variables`` as channels: ``(N, C, *spatial)``, with clear errors for what cannot be stacked.

    ``units`` maps variables to the ``units`` attribute they must carry (CF conventions), so a file in other
    units is refused rather than trained on.
    """
    check_variables(ds, variables, sample_dim)
    check_units(ds, units)
    arrays = [np.asarray(ds[v].transpose(sample_dim, ...).values, dtype=np.float32) for v in variables]
    data = torch.from_numpy(np.stack(arrays, axis=1))
    bad = ~torch.isfinite(data)
    if bad.any():
        per_var = {v: int(bad[:, i].sum()) for i, v in enumerate(variables) if bad[:, i].any()}
        raise ValueError(f"the dataset contains NaN/inf values: {per_var} (clean or mask them before training)")
    return data


def check_units(ds, units: dict[str, str] | None) -> None:
    """Refuse variables whose ``units`` attribute is missing or differs from the declared one."""
    for name, expected in (units or {}).items():
        found = ds[name].attrs.get("units") if name in ds.variables else None
        if found is None:
            raise ValueError(f"variable {name!r} has no 'units' attribute; expected {expected!r}")
        if str(found) != expected:
            raise ValueError(f"variable {name!r} has units {found!r}; expected {expected!r}")


class EpochSampler(DistributedSampler):
    """A shuffling ``DistributedSampler`` driven by the trainer's progress, so runs resume exactly.

    Epoch ``e`` is ``randperm(n)`` drawn from ``seed + e`` on every rank; rank ``r`` takes positions ``r, r + N, ...``
    of it, so the global batch does not depend on the device count. The epoch is read from the trainer when
    iteration starts (Lightning's own ``set_epoch`` calls are off by one after resuming from a checkpoint written
    at the end of an epoch). In one process without gradient accumulation the position inside the epoch is the
    optimiser step, and iteration starts from the next untrained batch: a run restored from a mid-epoch checkpoint
    sees exactly the batches an uninterrupted run would have seen next. Under several processes (or with
    accumulation, where steps are not batches) a mid-epoch resume restarts the epoch.
    """

    def __init__(self, dataset, num_replicas: int, rank: int, *, seed: int, batch_size: int = 1, trainer=None):
        super().__init__(dataset, num_replicas, rank, shuffle=True, seed=seed)
        self.trainer, self.batch_size = trainer, batch_size

    def position(self) -> tuple[int, int]:
        """``(epoch, batches already trained in it)``."""
        trainer = self.trainer
        if trainer is None:
            return self.epoch, 0
        if trainer.world_size > 1 or trainer.accumulate_grad_batches != 1:
            return trainer.current_epoch, 0
        return divmod(trainer.global_step, -(-self.num_samples // self.batch_size))

    def __iter__(self):
        self.epoch, batch = self.position()
        return iter(list(super().__iter__())[batch * self.batch_size :])


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
        normalizer: ``(mean, std)`` per channel to use instead of the training split's: a prior continued from
            saved weights must see the data in the units it was trained in, even when the data's law has moved.
        lazy: read ``path`` one sample at a time (:class:`~scidiff.data.lazy.LazyFieldDataset`) instead of loading
            it: for archives larger than memory. The statistics are then computed in chunks of ``chunk_size``.

    Training batches are drawn by a ``DistributedSampler`` seeded with ``seed`` (one replica without DDP), so
    ``devices=N`` with ``batch_size=B`` visits the same global batches of ``N B`` samples as one process with
    ``batch_size=N B``; ``batch_size`` is per device, as in Lightning.
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
        lazy: bool = False,
        chunk_size: int = 256,
        normalizer: tuple[Sequence[float], Sequence[float]] | None = None,
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
        if lazy and path is None:
            raise ValueError("lazy=True reads a file: give `path` (generate the dataset with `scidiff datasets make`)")
        self.lazy, self.chunk_size = lazy, chunk_size
        self._data: torch.Tensor | None = None
        self.norm_mean = self.norm_std = None
        self.normalizer = None if normalizer is None else tuple(
            torch.as_tensor(v, dtype=torch.float32).reshape(-1) for v in normalizer)

    def _load(self):
        from .synthetic import generate

        if self.generate_spec is not None:
            spec = dict(self.generate_spec)
            return generate(spec.pop("name"), **spec)
        return open_archive(self.path)

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
        if self.lazy:
            return LazyFieldDataset(self.path, self.variables, self.sample_dim).event_shape
        return list(self.data.shape[1:])

    def _split(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed))
        n_val = int(round(self.val_fraction * n))
        if n - n_val == 0:
            raise ValueError(f"no training samples left: {n} samples with val_fraction={self.val_fraction}")
        return perm[n_val:], perm[:n_val]

    def _setup_lazy(self) -> None:
        if self.units:
            ds = open_archive(self.path)
            try:
                check_units(ds, self.units)
            finally:
                ds.close()
        full = LazyFieldDataset(self.path, self.variables, self.sample_dim)
        train_idx, val_idx = (i.sort().values.numpy() for i in self._split(len(full)))  # sorted: sequential reads
        c = full.event_shape[0]
        if self.normalize:
            self.norm_mean, self.norm_std = LazyFieldDataset(
                self.path, self.variables, self.sample_dim, train_idx).channel_stats(self.chunk_size)
        else:
            self.norm_mean, self.norm_std = torch.zeros(c), torch.ones(c)
        make = lambda idx: LazyFieldDataset(  # noqa: E731
            self.path, self.variables, self.sample_dim, idx, self.norm_mean, self.norm_std)
        self.train_set, self.val_set = make(train_idx), make(val_idx)

    def setup(self, stage: str | None = None) -> None:
        if self.lazy:
            self._setup_lazy()
            return
        data = self.data
        train_idx, val_idx = self._split(data.shape[0])
        train, val = data[train_idx], data[val_idx]
        self.norm_mean, self.norm_std = self._normalizer(train)
        shape = (1, -1, *([1] * (data.ndim - 2)))
        self.train_set = TensorDataset((train - self.norm_mean.reshape(shape)) / self.norm_std.reshape(shape))
        self.val_set = TensorDataset((val - self.norm_mean.reshape(shape)) / self.norm_std.reshape(shape))

    def _normalizer(self, train: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel ``(mean, std)`` of the training split (``(0, 1)`` with ``normalize=False``; ``normalizer`` if
        given)."""
        if self.normalizer is not None:
            return self.normalizer
        if not self.normalize:
            return torch.zeros(train.shape[1]), torch.ones(train.shape[1])
        reduce = [0, *range(2, train.ndim)]
        return train.mean(reduce), train.std(reduce).clamp_min(1e-12)

    def _loader(self, dataset, sampler=None) -> DataLoader:
        return DataLoader(dataset, batch_size=self.batch_size, sampler=sampler, num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0)

    def train_dataloader(self):
        # The same permutation (seed + epoch) on every rank; rank r takes positions r, r + N, ... of it, so the
        # global batch does not depend on the device count (Lightning calls set_epoch).
        trainer = getattr(self, "trainer", None)
        world, rank = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)
        sampler = EpochSampler(self.train_set, world, rank, seed=self.seed, batch_size=self.batch_size, trainer=trainer)
        return self._loader(self.train_set, sampler)

    def val_dataloader(self):
        return self._loader(self.val_set) if len(self.val_set) else []

    def predict_dataloader(self):
        return self._loader(self.val_set if len(self.val_set) else self.train_set)


class MeasurementDataModule(pl.LightningDataModule):
    """Measurement sets for ``predict``, read lazily from a NetCDF file (one item per ``sample_dim`` index).

    Lightning shards the items across ranks under DDP; each item carries its ``index`` in the file, so results
    are keyed by it (see :class:`~scidiff.data.writers.NetCDFPredictionWriter`).
    """

    def __init__(self, path: str, variables: list[str] | None = None, extra: list[str] | None = None,
                 sample_dim: str = "sample", batch_size: int = 1, num_workers: int = 0):
        super().__init__()
        self.save_hyperparameters()
        self.path, self.variables, self.extra = path, list(variables or ["y"]), list(extra if extra is not None else ["mask"])
        self.sample_dim, self.batch_size, self.num_workers = sample_dim, batch_size, num_workers

    def setup(self, stage: str | None = None) -> None:
        self.predict_set = MeasurementDataset(self.path, self.variables, self.sample_dim, extra=self.extra)

    def predict_dataloader(self):
        return DataLoader(self.predict_set, batch_size=self.batch_size, num_workers=self.num_workers)
