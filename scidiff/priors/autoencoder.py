"""A KL-regularised convolutional autoencoder: the first stage of a latent diffusion prior.

As in latent diffusion (Rombach, Blattmann, Lorenz, Esser, Ommer, CVPR 2022, arXiv 2112.10752, Sec. 3.1), the
encoder outputs a diagonal Gaussian ``q(z | x) = N(m(x), diag(exp(logvar(x))))`` on a grid ``2^levels`` times
coarser than the input, and training minimises the reconstruction error plus a small KL term towards
``N(0, I)`` (``kl_weight``; the paper's "KL-reg" uses ~1e-6 with perceptual/GAN losses, here plain MSE, so a
larger weight keeps the latent scale tame). :meth:`Autoencoder.encode` returns the posterior mean, so encoding is
deterministic; :meth:`Autoencoder.decode` is differentiable, which ReSample's latent optimisation needs.

It works on fields of any channel count and on 1D, 2D or 3D grids; data are used in the units the data module
gives (standardised by default, the normaliser is stored in the module like :class:`DiffusionPrior`'s, so
``encode``/``decode`` take and return physical units).
"""

from __future__ import annotations

import math

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..diffusion._utils import check_finite
from .networks import _CONV, _norm
from .prior import DiffusionPrior


class _Block(nn.Module):
    """Pre-activation residual block without noise conditioning."""

    def __init__(self, dims: int, c_in: int, c_out: int):
        super().__init__()
        conv = _CONV[dims]
        self.net = nn.Sequential(_norm(c_in), nn.SiLU(), conv(c_in, c_out, 3, padding=1),
                                 _norm(c_out), nn.SiLU(), conv(c_out, c_out, 3, padding=1))
        self.skip = conv(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.skip(x) + self.net(x)


class Autoencoder(pl.LightningModule):
    """KL autoencoder ``x (C, *spatial) -> z (latent_channels, *spatial / 2^levels) -> x``.

    Args:
        shape: event shape of the data ``[C, *spatial]``; every spatial size must be divisible by ``2^levels``.
        latent_channels: channels of the latent grid.
        base_channels: width of the finest level; each coarser level doubles it (at most ``4 x``).
        levels: number of 2x downsamplings (latent grid = input grid / ``2^levels``).
        kl_weight: weight of ``KL(q(z|x) || N(0, I))`` per latent entry, relative to the per-pixel MSE.
        lr, weight_decay: AdamW settings.
    """

    validate_inputs: bool = True

    def __init__(
        self,
        shape: list[int],
        latent_channels: int = 4,
        base_channels: int = 32,
        levels: int = 2,
        kl_weight: float = 1e-4,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
    ):
        hparams = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        super().__init__()
        # Explicit: Lightning's CLI would otherwise hand a prior built inside another module the outer config.
        self.save_hyperparameters(hparams)
        self.shape = tuple(int(s) for s in shape)
        dims, factor = len(self.shape) - 1, 2**levels
        if dims not in _CONV or any(s % factor for s in self.shape[1:]):
            raise ValueError(
                f"Autoencoder needs a shape [C, *spatial] with 1-3 spatial dims divisible by 2^levels = {factor}; "
                f"got {list(self.shape)}"
            )
        self.latent_shape = (latent_channels, *(s // factor for s in self.shape[1:]))
        conv = _CONV[dims]
        widths = [base_channels * min(2**k, 4) for k in range(levels + 1)]
        enc: list[nn.Module] = [conv(self.shape[0], widths[0], 3, padding=1)]
        for k in range(levels):
            enc += [_Block(dims, widths[k], widths[k]), conv(widths[k], widths[k + 1], 3, stride=2, padding=1)]
        enc += [_Block(dims, widths[-1], widths[-1]), _norm(widths[-1]), nn.SiLU(), conv(widths[-1], 2 * latent_channels, 3, padding=1)]
        self.encoder = nn.Sequential(*enc)
        dec: list[nn.Module] = [conv(latent_channels, widths[-1], 3, padding=1), _Block(dims, widths[-1], widths[-1])]
        for k in reversed(range(levels)):
            dec += [nn.Upsample(scale_factor=2, mode="nearest"), conv(widths[k + 1], widths[k], 3, padding=1),
                    _Block(dims, widths[k], widths[k])]
        dec += [_norm(widths[0]), nn.SiLU(), conv(widths[0], self.shape[0], 3, padding=1)]
        self.decoder = nn.Sequential(*dec)
        self.register_buffer("norm_mean", torch.zeros(self.shape[0]))
        self.register_buffer("norm_std", torch.ones(self.shape[0]))

    # The normaliser is the same per-channel affine map as DiffusionPrior's (one implementation).
    _stat = DiffusionPrior._stat
    normalize = DiffusionPrior.normalize
    denormalize = DiffusionPrior.denormalize
    set_normalizer = DiffusionPrior.set_normalizer
    on_fit_start = DiffusionPrior.on_fit_start

    def _check(self, x: Tensor, shape: tuple[int, ...], what: str) -> None:
        if tuple(x.shape[1:]) != shape:
            raise ValueError(f"this autoencoder's {what} have shape {shape}; got a tensor of shape {tuple(x.shape)}")
        if self.validate_inputs:
            check_finite(x, what)

    def moments(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and log-variance of ``q(z | x)`` for a batch in normalised units."""
        mean, logvar = self.encoder(x).chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)

    def encode(self, x: Tensor) -> Tensor:
        """Latent code (the mean of ``q(z | x)``) of fields in physical units."""
        self._check(x, self.shape, "fields")
        return self.moments(self.normalize(x))[0]

    def decode(self, z: Tensor) -> Tensor:
        """Fields in physical units from latent codes; differentiable in ``z``."""
        self._check(z, self.latent_shape, "latents")
        return self.denormalize(self.decoder(z))

    def forward(self, x: Tensor) -> Tensor:
        return self.decode(self.encode(x))

    # --- training -----------------------------------------------------------------------------
    def _losses(self, batch) -> tuple[Tensor, Tensor]:
        """Per-pixel MSE of the reconstruction from a sampled latent, and the per-entry KL (batch means)."""
        x = batch[0] if isinstance(batch, (list, tuple)) else batch
        self._check(x, self.shape, "fields")
        mean, logvar = self.moments(x)
        z = mean + torch.randn_like(mean) * (0.5 * logvar).exp()
        recon = F.mse_loss(self.decoder(z), x)
        kl = 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).mean()
        return recon, kl

    def training_step(self, batch, batch_idx):
        recon, kl = self._losses(batch)
        loss = recon + self.hparams.kl_weight * kl
        n = len(batch[0] if isinstance(batch, (list, tuple)) else batch)
        self.log_dict({"train/loss": loss, "train/recon": recon, "train/kl": kl}, prog_bar=True, on_step=True,
                      on_epoch=True, batch_size=n)
        return loss

    def validation_step(self, batch, batch_idx):
        x = batch[0] if isinstance(batch, (list, tuple)) else batch
        recon = F.mse_loss(self.decoder(self.moments(x)[0]), x)  # deterministic: the code used at sampling time
        self.log("val/recon", recon, prog_bar=True, on_epoch=True, batch_size=len(x))

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)

    @property
    def compression(self) -> float:
        """Input entries per latent entry."""
        return math.prod(self.shape) / math.prod(self.latent_shape)
