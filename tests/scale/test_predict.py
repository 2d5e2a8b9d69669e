"""Distributed predict over measurement sets: one result per measurement, nothing lost or written twice."""

import pytest
import pytorch_lightning as pl
import torch
import xarray as xr

from scidiff.data.datamodule import MeasurementDataModule
from scidiff.data.netcdf import write_netcdf
from scidiff.data.synthetic import gaussian_random_field
from scidiff.data.writers import NetCDFPredictionWriter
from scidiff.priors import DiffusionPrior
from scidiff.priors.posterior_task import PosteriorTask, masked_measurements


def make_problem(tmp_path, n=10):
    torch.manual_seed(0)
    prior = DiffusionPrior([1, 4, 4], network="mlp", network_kwargs={"hidden": 16, "depth": 1}, ema_decay=0)
    prior_path = prior.export(tmp_path / "prior.safetensors")
    fields = gaussian_random_field(n, 4, generator=torch.Generator().manual_seed(1))
    meas = tmp_path / "meas.nc"
    write_netcdf(masked_measurements(fields, 0.5, 0.1, generator=torch.Generator().manual_seed(2)), meas)
    task = PosteriorTask(str(prior_path), sampler="dps", num_samples=2, steps=3, sigma_y=0.1)
    return task, meas


def predict(task, meas, out, devices=1, merge=None, writer=None, callbacks=()):
    writer = writer if writer is not None else NetCDFPredictionWriter(str(out), merge=merge)
    trainer = pl.Trainer(accelerator="cpu", devices=devices, strategy="ddp_spawn" if devices > 1 else "auto",
                         logger=False, enable_progress_bar=False, enable_model_summary=False,
                         callbacks=[writer, *callbacks])
    trainer.predict(task, MeasurementDataModule(str(meas), batch_size=2), return_predictions=False)
    return writer


@pytest.mark.slow  # two spawned processes: 60-80 s on the shared 2-core machine
def test_two_processes_write_each_measurement_once(tmp_path):
    task, meas = make_problem(tmp_path)
    predict(task, meas, tmp_path / "out", devices=2, merge="all.nc")
    files = sorted((tmp_path / "out").glob("pred_*.nc"))
    assert [f.name for f in files] == [f"pred_{i:06d}.nc" for i in range(10)]
    ranks = {xr.open_dataset(f).attrs["rank"] for f in files}
    assert ranks == {0, 1}  # both ranks worked
    merged = xr.open_dataset(tmp_path / "out" / "all.nc")
    assert merged["x"].shape == (10, 2, 1, 4, 4) and list(merged["measurement"].values) == list(range(10))
    # a result does not depend on the rank that computed it: recompute measurement 7 in this process
    item = MeasurementDataModule(str(meas)); item.setup()
    m = item.predict_set[7]
    direct = task.posterior(7, m["y"], m["mask"]).samples
    torch.testing.assert_close(torch.from_numpy(merged["x"].values[7]), direct, rtol=1e-5, atol=1e-6)


def test_rerun_skips_finished_measurements(tmp_path):
    task, meas = make_problem(tmp_path, n=6)
    first = predict(task, meas, tmp_path / "out")
    assert len(first.written) == 6
    for i in (1, 4):
        (tmp_path / "out" / f"pred_{i:06d}.nc").unlink()  # as if the run had died before them
    stamps = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "out").glob("*.nc")}
    second = predict(task, meas, tmp_path / "out")
    assert sorted(p.name for p in second.written) == ["pred_000001.nc", "pred_000004.nc"]
    assert all((tmp_path / "out" / name).stat().st_mtime_ns == t for name, t in stamps.items())


KILLED_RUN = """
import sys, torch
sys.path.insert(0, {tests!r})
from test_predict import predict
from scidiff.priors.posterior_task import PosteriorTask
torch.set_num_threads(1)
task = PosteriorTask({prior!r}, sampler="dps", num_samples=2, steps=40, sigma_y=0.1)
predict(task, {meas!r}, {out!r})
"""


@pytest.mark.slow  # a subprocess killed mid-way, then a rerun: 25-75 s on the shared 2-core machine
def test_predict_killed_midway_resumes_exactly_once(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    _, meas = make_problem(tmp_path)
    out = tmp_path / "out"
    code = KILLED_RUN.format(tests=str(Path(__file__).parent), prior=str(tmp_path / "prior.safetensors"),
                             meas=str(meas), out=str(out))
    proc = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.time() + 240
    while time.time() < deadline and len(list(out.glob("pred_*.nc"))) < 3 and proc.poll() is None:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("pred_*.nc")}
    assert 3 <= len(before) < 10, f"the kill came too late or too early: {sorted(before)}"

    task = PosteriorTask(str(tmp_path / "prior.safetensors"), sampler="dps", num_samples=2, steps=40, sigma_y=0.1)
    rerun = predict(task, meas, out, merge="all.nc")
    assert sorted(p.name for p in rerun.written) == sorted(f"pred_{i:06d}.nc" for i in range(10) if f"pred_{i:06d}.nc" not in before)
    assert all((out / name).stat().st_mtime_ns == t for name, t in before.items())  # finished results untouched
    assert not list(out.glob(".*.part"))
    merged = xr.open_dataset(out / "all.nc")
    assert list(merged["measurement"].values) == list(range(10))


def test_posterior_command_predicts_every_measurement_from_yaml(tmp_path):
    from pathlib import Path

    from scidiff.cli import run

    _, meas = make_problem(tmp_path, n=3)
    config = Path(__file__).resolve().parents[2] / "problems" / "grf" / "posterior.yaml"
    run(["posterior", "predict", "-c", str(config), f"--model.prior={tmp_path / 'prior.safetensors'}",
         "--model.num_samples=2", "--model.steps=3", f"--data.path={meas}",
         f"--trainer.callbacks.init_args.output_dir={tmp_path / 'out'}", "--trainer.enable_progress_bar=false",
         f"--trainer.default_root_dir={tmp_path}"])  # the CLI saves its config.yaml there, not in the checkout
    merged = xr.open_dataset(tmp_path / "out" / "posteriors.nc")
    assert list(merged["measurement"].values) == [0, 1, 2] and merged["x"].shape == (3, 2, 1, 4, 4)
