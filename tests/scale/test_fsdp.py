"""FSDP on CPU: FSDP2 (``fully_shard``) under Lightning's ModelParallelStrategy, 2 gloo processes.

Lightning's ``strategy="fsdp"`` (FSDP1) cannot run on CPU; see docs/scale.md. FSDP2 can, and must give what
data parallelism gives: the loss curve of one process with the same global batch, and checkpoints that resume.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from scidiff.data.netcdf import write_netcdf
from scidiff.data.synthetic import make_grf_dataset

from test_ddp import _fit

SCRIPT = Path(__file__).with_name("fsdp_fit.py")


def fsdp_fit(root, archive, steps, ckpt=None):
    root.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(SCRIPT.parent), *sys.path])}
    cmd = [sys.executable, str(SCRIPT), str(root), str(archive), str(steps), *([str(ckpt)] if ckpt else [])]
    done = subprocess.run(cmd, env=env, cwd=root, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return dict(json.loads(line) for line in open(root / "run2.losses"))


def weights(ckpt):
    return torch.load(ckpt, weights_only=True)["state_dict"]


def test_lightning_fsdp_strategy_refuses_cpu():
    """The reason the FSDP path on CPU is ModelParallelStrategy: Lightning's FSDP1 strategy asks for a GPU."""
    import pytorch_lightning as pl

    with pytest.raises(ValueError, match="requires a GPU accelerator"):
        pl.Trainer(accelerator="cpu", devices=2, strategy="fsdp")


@pytest.mark.slow  # one 1-process run and two 2-process runs: 3-6 min on the shared 2-core machine
def test_fsdp2_trains_like_one_process_and_resumes(tmp_path):
    archive = tmp_path / "grf.nc"
    write_netcdf(make_grf_dataset(n=32, res=4, seed=0), archive)  # 2 steps per epoch at a global batch of 16
    one, w_one = _fit(tmp_path / "one", archive, devices=1, batch_size=16, max_steps=6)

    sharded = fsdp_fit(tmp_path / "fsdp", archive, steps=4)
    assert sorted(sharded) == [1, 2, 3, 4]
    for step, loss in sharded.items():  # sharded parameters, same data-parallel maths
        assert loss == pytest.approx(one[step], rel=1e-4), (step, loss, one[step])

    # a sharded checkpoint resumes sharded ...
    ckpts = tmp_path / "fsdp" / "ckpt"
    resumed = fsdp_fit(tmp_path / "resumed", archive, steps=4, ckpt=ckpts / "epoch=0.ckpt")
    assert sorted(resumed) == [3, 4] and all(resumed[s] == pytest.approx(sharded[s], rel=1e-5) for s in (3, 4))
    for name, value in weights(ckpts / "epoch=1.ckpt").items():
        torch.testing.assert_close(weights(tmp_path / "resumed" / "ckpt" / "epoch=1.ckpt")[name], value, msg=name)

    # ... and unsharded on one process (the checkpoint is a full state dict): it lands where one process does
    after, w_after = _fit(tmp_path / "single", archive, devices=1, batch_size=16, max_steps=6,
                          ckpt_path=ckpts / "epoch=1.ckpt")
    assert sorted(after) == [5, 6] and all(after[s] == pytest.approx(one[s], rel=1e-4) for s in (5, 6))
    for name, value in w_one.items():
        torch.testing.assert_close(w_after[name], value, rtol=1e-4, atol=1e-5, msg=name)
