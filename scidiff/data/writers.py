"""Lightning prediction writers: each prediction batch becomes one NetCDF file, written atomically."""

from __future__ import annotations

from pathlib import Path

from pytorch_lightning.callbacks import BasePredictionWriter

from .netcdf import write_netcdf


class NetCDFPredictionWriter(BasePredictionWriter):
    """Write ``predict_step`` outputs to ``<output_dir>/<prefix>_<rank>_<batch>.nc`` as they are produced.

    A batch whose file already exists is a finished result and is kept as is, so an interrupted ``predict``
    rerun with the same output folder writes each result exactly once (partial files never carry the final name).
    """

    def __init__(self, output_dir: str = "predictions", prefix: str = "pred"):
        super().__init__(write_interval="batch")
        self.output_dir, self.prefix = Path(output_dir), prefix

    def path_for(self, rank: int, batch_idx: int, dataloader_idx: int = 0) -> Path:
        return self.output_dir / f"{self.prefix}_{dataloader_idx}_{rank}_{batch_idx:06d}.nc"

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx=0):
        from ..inverse.posterior import Posterior

        path = self.path_for(trainer.global_rank, batch_idx, dataloader_idx)
        if path.exists():
            return
        result = prediction if isinstance(prediction, Posterior) else Posterior(prediction.detach().cpu())
        ds = result.to_xarray()
        ds.attrs.update({"batch_idx": batch_idx, "rank": trainer.global_rank})
        write_netcdf(ds, path)
