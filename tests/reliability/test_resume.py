"""A ``scidiff fit`` run killed with SIGKILL mid-epoch resumes from its last checkpoint and ends with the
same weights as an uninterrupted run with the same seed."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from scidiff.io import load_checkpoint

ROOT = Path(__file__).resolve().parents[2]
# 36 training fields in batches of 8: 5 batches per epoch; 15 steps are three epochs.
FIT = [
    "fit", "-c", str(ROOT / "problems/grf/fit.yaml"), "--trainer.max_steps=15", "--data.generate.n=40",
    "--data.generate.res=8", "--data.batch_size=8", "--data.val_fraction=0.1", "--model.network=mlp",
    "--model.network_kwargs={hidden: 32, depth: 2}", "--model.lr_warmup_steps=2", "--trainer.logger=false",
    "--trainer.enable_progress_bar=false", "--trainer.check_val_every_n_epoch=1",
]


def _fit(root: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": f"{ROOT}{os.pathsep}{Path(__file__).parent}",
           "SCIDIFF_ALLOW_CLASSES": "faults."}
    cmd = [sys.executable, "-m", "scidiff.cli", *FIT, f"--trainer.default_root_dir={root}", *extra]
    return subprocess.run(cmd, cwd=root.parent, env=env, capture_output=True, text=True, timeout=300)


def _weights(root: Path) -> dict:
    ckpt = load_checkpoint(root / "checkpoints" / "last.ckpt")
    assert ckpt["global_step"] == 15
    return ckpt["state_dict"]


@pytest.mark.slow
@pytest.mark.parametrize("every, kill_at", [(3, 8), (5, 11)], ids=["mid-epoch-checkpoint", "epoch-end-checkpoint"])
def test_sigkilled_fit_resumes_to_the_same_weights(tmp_path, every, kill_at):
    ckpt_every = f"--trainer.callbacks.every_n_train_steps={every}"
    full = _fit(tmp_path / "full", ckpt_every)
    assert full.returncode == 0, full.stderr[-3000:]

    killed = _fit(tmp_path / "killed", ckpt_every, "--trainer.callbacks+=faults.KillAtStep",
                  f"--trainer.callbacks.step={kill_at}")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    last = load_checkpoint(tmp_path / "killed" / "checkpoints" / "last.ckpt")
    assert last["global_step"] == kill_at // every * every  # the kill came after the last checkpoint
    resumed = _fit(tmp_path / "killed", ckpt_every, f"--ckpt_path={tmp_path / 'killed' / 'checkpoints' / 'last.ckpt'}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    expected, got = _weights(tmp_path / "full"), _weights(tmp_path / "killed")
    assert set(expected) == set(got)
    assert any(k.startswith("ema.") for k in expected)  # the sampling (EMA) weights are compared too
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=0, atol=1e-6, msg=lambda m: f"{key}: {m}")


def test_epoch_sampler_resumes_mid_epoch_and_reshuffles_by_epoch():
    from types import SimpleNamespace

    from scidiff.data.datamodule import EpochSampler

    n, bs = 10, 3  # 4 batches per epoch, the last one short

    def order(epoch, done=0, world=1, rank=0):
        trainer = SimpleNamespace(world_size=world, accumulate_grad_batches=1, current_epoch=epoch,
                                  global_step=4 * epoch + done)
        return list(EpochSampler(range(n), world, rank, seed=7, batch_size=bs, trainer=trainer))

    assert sorted(order(0)) == list(range(n)) and order(0) == order(0) and order(0) != order(1)
    for done in range(4):  # a run resumed after `done` batches of epoch 1 sees the rest of that epoch
        assert order(1, done) == order(1)[done * bs:]
    # two ranks split the same permutation (a mid-epoch resume restarts the epoch there)
    ranks = order(1, 0, world=2, rank=0) + order(1, 0, world=2, rank=1)
    assert sorted(set(ranks)) == list(range(n)) and order(1, 2, world=2) == order(1, 0, world=2)


def test_loading_a_checkpoint_for_sampling_leaves_the_rng_alone(tmp_path):
    import pytorch_lightning as pl

    from scidiff.priors import DiffusionPrior

    prior = DiffusionPrior([1, 8], network="mlp", network_kwargs={"hidden": 8, "depth": 1})
    trainer = pl.Trainer(logger=False, enable_progress_bar=False, enable_checkpointing=False)
    trainer.strategy.connect(prior)
    trainer.save_checkpoint(tmp_path / "p.ckpt")
    assert "rng_state" in load_checkpoint(tmp_path / "p.ckpt")
    torch.manual_seed(123)
    DiffusionPrior([1, 8], network="mlp", network_kwargs={"hidden": 8, "depth": 1})  # building draws initial weights
    expected = torch.rand(3)
    torch.manual_seed(123)
    DiffusionPrior.load_from_checkpoint(tmp_path / "p.ckpt", weights_only=True)
    torch.testing.assert_close(torch.rand(3), expected)
