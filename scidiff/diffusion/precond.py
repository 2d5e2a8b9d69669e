"""EDM preconditioning and training loss (Karras et al. 2022, Table 1 and eq. 2)."""

from __future__ import annotations

from torch import Tensor, nn

from ._utils import append_dims, as_sigma_batch
from .random import Generator, randn, randn_like
from .schedules import edm_loss_weight


def edm_scalings(sigma: Tensor, sigma_data: float) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Return ``(c_skip, c_out, c_in, c_noise)`` for noise level ``sigma``."""
    c_skip = sigma_data**2 / (sigma**2 + sigma_data**2)
    c_out = sigma * sigma_data / (sigma**2 + sigma_data**2).sqrt()
    c_in = 1.0 / (sigma**2 + sigma_data**2).sqrt()
    c_noise = sigma.log() / 4
    return c_skip, c_out, c_in, c_noise


class EDMPrecond(nn.Module):
    """Turn a raw network ``F(c_in x, c_noise, **cond)`` into a Denoiser ``D(x, sigma) = c_skip x + c_out F``.

    ``sigma`` may be a float or a ``(B,)`` tensor; the network sees ``c_noise`` as ``(B,)``.
    """

    def __init__(self, net: nn.Module, sigma_data: float = 0.5):
        super().__init__()
        self.net = net
        self.sigma_data = float(sigma_data)

    def forward(self, x: Tensor, sigma: Tensor | float, **cond) -> Tensor:
        sigma = as_sigma_batch(sigma, x)
        # Clamp only inside the log: sigma = 0 is valid (c_skip = 1, c_out = 0 returns x itself).
        c_skip, c_out, c_in, _ = (append_dims(c, x.ndim) for c in edm_scalings(sigma, self.sigma_data))
        c_noise = sigma.clamp_min(1e-20).log() / 4
        return c_skip * x + c_out * self.net(c_in * x, c_noise, **cond)


def edm_loss(
    denoiser,
    x0: Tensor,
    *,
    sigma_data: float = 0.5,
    p_mean: float = -1.2,
    p_std: float = 1.2,
    generator: Generator = None,
    **cond,
) -> Tensor:
    """EDM training loss per batch item: ``lambda(sigma) |D(x0 + sigma n, sigma) - x0|^2`` averaged over dims.

    ``ln sigma ~ N(p_mean, p_std^2)``. Returns a ``(B,)`` tensor so callers can weight or mask items.
    """
    sigma = (randn((x0.shape[0],), generator, device=x0.device, dtype=x0.dtype) * p_std + p_mean).exp()
    noise = randn_like(x0, generator)
    denoised = denoiser(x0 + append_dims(sigma, x0.ndim) * noise, sigma, **cond)
    weight = edm_loss_weight(sigma, sigma_data)
    return weight * (denoised - x0).pow(2).flatten(1).mean(1)
