"""Lightning prediction writers: results become NetCDF files or Zarr groups, written atomically, exactly once.

Two kinds of prediction are understood:

* a tensor or :class:`~scidiff.inverse.Posterior` per batch (``DiffusionPrior.predict_step``): one part per
  batch, ``<prefix>_<dataloader>_<rank>_<batch>``;
* a list of ``(index, Posterior)`` pairs, one per measurement (``PosteriorTask.predict_step``): one part per
  measurement, ``<prefix>_<index>``, whatever rank computed it. Once every rank has finished, rank 0 joins them
  along a ``measurement`` dimension into one NetCDF file or into the root of one Zarr store.

A part under its final name is always complete: it is written under a temporary name and renamed when done
(:func:`scidiff._files.atomic_path` for files, :func:`scidiff._files.atomic_dir` for Zarr groups). So after a crash the
finished results are exactly the parts present; a rerun skips them (``done_indices``), computes the rest and
writes each result once. Both writers share this logic (:class:`PartsPredictionWriter`); they differ only in
how one part is stored and read and where the merged result goes.
"""

from __future__ import annotations

import os
import re
import shutil
import warnings
from pathlib import Path

from pytorch_lightning.callbacks import BasePredictionWriter

from .._files import atomic_dir
from .netcdf import write_netcdf


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


class PartsPredictionWriter(BasePredictionWriter):
    """The shared logic: one atomically written part per result in ``parts_dir``, resume, merge on rank 0.

    Subclasses say how a part is stored (``_dump``), read (``_load``) and where the merged result goes
    (``_dump_merged``); ``suffix`` ends every part's name.
    """

    suffix = ""

    def __init__(self, parts_dir: str | Path, prefix: str = "pred", merge: bool = True, keep_parts: bool = True):
        super().__init__(write_interval="batch")
        self.parts_dir, self.prefix, self.keep_parts = Path(parts_dir), prefix, keep_parts
        self.merging = bool(merge)
        self.written: list[Path] = []  # parts this process wrote (for reports and tests)

    # --- names --------------------------------------------------------------------------------
    def path_for(self, rank: int, batch_idx: int, dataloader_idx: int = 0) -> Path:
        return self.parts_dir / f"{self.prefix}_{dataloader_idx}_{rank}_{batch_idx:06d}{self.suffix}"

    def path_for_index(self, index: int) -> Path:
        return self.parts_dir / f"{self.prefix}_{int(index):06d}{self.suffix}"

    def done_indices(self) -> set[int]:
        """Measurements whose part exists under its final name (complete by construction)."""
        pattern = re.compile(rf"{re.escape(self.prefix)}_(\d+){re.escape(self.suffix)}")
        if not self.parts_dir.exists():
            return set()
        return {int(m.group(1)) for p in self.parts_dir.iterdir() if (m := pattern.fullmatch(p.name))}

    # --- storage (per format) -----------------------------------------------------------------
    def _prepare(self) -> None:
        """Rank 0, before anyone writes: make the containers the parts go into."""
        self.parts_dir.mkdir(parents=True, exist_ok=True)

    def _dump(self, ds, path: Path) -> None:
        raise NotImplementedError

    def _load(self, path: Path):
        raise NotImplementedError

    def _dump_merged(self, merged) -> Path:
        raise NotImplementedError

    # --- Lightning hooks ----------------------------------------------------------------------
    def _write(self, ds, path: Path) -> None:
        if path.exists():  # a finished result: never rewritten
            return
        self._dump(ds, path)
        self.written.append(path)

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx=0):
        from ..inverse.posterior import Posterior

        if isinstance(prediction, list):
            for index, posterior in prediction:
                ds = posterior.to_xarray()
                ds.attrs.update({"index": int(index), "rank": trainer.global_rank})
                self._write(ds, self.path_for_index(index))
            return
        result = prediction if isinstance(prediction, Posterior) else Posterior(prediction.detach().cpu())
        ds = result.to_xarray()
        ds.attrs.update({"batch_idx": batch_idx, "rank": trainer.global_rank})
        self._write(ds, self.path_for(trainer.global_rank, batch_idx, dataloader_idx))

    def on_predict_start(self, trainer, pl_module) -> None:
        # Temporary parts of a killed run carry no result (they are named ".<name>.*.part"): drop them before
        # anyone writes.
        if trainer.is_global_zero:
            self._prepare()
            for stale in self.parts_dir.glob(f".{self.prefix}_*.part"):
                _remove(stale)
        trainer.strategy.barrier("scidiff-clean")

    def on_predict_end(self, trainer, pl_module) -> None:
        if not self.merging:
            return
        trainer.strategy.barrier("scidiff-merge")  # every rank's parts are renamed into place before the merge
        if trainer.is_global_zero:
            self.merge_parts()
        trainer.strategy.barrier("scidiff-merged")

    def merge_parts(self) -> Path:
        """Join the per-measurement parts (sorted by index) along ``measurement`` and store the result."""
        import xarray as xr

        indices = sorted(self.done_indices())
        if not indices:
            raise FileNotFoundError(f"no per-measurement results '{self.prefix}_<index>{self.suffix}' in "
                                    f"{self.parts_dir}")
        parts = [self._load(self.path_for_index(i)) for i in indices]
        merged = xr.concat(parts, dim="measurement", combine_attrs="drop_conflicts")
        path = self._dump_merged(merged.assign_coords(measurement=indices))
        if not self.keep_parts:
            for i in indices:
                _remove(self.path_for_index(i))
        return path


class NetCDFPredictionWriter(PartsPredictionWriter):
    """Write ``predict_step`` outputs as NetCDF files under ``output_dir`` (see module docs).

    Args:
        output_dir: folder of the result files (created when needed).
        prefix: file name prefix.
        merge: file name (in ``output_dir``) of the merged per-measurement results; ``None`` keeps one file per
            measurement only.
        keep_parts: keep the per-measurement files after merging (they are what a rerun resumes from).
    """

    suffix = ".nc"

    def __init__(self, output_dir: str = "predictions", prefix: str = "pred", merge: str | None = None,
                 keep_parts: bool = True):
        super().__init__(output_dir, prefix, merge is not None, keep_parts)
        self.output_dir, self.merge = self.parts_dir, merge

    def _dump(self, ds, path: Path) -> None:
        write_netcdf(ds, path)

    def _load(self, path: Path):
        import xarray as xr

        with xr.open_dataset(path, engine="h5netcdf") as ds:
            return ds.load()

    def _dump_merged(self, merged) -> Path:
        return write_netcdf(merged, self.output_dir / self.merge)


class ZarrPredictionWriter(PartsPredictionWriter):
    """Write ``predict_step`` outputs into one Zarr store (needs the ``zarr`` extra: ``pip install scidiff[zarr]``).

    Layout of ``store``: each result is a group ``parts/<prefix>_<index>`` (written to a temporary group and
    renamed when complete, so a rerun resumes from them); with ``merge=True`` rank 0 then writes the joined
    results at the root of the store, with a ``measurement`` dimension: ``xarray.open_zarr(store)`` reads them.
    Ranks write into their own groups, so they never touch the same chunk. The store must be on a file system
    that every rank sees (a local path or a shared one: the atomic rename needs a POSIX file system).

    Args:
        store: path of the Zarr store (a folder, created when needed).
        prefix: name prefix of the per-result groups.
        merge: join the per-measurement groups at the root of the store once every rank has finished.
        keep_parts: keep the per-measurement groups after merging (they are what a rerun resumes from).
    """

    def __init__(self, store: str = "predictions.zarr", prefix: str = "pred", merge: bool = True,
                 keep_parts: bool = True):
        try:
            import zarr  # noqa: F401
        except ImportError as err:
            raise ImportError("ZarrPredictionWriter needs the 'zarr' package: pip install 'scidiff[zarr]'") from err
        self.store = Path(store)
        super().__init__(self.store / "parts", prefix, merge, keep_parts)

    def _prepare(self) -> None:
        import zarr

        zarr.open_group(self.store, mode="a")  # the root and parts/ are groups, so the hierarchy is readable
        zarr.open_group(self.parts_dir, mode="a")

    def _dump(self, ds, path: Path) -> None:
        with atomic_dir(path) as tmp:
            ds.to_zarr(tmp, mode="w", consolidated=False)

    def _load(self, path: Path):
        import xarray as xr

        with xr.open_zarr(path, consolidated=False) as ds:
            return ds.load()

    def _dump_merged(self, merged) -> Path:
        import zarr

        root = zarr.open_group(self.store, mode="a")
        for name in list(root.array_keys()):  # a previous merge (or an interrupted one) is replaced whole
            del root[name]
        with warnings.catch_warnings():
            # Consolidated metadata (one read to open the store) is a Zarr v2 feature that zarr-python also
            # keeps for v3 stores, with a warning that other implementations may ignore it.
            warnings.filterwarnings("ignore", message="Consolidated metadata", category=UserWarning)
            merged.to_zarr(self.store, mode="a", consolidated=True)
        return self.store
