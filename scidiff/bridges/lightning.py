"""Lightning modules for bridge training (import pytorch_lightning; not loaded by ``import scidiff.bridges``).

* :class:`BridgeMatchingModule` -- [SF]^2M bridge matching: each batch is a pair ``(x0, x1)`` of independent
  minibatches of the two sample sets, coupled by entropic OT (``reg = 2 sigma^2``) in the step.
* :class:`IPFBridgeModule` -- the Reflected Schrodinger Bridge's IPF (:mod:`scidiff.bridges.ipf`) under a Trainer,
  with manual optimisation: the global step fixes the stage, the half and the step within the half; the first
  step of a half simulates the frozen policy's reflected paths from the batch (fresh draws of the source for the
  backward half, of the target for the forward half), every step takes one AdamW step of the trained policy on
  the cached states, and the last step of a half loads its EMA weights. The run stops itself after
  ``n_stages`` stages. Checkpoints hold both policies, their EMAs, both optimisers and the sampling generator.
* :class:`PairDraws` and :func:`fit_bridge_with_trainer` -- the data and the route that ``run_problem`` (and so
  ``scidiff bridge -c ...``) takes when a problem file has a ``trainer:`` block.

Hyperparameters are plain types (the domain is its config dict), so checkpoints load with ``weights_only=True``.
"""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
import torch
from torch import Tensor, nn

from .domains import make_domain
from .ipf import HALVES, POLICY, ForwardBackwardNet, ema_of, half_cache, half_loss, half_lr, load_average, trained_policy
from .matching import BridgeNet, _check_pair, bridge_matching_loss, sample_coupling


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


class IPFBridgeModule(pl.LightningModule):
    """Reflected SB trained by IPF under a Lightning Trainer (module docs); ``forward -> (v, s)`` as a bridge net.

    Args mirror :func:`scidiff.bridges.ipf.train_ipf`; ``domain`` is a :func:`make_domain` config dict (``None``:
    unconstrained), ``seed`` seeds the rollout noise and the Hutchinson probes. The rollout size ``n_paths`` is
    the batch size of the data (:class:`PairDraws`).
    """

    def __init__(self, dim: int, sigma: float = 1.0, domain: dict | None = None, hidden: int = 128, depth: int = 3,
                 n_stages: int = 6, n_iter: int = 300, n_steps: int = 50, batch_size: int = 512, lr: float = 1e-3,
                 lr_decay: float = 0.8, anneal: bool = False, ema_decay: float = 0.99, boundary: str = "reflect",
                 seed: int = 0):
        super().__init__()
        if n_stages < 1 or n_iter < 1 or n_steps < 1 or batch_size < 1:
            raise ValueError("n_stages, n_iter, n_steps and batch_size must be >= 1")
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.net = ForwardBackwardNet(dim, sigma, hidden, depth)
        self.domain = make_domain(dict(domain)) if domain is not None else None
        self.ema = nn.ModuleDict({POLICY[h]: ema_of(trained_policy(self.net, h), ema_decay) for h in HALVES})
        self.generator = torch.Generator().manual_seed(int(seed))
        self._cache: tuple[Tensor, Tensor, Tensor] | None = None

    @property
    def total_steps(self) -> int:
        return 2 * self.hparams.n_stages * self.hparams.n_iter

    def phase(self, step: int) -> tuple[int, str, int]:
        """``(stage, half, step within the half)`` of global step ``step``."""
        stage, rest = divmod(int(step), 2 * self.hparams.n_iter)
        return stage, HALVES[rest // self.hparams.n_iter], rest % self.hparams.n_iter

    def forward(self, x: Tensor, t: Tensor):
        return self.net(x, t)

    def training_step(self, batch, batch_idx):
        hp = self.hparams
        x0, x1 = batch
        stage, half, i = self.phase(self.global_step)
        if stage >= hp.n_stages:  # a Trainer asked for more steps than the schedule has
            self.trainer.should_stop = True
            return None
        z, ema = trained_policy(self.net, half), self.ema[POLICY[half]]
        opt = self.optimizers()[HALVES.index(half)]
        if i == 0:  # a new half-stage: fresh optimiser moments and a fresh average, as in train_ipf
            opt.optimizer.state.clear()
            ema.n_averaged.zero_()
        if i == 0 or self._cache is None:  # (a run resumed mid-half simulates a new cache)
            start = x0 if half == "backward" else x1
            if self.domain is not None and hp.boundary != "none":
                self.domain.check_inside(start, "rollout start")
            self._cache = half_cache(self.net, half, start, self.domain, hp.n_steps, hp.boundary, self.generator)
        for group in opt.optimizer.param_groups:
            group["lr"] = half_lr(hp.lr * hp.lr_decay**stage, i, hp.n_iter, hp.anneal)
        loss = half_loss(z, self._cache, hp.sigma, hp.batch_size, self.generator)
        opt.zero_grad()
        self.manual_backward(loss)
        opt.step()
        ema.update_parameters(z)
        if i == hp.n_iter - 1:
            load_average(z, ema)
            self._cache = None
            if stage == hp.n_stages - 1 and half == HALVES[-1]:
                self.trainer.should_stop = True
        self.log(f"train/loss_{half}", loss.detach(), prog_bar=True)
        self.log("train/stage", float(stage))
        return loss.detach()

    def configure_optimizers(self):
        return [torch.optim.AdamW(trained_policy(self.net, half).parameters(), lr=self.hparams.lr) for half in HALVES]

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # A plain uint8 tensor (weights_only-safe): a resumed run continues the same noise stream.
        checkpoint["ipf_generator_state"] = self.generator.get_state()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        if "ipf_generator_state" in checkpoint:
            self.generator.set_state(checkpoint["ipf_generator_state"])


class PairDraws(torch.utils.data.IterableDataset):
    """Endless independent draws ``(x0[idx0], x1[idx1])`` of ``n`` rows each from two sample sets (seeded)."""

    def __init__(self, x0: Tensor, x1: Tensor, n: int, seed: int = 0):
        _check_pair(x0, x1)
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        self.x0, self.x1, self.n, self.seed = x0, x1, int(n), int(seed)

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed)
        while True:
            yield (self.x0[torch.randint(self.x0.shape[0], (self.n,), generator=g)],
                   self.x1[torch.randint(self.x1.shape[0], (self.n,), generator=g)])


TRAINER_DEFAULTS = {"logger": False, "enable_model_summary": False, "enable_progress_bar": False,
                    "accelerator": "cpu", "devices": 1}


def fit_bridge_with_trainer(
    x0: Tensor, x1: Tensor, sigma: float, *, method: str, domain: dict | None, trainer: dict, ipf: dict,
    n_iter: int, batch_size: int, lr: float, ot_method: str, hidden: int, depth: int, seed: int,
) -> pl.LightningModule:
    """Train a bridge with a Lightning Trainer; returns the trained module in eval mode.

    ``trainer`` holds plain Trainer keyword arguments, plus ``checkpoint_every_n_steps`` (a ModelCheckpoint that
    writes ``checkpoints/last.ckpt`` under ``default_root_dir``) and ``ckpt_path`` (resume from a checkpoint).
    """
    trainer = dict(trainer)
    every = trainer.pop("checkpoint_every_n_steps", None)
    resume = trainer.pop("ckpt_path", None)
    if any(k in trainer for k in ("callbacks", "max_steps")):
        raise ValueError("the trainer block of a bridge problem sets neither callbacks nor max_steps (the schedule "
                         "fixes the steps; use checkpoint_every_n_steps)")
    if method == "ipf":
        options = {k: v for k, v in ipf.items() if k != "n_paths"}
        module = IPFBridgeModule(x0.shape[1], sigma, domain, hidden, depth, seed=seed, **options)
        draws, max_steps = PairDraws(x0, x1, ipf.get("n_paths", 1000), seed), module.total_steps
    else:
        module = BridgeMatchingModule(x0.shape[1], sigma, hidden, depth, lr, ot_method)
        draws, max_steps = PairDraws(x0, x1, batch_size, seed), n_iter
    callbacks = []
    if every:
        from pytorch_lightning.callbacks import ModelCheckpoint

        root = Path(trainer.get("default_root_dir", "."))
        callbacks.append(ModelCheckpoint(dirpath=root / "checkpoints", save_last=True, save_top_k=-1,
                                         every_n_train_steps=int(every)))
    kwargs = {**TRAINER_DEFAULTS, "enable_checkpointing": bool(every), **trainer}
    pl.Trainer(max_steps=max_steps, callbacks=callbacks, **kwargs).fit(
        module, torch.utils.data.DataLoader(draws, batch_size=None), ckpt_path=resume)
    return module.eval()
