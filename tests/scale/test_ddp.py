"""DDP on CPU (gloo, 2 spawned processes) against one process with the same global batch."""

import json

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint

from scidiff.data.datamodule import FieldDataModule
from scidiff.data.netcdf import write_netcdf
from scidiff.data.synthetic import make_grf_dataset
from scidiff.priors import DiffusionPrior


class Record(pl.Callback):
    """Global loss of every step (mean over ranks) and the final weights, written by rank 0."""

    def __init__(self, path):
        self.path = str(path)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        loss = trainer.strategy.reduce(outputs["loss"].detach(), reduce_op="mean")
        if trainer.is_global_zero:
            with open(self.path + ".losses", "a") as f:
                f.write(json.dumps([trainer.global_step, float(loss)]) + "\n")

    def on_train_end(self, trainer, pl_module):
        if trainer.is_global_zero:
            torch.save({k: v.cpu() for k, v in pl_module.state_dict().items()}, self.path + ".weights")


def make_data(archive, batch_size):
    return FieldDataModule(str(archive), lazy=True, batch_size=batch_size, val_fraction=0.0, chunk_size=7)


def make_prior(cls=DiffusionPrior):
    return cls([1, 4, 4], network="mlp", network_kwargs={"hidden": 32, "depth": 1}, lr=1e-2, lr_warmup_steps=1,
               ema_decay=0.9)


def _fit(root, archive, devices, batch_size, max_steps, ckpt_path=None, checkpoints=False):
    pl.seed_everything(0, verbose=False)
    dm, prior = make_data(archive, batch_size), make_prior()
    root.mkdir(parents=True, exist_ok=True)
    callbacks = [Record(root / f"run{devices}")]
    if checkpoints:
        callbacks.append(ModelCheckpoint(root / "ckpt", save_top_k=-1, every_n_epochs=1, save_on_train_epoch_end=True,
                                         filename="{epoch}"))
    trainer = pl.Trainer(accelerator="cpu", devices=devices, strategy="ddp_spawn" if devices > 1 else "auto",
                         max_steps=max_steps, logger=False, enable_progress_bar=False, enable_model_summary=False,
                         enable_checkpointing=checkpoints, callbacks=callbacks, num_sanity_val_steps=0,
                         default_root_dir=root)
    trainer.fit(prior, dm, ckpt_path=ckpt_path)
    losses = [json.loads(line) for line in open(root / f"run{devices}.losses")]
    return dict(losses), torch.load(root / f"run{devices}.weights", weights_only=True)


@pytest.mark.slow  # two spawned processes plus two 1-process runs: 55-120 s on the shared 2-core machine
def test_ddp_matches_one_process_and_resumes_on_one(tmp_path):
    archive = tmp_path / "grf.nc"
    write_netcdf(make_grf_dataset(n=32, res=4, seed=0), archive)  # 2 steps per epoch at a global batch of 16

    one, w_one = _fit(tmp_path / "one", archive, devices=1, batch_size=16, max_steps=6)
    two, w_two = _fit(tmp_path / "two", archive, devices=2, batch_size=8, max_steps=4, checkpoints=True)
    assert sorted(two) == [1, 2, 3, 4]
    for step, loss in two.items():
        assert loss == pytest.approx(one[step], rel=1e-4), (step, loss, one[step])
    assert len(set(one.values())) == len(one)  # the curve moves: the comparison is not between constants

    # the 2-process checkpoint after epoch 1 (4 steps) resumes on 1 process and lands where the 1-process run did
    ckpt = tmp_path / "two" / "ckpt" / "epoch=1.ckpt"
    resumed, w_resumed = _fit(tmp_path / "resumed", archive, devices=1, batch_size=16, max_steps=6, ckpt_path=ckpt)
    assert sorted(resumed) == [5, 6]
    for step in (5, 6):
        assert resumed[step] == pytest.approx(one[step], rel=1e-4)
    for name, value in w_one.items():
        torch.testing.assert_close(w_resumed[name], value, rtol=1e-4, atol=1e-5, msg=name)
