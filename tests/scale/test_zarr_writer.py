"""Distributed predict into one Zarr store: each measurement once, resumable after a crash."""

import os
import tempfile

import pytest
import pytorch_lightning as pl
import torch
import xarray as xr

pytest.importorskip("zarr")

from scidiff.data.datamodule import MeasurementDataModule  # noqa: E402
from scidiff.data.writers import NetCDFPredictionWriter, ZarrPredictionWriter  # noqa: E402
from scidiff.priors.posterior_task import PosteriorTask  # noqa: E402

from test_predict import make_problem, predict  # noqa: E402


class Crash(pl.Callback):
    """Raise after ``after`` predict batches on rank ``rank``: a run that dies half-way."""

    def __init__(self, after: int, rank: int = 0):
        self.after, self.rank = after, rank

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        if trainer.global_rank == self.rank and batch_idx + 1 >= self.after:
            raise RuntimeError("simulated crash")


def part_stamps(store):
    """``{part name: mtime of its metadata}``: a part rewritten would show a new time."""
    return {p.name: (p / "zarr.json").stat().st_mtime_ns for p in (store / "parts").glob("pred_*")}


def crash_after_two_batches(task, meas, store):
    with pytest.raises(RuntimeError, match="simulated crash"):
        predict(task, meas, None, writer=ZarrPredictionWriter(str(store)), callbacks=[Crash(after=2)])
    # what SIGKILL during a write leaves: a group under the temporary name that atomic_dir would have renamed
    first = xr.open_zarr(store / "parts" / "pred_000000", consolidated=False).load()
    partial = tempfile.mkdtemp(prefix=".pred_000009.", suffix=".part", dir=store / "parts")
    first.to_zarr(partial, mode="w", consolidated=False)


def test_crash_then_rerun_writes_exactly_the_missing_measurements(tmp_path):
    task, meas = make_problem(tmp_path, n=7)
    store = tmp_path / "post.zarr"
    crash_after_two_batches(task, meas, store)
    before = part_stamps(store)
    assert sorted(before) == [f"pred_{i:06d}" for i in range(4)]  # two batches of two
    assert list((store / "parts").glob(".pred_000009.*.part"))  # the partial group is there ...
    writer = ZarrPredictionWriter(str(store))
    assert writer.done_indices() == {0, 1, 2, 3}  # ... and is not counted as a result
    assert not (store / "x").exists()  # no merge after a crash

    rerun = predict(task, meas, None, writer=writer)
    assert sorted(p.name for p in rerun.written) == [f"pred_{i:06d}" for i in range(4, 7)]
    assert {k: v for k, v in part_stamps(store).items() if k in before} == before  # finished parts untouched
    assert not list((store / "parts").glob(".*.part"))  # stale temporary groups removed at start
    merged = xr.open_zarr(store)
    assert list(merged["measurement"].values) == list(range(7)) and merged["x"].shape == (7, 2, 1, 4, 4)

    # the same numbers as the NetCDF writer's single file
    nc = predict(task, meas, tmp_path / "nc", writer=NetCDFPredictionWriter(str(tmp_path / "nc"), merge="all.nc"))
    assert len(nc.written) == 7
    with xr.open_dataset(tmp_path / "nc" / "all.nc") as ref:
        for name in ("x", "x_mean", "x_std"):
            torch.testing.assert_close(torch.from_numpy(merged[name].values), torch.from_numpy(ref[name].values))


def test_merge_replaces_an_earlier_merge_and_can_drop_parts(tmp_path):
    task, meas = make_problem(tmp_path, n=3)
    store = tmp_path / "post.zarr"
    predict(task, meas, None, writer=ZarrPredictionWriter(str(store)))
    assert xr.open_zarr(store)["x"].shape[0] == 3
    writer = ZarrPredictionWriter(str(store), keep_parts=False)
    (store / "parts" / "pred_000001").rename(store / "parts" / ".moved")  # one result fewer: a smaller merge
    writer.merge_parts()
    merged = xr.open_zarr(store)
    assert list(merged["measurement"].values) == [0, 2]
    assert writer.done_indices() == set()
    with pytest.raises(FileNotFoundError, match="no per-measurement results 'pred_<index>'"):
        writer.merge_parts()


def test_zarr_writer_without_zarr_says_how_to_install(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "zarr", None)
    with pytest.raises(ImportError, match=r"pip install 'scidiff\[zarr\]'"):
        ZarrPredictionWriter("x.zarr")


@pytest.mark.slow  # one crashed 1-process run, then two spawned processes: 40-90 s on the shared 2-core machine
def test_two_processes_finish_a_crashed_run_into_one_store(tmp_path):
    task, meas = make_problem(tmp_path, n=10)
    store = tmp_path / "post.zarr"
    crash_after_two_batches(task, meas, store)
    before = part_stamps(store)
    assert len(before) == 4

    predict(task, meas, None, devices=2, writer=ZarrPredictionWriter(str(store)))
    after = part_stamps(store)
    assert sorted(after) == [f"pred_{i:06d}" for i in range(10)]  # exactly 10 results
    assert {k: v for k, v in after.items() if k in before} == before  # the 4 finished ones were not rewritten
    ranks = {xr.open_zarr(store / "parts" / name, consolidated=False).attrs["rank"] for name in after if name not in before}
    assert ranks == {0, 1}  # both ranks wrote the 6 missing ones
    merged = xr.open_zarr(store)
    assert list(merged["measurement"].values) == list(range(10)) and merged["x"].shape == (10, 2, 1, 4, 4)
    # a result does not depend on the rank (or run) that computed it
    data = MeasurementDataModule(str(meas)); data.setup()
    for i in (2, 7):
        m = data.predict_set[i]
        torch.testing.assert_close(torch.from_numpy(merged["x"].values[i]), task.posterior(i, m["y"], m["mask"]).samples,
                                   rtol=1e-5, atol=1e-6)


def test_posterior_command_writes_a_zarr_store(tmp_path):
    from pathlib import Path

    from scidiff.cli import run

    _, meas = make_problem(tmp_path, n=3)
    writer = tmp_path / "zarr.yaml"  # a second config file replaces the problem file's NetCDF writer
    writer.write_text("trainer:\n  callbacks:\n    - class_path: scidiff.data.writers.ZarrPredictionWriter\n"
                      f"      init_args:\n        store: {tmp_path / 'post.zarr'}\n")
    config = Path(__file__).resolve().parents[2] / "problems" / "grf" / "posterior.yaml"
    run(["posterior", "predict", "-c", str(config), "-c", str(writer), f"--model.prior={tmp_path / 'prior.safetensors'}",
         "--model.num_samples=2", "--model.steps=3", f"--data.path={meas}", "--trainer.enable_progress_bar=false",
         f"--trainer.default_root_dir={tmp_path}"])
    merged = xr.open_zarr(tmp_path / "post.zarr")
    assert list(merged["measurement"].values) == [0, 1, 2] and merged["x"].shape == (3, 2, 1, 4, 4)


KILLED_RUN = """
import sys, torch
sys.path.insert(0, {tests!r})
from test_predict import predict
from scidiff.data.writers import ZarrPredictionWriter
from scidiff.priors.posterior_task import PosteriorTask
torch.set_num_threads(1)
task = PosteriorTask({prior!r}, sampler="dps", num_samples=2, steps=40, sigma_y=0.1)
predict(task, {meas!r}, None, writer=ZarrPredictionWriter({store!r}))
"""


@pytest.mark.slow  # a subprocess killed mid-way, then a rerun: 25-75 s on the shared 2-core machine
def test_sigkill_midway_then_rerun_writes_each_measurement_once(tmp_path):
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    _, meas = make_problem(tmp_path)
    store = tmp_path / "post.zarr"
    code = KILLED_RUN.format(tests=str(Path(__file__).parent), prior=str(tmp_path / "prior.safetensors"),
                             meas=str(meas), store=str(store))
    proc = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.time() + 240
    while time.time() < deadline and len(list((store / "parts").glob("pred_*"))) < 3 and proc.poll() is None:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = part_stamps(store)
    assert 3 <= len(before) < 10, f"the kill came too late or too early: {sorted(before)}"

    task = PosteriorTask(str(tmp_path / "prior.safetensors"), sampler="dps", num_samples=2, steps=40, sigma_y=0.1)
    rerun = predict(task, meas, None, writer=ZarrPredictionWriter(str(store)))
    assert sorted(p.name for p in rerun.written) == sorted(f"pred_{i:06d}" for i in range(10) if f"pred_{i:06d}" not in before)
    assert {k: v for k, v in part_stamps(store).items() if k in before} == before
    assert not list((store / "parts").glob(".*.part"))
    assert list(xr.open_zarr(store)["measurement"].values) == list(range(10))
