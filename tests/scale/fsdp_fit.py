"""Train the tiny prior of test_ddp.py with FSDP2 (Lightning's ModelParallelStrategy) on 2 CPU processes.

Run as a script (Lightning starts the second process by re-running it):
``python fsdp_fit.py ROOT ARCHIVE MAX_STEPS [CKPT]``. Rank 0 writes ``ROOT/run2.losses`` (global loss per step)
and ``ROOT/ckpt/epoch=<k>.ckpt`` (full, unsharded checkpoints).
"""

import sys

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.strategies import ModelParallelStrategy

from scidiff.priors import DiffusionPrior
from test_ddp import Record, make_data, make_prior


if __name__ == "__main__":
    root, archive, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
    ckpt = sys.argv[4] if len(sys.argv) > 4 else None
    pl.seed_everything(0, verbose=False)
    strategy = ModelParallelStrategy(data_parallel_size=2, tensor_parallel_size=1, save_distributed_checkpoint=False)
    trainer = pl.Trainer(accelerator="cpu", devices=2, strategy=strategy, max_steps=steps, logger=False,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=root,
                         num_sanity_val_steps=0,
                         callbacks=[Record(f"{root}/run2"), ModelCheckpoint(f"{root}/ckpt", save_top_k=-1, every_n_epochs=1,
                                                                            filename="{epoch}")])
    trainer.fit(make_prior(DiffusionPrior), make_data(archive, batch_size=8), ckpt_path=ckpt)
