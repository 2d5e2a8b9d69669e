"""``DiffusionPrior``: a LightningModule that trains with the EDM loss and *is* a Denoiser.

``prior(x, sigma)`` works in normalised units (what the network was trained on); ``prior.sample(n)``
returns samples in physical units using the normaliser stored in the checkpoint. Every constructor
argument is a plain type, so checkpoints load with ``weights_only=True`` and can be rebuilt anywhere.
"""

from __future__ import annotations

import copy
import math
import time
from typing import Any
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch import Tensor

from ..diffusion import EDMPrecond, edm_loss, karras_sigmas, sample
from ..diffusion._utils import as_sigma_batch, check_finite
from ..diffusion.random import Generator, seeded_generators
from .networks import build_network


def warmup_cosine(step: int, warmup: int, total: int | None, final_fraction: float = 0.01,
                  progress: float = 0.0) -> float:
    """Learning-rate multiplier: linear warm-up over ``warmup`` steps, then a half cosine from 1 down to
    ``final_fraction`` at step ``total`` (SGDR without restarts; Loshchilov & Hutter, ICLR 2017), constant after.
    ``total=None`` keeps 1 after the warm-up. ``progress`` in [0, 1], e.g. the spent share of a wall-time budget,
    moves the cosine on when it is ahead of the step count, so a timed run still ends on the low rate."""
    warm = max(1, int(warmup))
    if step < warm:
        return (step + 1) / warm
    if total is None:
        return 1.0
    t = min(1.0, max((step - warm) / max(1, total - warm), progress))
    return final_fraction + (1 - final_fraction) * 0.5 * (1 + math.cos(math.pi * t))


class DiffusionPrior(pl.LightningModule):
    """EDM-preconditioned diffusion prior over fields of shape ``shape = [C, *spatial]``.

    Args:
        shape: event shape the prior is trained on, e.g. ``[1, 32, 32]``; inputs of any other shape are refused.
        network: a name in :data:`~scidiff.priors.networks.NETWORKS` (``"unet"``, ``"mlp"``).
        network_kwargs: keyword arguments of the network (plain types).
        sigma_data: data standard deviation in normalised units (1.0 after standardisation).
        sigma_min, sigma_max: the noise range used by :meth:`sample`.
        lr, weight_decay: AdamW settings; ``lr_warmup_steps`` ramps the learning rate linearly.
        lr_decay_steps: after the warm-up, decay the rate on a half cosine that reaches ``lr_final_fraction * lr``
            at this step and stays there (:func:`warmup_cosine`); ``None`` (default) keeps it constant.
        ema_decay: EMA of the weights used for sampling; ``0`` disables EMA.
        p_mean, p_std: EDM's log-normal training distribution of sigma.
        init_weights: start the network (and its EMA copy) from the sampling weights of a saved prior with the
            same network and channels: a ``.safetensors``/``.ckpt`` path or a shipped name. The spatial size may
            differ (a convolutional U-Net runs at any size), e.g. to continue a 32 x 32 prior at 64 x 64. Not saved.
    """

    #: Check every input for NaN/inf: ``"cpu"`` (default) on host tensors only, where it costs no device sync;
    #: ``True`` everywhere (one host sync per network call on an accelerator); ``False`` never.
    validate_inputs: bool | str = "cpu"
    #: Wall-time budget of a fit in seconds (not saved with the weights): the cosine of ``lr_decay_steps`` also
    #: advances with the spent share of it, so a run of unknown speed stopped by ``max_time`` ends on the low rate.
    train_seconds: float | None = None

    def __init__(
        self,
        shape: list[int],
        network: str = "unet",
        network_kwargs: dict[str, Any] | None = None,
        sigma_data: float = 1.0,
        sigma_min: float = 0.002,
        sigma_max: float = 80.0,
        lr: float = 2e-4,
        weight_decay: float = 0.0,
        lr_warmup_steps: int = 200,
        ema_decay: float = 0.999,
        lr_decay_steps: int | None = None,
        lr_final_fraction: float = 0.01,
        p_mean: float = -1.2,
        p_std: float = 1.2,
        init_weights: str | None = None,
    ):
        # init_weights is a starting point, not part of the model: kept out of the saved configuration.
        hparams = {k: v for k, v in locals().items() if k not in ("self", "__class__", "init_weights")}
        super().__init__()
        # Explicit: Lightning's CLI would otherwise hand a prior built inside another module the outer config.
        self.save_hyperparameters(hparams)
        self.shape = tuple(int(s) for s in shape)
        kwargs = dict(network_kwargs or {})
        if network == "unet":
            kwargs.setdefault("in_channels", self.shape[0])
            kwargs.setdefault("dims", len(self.shape) - 1)
        elif network == "mlp":
            kwargs.setdefault("dim", int(torch.tensor(self.shape).prod()))
        self.precond = EDMPrecond(build_network(network, kwargs), sigma_data)
        self.ema = copy.deepcopy(self.precond).requires_grad_(False) if ema_decay > 0 else None
        # Normaliser: x_phys = mean + std * x, per channel. Filled from the data module at fit start.
        self.register_buffer("norm_mean", torch.zeros(self.shape[0]))
        self.register_buffer("norm_std", torch.ones(self.shape[0]))
        if init_weights is not None:
            self._init_from(init_weights)

    def _init_from(self, source: str) -> None:
        src = DiffusionPrior.from_name_or_path(source)
        mine, theirs = dict(self.hparams), dict(src.hparams)
        same = ("network", "network_kwargs", "sigma_data")
        if src.shape[0] != self.shape[0] or any(mine.get(k) != theirs.get(k) for k in same):
            raise ValueError(
                f"init_weights {source!r} has {src.shape[0]} channels and network "
                f"{ {k: theirs.get(k) for k in same} }; this prior needs {self.shape[0]} channels and "
                f"{ {k: mine.get(k) for k in same} }"
            )
        state = src.denoiser.state_dict()
        for module in (self.precond, self.ema):
            if module is not None:
                module.load_state_dict(state)

    # --- Denoiser -----------------------------------------------------------------------------
    @property
    def denoiser(self) -> EDMPrecond:
        """The network used for sampling: EMA weights when available."""
        return self.ema if self.ema is not None else self.precond

    def check_input(self, x: Tensor) -> None:
        if tuple(x.shape[1:]) != self.shape:
            raise ValueError(f"this prior was trained on fields of shape {self.shape}; got x of shape {tuple(x.shape)}")

    def forward(self, x: Tensor, sigma: Tensor | float, **cond) -> Tensor:
        """``E[x0 | x]`` in normalised units (in ``x``'s dtype, whatever the network's precision)."""
        self.check_input(x)
        if self.validate_inputs is True or (self.validate_inputs == "cpu" and x.device.type == "cpu"):
            check_finite(x, "x")
        sigma = as_sigma_batch(sigma, x)
        net = self._compiled if self._compiled is not None else self.denoiser
        if self._autocast is None:
            return net(x, sigma, **cond)
        with torch.autocast(x.device.type, dtype=self._autocast):
            return net(x, sigma, **cond).to(x.dtype)

    _autocast: torch.dtype | None = None
    _compiled = None

    def set_runtime(self, precision: str | None = None, compile: bool | dict = False) -> DiffusionPrior:  # noqa: A002
        """How the denoiser runs when sampling; not saved with the weights.

        Args:
            precision: ``"bf16"`` or ``"fp16"`` runs the network under ``torch.autocast`` (matmuls and convolutions
                in low precision) while the sampler's state, the EDM scalings and the skip connection stay in the
                dtype of ``x`` (float32/float64); ``None`` runs in full precision.
            compile: ``True`` or ``torch.compile`` keyword arguments (e.g. ``{"mode": "max-autotune"}``) to compile
                the sampling network; ``False`` undoes it.
        """
        dtypes = {None: None, "bf16": torch.bfloat16, "fp16": torch.float16, "32": None, "fp32": None}
        if precision not in dtypes:
            raise ValueError(f"precision must be one of {sorted(k for k in dtypes if k)} or None; got {precision!r}")
        self._autocast = dtypes[precision]
        if compile is False:
            self._compiled = None
        else:
            self._compiled = torch.compile(self.denoiser, **(compile if isinstance(compile, dict) else {}))
        return self

    # --- units --------------------------------------------------------------------------------
    def _stat(self, v: Tensor, x: Tensor) -> Tensor:
        return v.to(x).reshape(1, -1, *([1] * (x.ndim - 2)))

    def normalize(self, x: Tensor) -> Tensor:
        return (x - self._stat(self.norm_mean, x)) / self._stat(self.norm_std, x)

    def denormalize(self, x: Tensor) -> Tensor:
        return self._stat(self.norm_mean, x) + self._stat(self.norm_std, x) * x

    def set_normalizer(self, mean: Tensor, std: Tensor) -> None:
        mean, std = torch.as_tensor(mean).float().reshape(-1), torch.as_tensor(std).float().reshape(-1)
        if mean.shape != (self.shape[0],) or std.shape != (self.shape[0],) or (std <= 0).any():
            raise ValueError(f"normaliser needs {self.shape[0]} means and positive stds")
        self.norm_mean.copy_(mean)
        self.norm_std.copy_(std)

    # --- sampling -----------------------------------------------------------------------------
    @torch.no_grad()
    def sample(
        self,
        n: int,
        steps: int = 32,
        *,
        sampler: str = "heun",
        generator: Generator = None,
        physical: bool = True,
        progress: bool = True,
        **kwargs,
    ) -> Tensor:
        """Draw ``n`` samples (physical units unless ``physical=False``)."""
        sigmas = karras_sigmas(steps, self.hparams.sigma_min, self.hparams.sigma_max)
        x = sample(
            self, (n, *self.shape), sigmas, sampler=sampler, generator=generator, device=self.device,
            progress=progress, **kwargs,
        )
        return self.denormalize(x) if physical else x

    # --- training -----------------------------------------------------------------------------
    def on_fit_start(self) -> None:
        dm = getattr(self.trainer, "datamodule", None)
        if dm is not None and getattr(dm, "norm_mean", None) is not None:
            self.set_normalizer(dm.norm_mean, dm.norm_std)

    def _loss(self, batch: Tensor, generator=None) -> Tensor:
        """Batch EDM loss; a batch ``(x0, w)`` gives the self-normalised weighted mean ``sum w l / sum w``
        (importance-weighted oversampling, :class:`~scidiff.data.weighted.OversampledDataModule`)."""
        x0 = batch[0] if isinstance(batch, (list, tuple)) else batch
        self.check_input(x0)
        loss = edm_loss(
            self.precond, x0, sigma_data=self.hparams.sigma_data, p_mean=self.hparams.p_mean, p_std=self.hparams.p_std,
            generator=generator,
        )
        if isinstance(batch, (list, tuple)) and len(batch) > 1:
            from ..data.weighted import weighted_mean

            return weighted_mean(loss, batch[1])
        return loss.mean()

    def _training_generators(self, x0: Tensor) -> list[torch.Generator] | None:
        """One generator per item, seeded by (initial seed, step, position of the item in the global batch).

        Rank ``r`` of ``W`` holds the items at global positions ``r, r + W, ...`` (what its
        ``DistributedSampler`` gives it), so DDP on N devices draws the sigma and noise that one process with
        the N-times batch draws: the same loss curve. A run resumed at step k also draws what the
        uninterrupted run drew. Generators live on the batch's device (no host round trip).
        """
        trainer = self._trainer
        if trainer is None:
            return None
        world, rank = trainer.world_size, trainer.global_rank
        base = (torch.initial_seed() % 2**31 * 1_000_003 + self.global_step) * 2**20
        seeds = [(base + rank + world * j) % 2**63 for j in range(x0.shape[0])]
        return seeded_generators(seeds, device=x0.device)

    def training_step(self, batch, batch_idx):
        x0 = batch[0] if isinstance(batch, (list, tuple)) else batch
        loss = self._loss(batch, self._training_generators(x0))
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=len(x0), sync_dist=True)
        return loss

    def validation_step(self, batch, batch_idx):
        # Fixed seed: validation losses are comparable across epochs.
        state = torch.random.get_rng_state()
        torch.manual_seed(1234 + batch_idx)
        loss = self._loss(batch)
        torch.random.set_rng_state(state)
        self.log("val/loss", loss, prog_bar=True, on_epoch=True, batch_size=len(batch))

    def predict_step(self, batch, batch_idx):
        """Unconditional samples, one per item of the prediction batch, seeded by the batch index."""
        n = len(batch[0] if isinstance(batch, (list, tuple)) else batch)
        g = torch.Generator(device="cpu").manual_seed(int(batch_idx))
        return self.sample(n, generator=g, progress=False)

    def optimizer_step(self, *args, **kwargs) -> None:
        # EMA right after the step, not in on_train_batch_end: step checkpoints are written by callbacks
        # before the module's on_train_batch_end runs, and would miss this step's average.
        super().optimizer_step(*args, **kwargs)
        self._update_ema()

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # The training noise comes from the global RNG: store it (plain tensors, weights_only-safe) so a
        # resumed run draws what the uninterrupted run would have drawn.
        checkpoint["rng_state"] = {"cpu": torch.get_rng_state()}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            checkpoint["rng_state"]["cuda"] = torch.cuda.get_rng_state_all()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        # Only when resuming a fit: loading weights for sampling must not reset the caller's RNG.
        state = checkpoint.get("rng_state")
        resuming = self._trainer is not None and self._trainer.state.fn == "fit"
        if state is not None and resuming:
            torch.set_rng_state(state["cpu"])
            if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
                torch.cuda.set_rng_state_all(state["cuda"])

    def _update_ema(self) -> None:
        if self.ema is None:
            return
        step = self.global_step
        decay = min(self.hparams.ema_decay, (1 + step) / (10 + step))  # warm-up: short runs still average sensibly
        with torch.no_grad():
            for e, p in zip(self.ema.parameters(), self.precond.parameters()):
                e.lerp_(p, 1 - decay)

    def configure_model(self) -> None:
        """Shard the network and its EMA copy with FSDP2 when Lightning's ``ModelParallelStrategy`` runs us.

        Both copies are sharded over the same data-parallel mesh, so the EMA update above acts on local shards
        that line up. Every other strategy leaves ``device_mesh`` unset and the model untouched.
        """
        if self.device_mesh is None:
            return
        from torch.distributed.fsdp import fully_shard

        for module in (self.precond, self.ema):
            if module is not None:
                fully_shard(module, mesh=self.device_mesh["data_parallel"])

    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.precond.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, self.lr_factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def on_train_start(self) -> None:
        self._t0 = time.monotonic()  # the clock of train_seconds starts where Lightning's max_time does

    def lr_factor(self, step: int) -> float:
        """Learning-rate multiplier at optimiser step ``step``: warm-up, then the cosine over ``lr_decay_steps``
        or the spent share of :attr:`train_seconds`, whichever is further on."""
        hp = self.hparams
        spent = 0.0
        if self.train_seconds and hasattr(self, "_t0"):
            spent = (time.monotonic() - self._t0) / self.train_seconds
        return warmup_cosine(step, hp.lr_warmup_steps, hp.get("lr_decay_steps"), hp.get("lr_final_fraction", 0.01),
                             progress=spent)

    # --- files --------------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path, map_location: str | torch.device = "cpu") -> DiffusionPrior:
        """Load from a Lightning checkpoint (``.ckpt``) or a safetensors export, never unpickling code."""
        from ..io import load_prior

        return load_prior(path, map_location=map_location)

    @classmethod
    def pretrained(cls, name: str) -> DiffusionPrior:
        """A prior that ships with scidiff (``scidiff/assets/<name>.safetensors``; model card beside it)."""
        from importlib.resources import files

        assets = files("scidiff") / "assets"
        available = sorted(p.name.removesuffix(".safetensors") for p in assets.iterdir() if p.name.endswith(".safetensors"))
        if name not in available:
            raise ValueError(f"no shipped prior named {name!r}; available: {available}")
        return cls.load(str(assets / f"{name}.safetensors"))

    @classmethod
    def from_name_or_path(cls, source: str | Path) -> DiffusionPrior:
        """:meth:`load` for a ``.safetensors``/``.ckpt`` path, else :meth:`pretrained` for a shipped name."""
        return cls.load(source) if Path(str(source)).suffix in (".safetensors", ".ckpt") else cls.pretrained(str(source))

    def export(self, path: str | Path) -> Path:
        """Write the sampling weights, normaliser and configuration to a safetensors file."""
        from ..io import export_safetensors

        return export_safetensors(self, path)


