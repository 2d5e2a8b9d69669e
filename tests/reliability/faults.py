"""Fault injection for the reliability tests (named in configs as ``faults.KillAtStep``)."""

import os
import signal

from pytorch_lightning.callbacks import Callback


class KillAtStep(Callback):
    """SIGKILL the training process (no clean-up, no final checkpoint) when it is about to run step ``step``."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)
