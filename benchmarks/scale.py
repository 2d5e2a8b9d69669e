"""Scale-out throughput: DDP training and distributed predict vs process count (CPU), samplers on a GPU.

1. CPU, gloo: DDP training of a small UNet prior with ``devices`` = 1, 2, ... (batch per device fixed, so the
   global batch grows): seconds per optimiser step and images/s, ratio against 1 process. Timed from the
   second step on (start-up and the first step excluded).
2. CPU, gloo: ``trainer.predict`` of a PosteriorTask (DPS) over a set of measurements with 1, 2, ... processes:
   the wall time with start-up (spawning, imports) and the predict loop alone; measurements/s of the loop and
   the ratio against 1 process.
3. GPU (when ``torch.cuda.is_available()``): ``benchmarks/gpu_check.py``: samples/s, peak memory and host syncs
   of every sampler and kernel on a 64^2 and a 128^2 UNet prior (random weights: speed only), fp32, bf16
   autocast and torch.compile, with the speedup over the same sampler on the CPU, both measured here.

Usage (repository root): PYTHONPATH=. python benchmarks/scale.py [--procs 1 2] [--res 16] [--steps 20]
    [--measurements 8] [--gpu-batch 16] [--gpu-steps 32] [--threads 1] [--tables train predict gpu]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import pytorch_lightning as pl
import torch

from scidiff.data.datamodule import FieldDataModule, MeasurementDataModule
from scidiff.data.netcdf import write_netcdf
from scidiff.data.synthetic import gaussian_random_field, make_grf_dataset
from scidiff.data.writers import NetCDFPredictionWriter
from scidiff.priors import DiffusionPrior
from scidiff.priors.posterior_task import PosteriorTask, masked_measurements

UNET = {"base_channels": 16, "channel_mults": [1, 2, 2], "num_res_blocks": 1}


class StepTimer(pl.Callback):
    """Wall time from the end of the first step to the end of the last (rank 0 writes it)."""

    def __init__(self, path: str):
        self.path, self.t0 = path, None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == 1:
            self.t0 = time.perf_counter()

    def on_train_end(self, trainer, pl_module):
        if trainer.is_global_zero:
            Path(self.path).write_text(f"{time.perf_counter() - self.t0} {trainer.global_step - 1}")


class PredictTimer(pl.Callback):
    """Wall time of the predict loop once every rank is up (rank 0 writes it after the last rank is done)."""

    def __init__(self, path: str):
        self.path, self.t0 = path, None

    def on_predict_start(self, trainer, pl_module):
        trainer.strategy.barrier("timer-start")
        self.t0 = time.perf_counter()

    def on_predict_end(self, trainer, pl_module):
        trainer.strategy.barrier("timer-end")
        if trainer.is_global_zero:
            Path(self.path).write_text(str(time.perf_counter() - self.t0))


def _trainer(devices: int, **kwargs) -> pl.Trainer:
    return pl.Trainer(accelerator="cpu", devices=devices, strategy="ddp_spawn" if devices > 1 else "auto",
                      logger=False, enable_progress_bar=False, enable_model_summary=False, **kwargs)


def training_table(procs, res: int, steps: int, batch: int, tmp: Path) -> None:
    archive = tmp / "train.nc"
    write_netcdf(make_grf_dataset(n=batch * max(procs) * steps, res=res, seed=0), archive)
    print(f"\n### DDP training, UNet prior on {res}^2 GRF fields, batch {batch} per process, {steps} steps (CPU, gloo)\n")
    print("| processes | global batch | s / step | images / s | images/s ÷ 1 process |")
    print("|---|---|---|---|---|")
    base = None
    for n in procs:
        pl.seed_everything(0, verbose=False)
        out = tmp / f"timer{n}"
        prior = DiffusionPrior([1, res, res], network_kwargs=UNET)
        dm = FieldDataModule(str(archive), lazy=True, batch_size=batch, val_fraction=0.0)
        _trainer(n, max_steps=steps, enable_checkpointing=False, callbacks=[StepTimer(str(out))],
                 num_sanity_val_steps=0).fit(prior, dm)
        wall, timed = (float(v) for v in out.read_text().split())
        rate = timed * batch * n / wall
        base = base or rate
        print(f"| {n} | {batch * n} | {wall / timed:.3f} | {rate:.1f} | {rate / base:.2f} |")


def predict_table(procs, res: int, measurements: int, tmp: Path) -> None:
    prior = DiffusionPrior([1, res, res], network_kwargs=UNET, ema_decay=0)
    path = prior.export(tmp / "prior.safetensors")
    fields = gaussian_random_field(measurements, res, generator=torch.Generator().manual_seed(1))
    meas = tmp / "meas.nc"
    write_netcdf(masked_measurements(fields, 0.2, 0.1, generator=torch.Generator().manual_seed(2)), meas)
    print(f"\n### Distributed predict: DPS (4 samples, 20 steps) on {measurements} measurement sets, {res}^2 (CPU, gloo)\n")
    print("| processes | wall s (incl. start-up) | predict loop s | measurements / s (loop) | ratio to 1 process |")
    print("|---|---|---|---|---|")
    base = None
    for n in procs:
        task = PosteriorTask(str(path), sampler="dps", num_samples=4, steps=20, sigma_y=0.1)
        writer = NetCDFPredictionWriter(str(tmp / f"pred{n}"))
        t0 = time.perf_counter()
        timer = tmp / f"predict_timer{n}"
        _trainer(n, callbacks=[writer, PredictTimer(str(timer))]).predict(task, MeasurementDataModule(str(meas)),
                                                                          return_predictions=False)
        wall, loop = time.perf_counter() - t0, float(timer.read_text())
        written = len(list((tmp / f"pred{n}").glob("pred_*.nc")))
        assert written == measurements, written  # a wrong count would make the rate meaningless
        rate = measurements / loop
        base = base or rate
        print(f"| {n} | {wall:.1f} | {loop:.1f} | {rate:.2f} | {rate / base:.2f} |")


def gpu_table(batch: int, steps: int, cpu_batch: int) -> None:
    """The sampler table of ``benchmarks/gpu_check.py`` (one implementation: that script's ``main``)."""
    if not torch.cuda.is_available():
        print("\n### GPU samplers: skipped (no CUDA device; benchmarks/gpu_check.py --tiny runs the tiny CPU check)")
        return
    sys.path.insert(0, str(Path(__file__).parent))
    import gpu_check

    gpu_check.main(["--batch", str(batch), "--steps", str(steps), "--cpu-batch", str(cpu_batch)])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--procs", type=int, nargs="+", default=[1, 2])
    p.add_argument("--res", type=int, default=16)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--measurements", type=int, default=8)
    p.add_argument("--gpu-batch", type=int, default=16)
    p.add_argument("--gpu-steps", type=int, default=32)
    p.add_argument("--cpu-batch", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--tables", nargs="+", default=["train", "predict", "gpu"], choices=["train", "predict", "gpu"])
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    with tempfile.TemporaryDirectory() as tmp:
        if "train" in a.tables:
            training_table(a.procs, a.res, a.steps, a.batch, Path(tmp))
        if "predict" in a.tables:
            predict_table(a.procs, a.res, a.measurements, Path(tmp))
    if "gpu" in a.tables:
        gpu_table(a.gpu_batch, a.gpu_steps, a.cpu_batch)


if __name__ == "__main__":
    main()
