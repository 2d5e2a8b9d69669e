"""Lightning module for [SF]^2M bridge matching (imports pytorch_lightning; not loaded by ``import scidiff.bridges``).

Each training batch is a pair ``(x0, x1)`` of independent minibatches of the two sample sets; the module
couples them by entropic OT (``reg = 2 sigma^2``) and minimises :func:`~scidiff.bridges.matching.bridge_matching_loss`.
Hyperparameters are plain types, so checkpoints load with ``weights_only=True``.
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch

from .matching import BridgeNet, bridge_matching_loss, sample_coupling


class BridgeMatchingModule(pl.LightningModule):
    def __init__(self, dim: int, sigma: float = 1.0, hidden: int = 128, depth: int = 3, lr: float = 1e-3,
                 ot_method: str = "sinkhorn"):
        super().__init__()
        if not sigma > 0:
            raise ValueError(f"sigma must be > 0, got {sigma}")
        self.save_hyperparameters()
        self.net = BridgeNet(dim, hidden, depth)

    def forward(self, x: torch.Tensor, t: torch.Tensor):
        return self.net(x, t)

    def training_step(self, batch, batch_idx):
        x0, x1 = batch
        b0, b1 = sample_coupling(x0, x1, self.hparams.sigma, self.hparams.ot_method)
        loss = bridge_matching_loss(self.net, b0, b1, self.hparams.sigma)
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)
