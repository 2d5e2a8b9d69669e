"""Lightning prediction writers: results become NetCDF files, written atomically, exactly once.

Two kinds of prediction are understood:

* a tensor or :class:`~scidiff.inverse.Posterior` per batch (``DiffusionPrior.predict_step``): one file per
  batch, ``<prefix>_<dataloader>_<rank>_<batch>.nc``;
* a list of ``(index, Posterior)`` pairs, one per measurement (``PosteriorTask.predict_step``): one file per
  measurement, ``<prefix>_<index>.nc``, whatever rank computed it. With ``merge=`` rank 0 joins them into a
  single NetCDF along a ``measurement`` dimension once every rank has finished.

A file under its final name is always complete (:func:`scidiff._files.atomic_path`), so after a crash the
finished results are exactly the files present; a rerun skips them (``done_indices``), computes the rest and
writes each result once.
"""

from __future__ import annotations

import re
from pathlib import Path

from pytorch_lightning.callbacks import BasePredictionWriter

from .netcdf import write_netcdf


class NetCDFPredictionWriter(BasePredictionWriter):
    """Write ``predict_step`` outputs under ``output_dir`` as they are produced (see module docs).

    Args:
        output_dir: folder of the result files (created when needed).
        prefix: file name prefix.
        merge: file name (in ``output_dir``) of the merged per-measurement results; ``None`` keeps one file per
            measurement only.
        keep_parts: keep the per-measurement files after merging (they are what a rerun resumes from).
    """

    def __init__(self, output_dir: str = "predictions", prefix: str = "pred", merge: str | None = None,
                 keep_parts: bool = True):
        super().__init__(write_interval="batch")
        self.output_dir, self.prefix, self.merge, self.keep_parts = Path(output_dir), prefix, merge, keep_parts
        self.written: list[Path] = []  # files this process wrote (for reports and tests)

    # --- per batch ----------------------------------------------------------------------------
    def path_for(self, rank: int, batch_idx: int, dataloader_idx: int = 0) -> Path:
        return self.output_dir / f"{self.prefix}_{dataloader_idx}_{rank}_{batch_idx:06d}.nc"

    # --- per measurement ----------------------------------------------------------------------
    def path_for_index(self, index: int) -> Path:
        return self.output_dir / f"{self.prefix}_{int(index):06d}.nc"

    def done_indices(self) -> set[int]:
        """Measurements whose result file exists (complete by construction)."""
        pattern = re.compile(rf"{re.escape(self.prefix)}_(\d+)\.nc")
        if not self.output_dir.exists():
            return set()
        return {int(m.group(1)) for p in self.output_dir.iterdir() if (m := pattern.fullmatch(p.name))}

    def _write(self, ds, path: Path) -> None:
        if path.exists():  # a finished result: never rewritten
            return
        write_netcdf(ds, path)
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
        # Temporary files of a killed run carry no result (atomic_path names them ".<name>.*.part"): drop them
        # before anyone writes.
        if trainer.is_global_zero and self.output_dir.exists():
            for stale in self.output_dir.glob(f".{self.prefix}_*.part"):
                stale.unlink(missing_ok=True)
        trainer.strategy.barrier("scidiff-clean")

    def on_predict_end(self, trainer, pl_module) -> None:
        if self.merge is None:
            return
        trainer.strategy.barrier("scidiff-merge")  # every rank's files are renamed into place before the merge
        if trainer.is_global_zero:
            self.merge_parts()
        trainer.strategy.barrier("scidiff-merged")

    def merge_parts(self) -> Path:
        """Join the per-measurement files into ``output_dir / merge`` (sorted by index), atomically."""
        import xarray as xr

        indices = sorted(self.done_indices())
        if not indices:
            raise FileNotFoundError(f"no per-measurement results '{self.prefix}_<index>.nc' in {self.output_dir}")
        parts = []
        for i in indices:
            with xr.open_dataset(self.path_for_index(i), engine="h5netcdf") as ds:
                parts.append(ds.load())
        merged = xr.concat(parts, dim="measurement", combine_attrs="drop_conflicts")
        merged = merged.assign_coords(measurement=indices)
        path = write_netcdf(merged, self.output_dir / self.merge)
        if not self.keep_parts:
            for i in indices:
                self.path_for_index(i).unlink()
        return path
