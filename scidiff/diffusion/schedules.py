"""Noise schedules as plain tensors, and the conversions between noise parametrisations.

scidiff's one time variable is the noise level ``sigma`` of the variance-exploding form
``x_sigma = x0 + sigma * n`` (Karras et al. 2022, "EDM"). A variance-preserving (VP/DDPM) state
``x_t = sqrt(alpha_bar) x0 + sqrt(1 - alpha_bar) n`` is the same process rescaled:
``x_sigma = x_t / sqrt(alpha_bar)`` with ``sigma**2 = (1 - alpha_bar) / alpha_bar``. Every conversion
lives here so samplers never carry scheduler objects.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def append_zero(sigmas: Tensor) -> Tensor:
    """Append a final ``sigma = 0`` (the clean sample) to a schedule."""
    return torch.cat([sigmas, sigmas.new_zeros(1)])


def karras_sigmas(
    n: int,
    sigma_min: float = 0.002,
    sigma_max: float = 80.0,
    rho: float = 7.0,
    *,
    append_zero_: bool = True,
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    """The EDM grid (Karras et al. 2022, eq. 5): ``n`` sigmas from ``sigma_max`` to ``sigma_min``, then 0.

    The schedule is kept in float64 on the CPU: samplers read it as Python numbers, so it never causes a
    device sync, and the state dtype is chosen by the samplers.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if not 0 < sigma_min < sigma_max:
        raise ValueError(f"need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
    ramp = torch.linspace(0, 1, n, dtype=dtype) if n > 1 else torch.zeros(1, dtype=dtype)
    min_inv, max_inv = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    sigmas = (max_inv + ramp * (min_inv - max_inv)) ** rho
    return append_zero(sigmas) if append_zero_ else sigmas


def exponential_sigmas(n: int, sigma_min: float = 0.002, sigma_max: float = 80.0, *, append_zero_: bool = True) -> Tensor:
    """Log-uniformly spaced sigmas from ``sigma_max`` to ``sigma_min`` (then 0)."""
    sigmas = torch.logspace(math.log10(sigma_max), math.log10(sigma_min), n, dtype=torch.float64)
    return append_zero(sigmas) if append_zero_ else sigmas


# --- VP <-> sigma ---------------------------------------------------------------------------------


def alpha_bar_from_sigma(sigma: Tensor | float) -> Tensor:
    """``alpha_bar = 1 / (1 + sigma^2)``."""
    sigma = torch.as_tensor(sigma, dtype=torch.float64)
    return 1.0 / (1.0 + sigma**2)


def sigma_from_alpha_bar(alpha_bar: Tensor | float) -> Tensor:
    """``sigma = sqrt((1 - alpha_bar) / alpha_bar)``."""
    alpha_bar = torch.as_tensor(alpha_bar, dtype=torch.float64)
    return ((1.0 - alpha_bar) / alpha_bar).sqrt()


def vp_alpha_bar(t: Tensor | float, beta_min: float = 0.1, beta_max: float = 20.0) -> Tensor:
    """Continuous VP-SDE (Song et al. 2021) with linear beta: ``alpha_bar(t) = exp(-beta_min t - (beta_max-beta_min) t^2/2)``."""
    t = torch.as_tensor(t, dtype=torch.float64)
    return torch.exp(-beta_min * t - 0.5 * (beta_max - beta_min) * t**2)


def vp_sigma(t: Tensor | float, beta_min: float = 0.1, beta_max: float = 20.0) -> Tensor:
    """The EDM sigma of VP time ``t`` in [0, 1]."""
    return sigma_from_alpha_bar(vp_alpha_bar(t, beta_min, beta_max))


def vp_t(sigma: Tensor | float, beta_min: float = 0.1, beta_max: float = 20.0) -> Tensor:
    """Inverse of :func:`vp_sigma`: solves ``beta_min t + (beta_max - beta_min) t^2 / 2 = log(1 + sigma^2)``."""
    sigma = torch.as_tensor(sigma, dtype=torch.float64)
    c = torch.log1p(sigma**2)
    a = 0.5 * (beta_max - beta_min)
    if a == 0:
        return c / beta_min
    return (-beta_min + torch.sqrt(beta_min**2 + 4 * a * c)) / (2 * a)


def ddpm_alpha_bars(num_train_steps: int = 1000, beta_start: float = 1e-4, beta_end: float = 2e-2) -> Tensor:
    """Discrete DDPM (Ho et al. 2020) linear-beta schedule: ``alpha_bar_t = prod_{s<=t} (1 - beta_s)``."""
    betas = torch.linspace(beta_start, beta_end, num_train_steps, dtype=torch.float64)
    return torch.cumprod(1.0 - betas, dim=0)


def ddpm_sigmas(
    num_steps: int,
    num_train_steps: int = 1000,
    beta_start: float = 1e-4,
    beta_end: float = 2e-2,
    *,
    append_zero_: bool = True,
) -> Tensor:
    """Descending sigmas at the DDPM timesteps ``range(0, T, T // num_steps)`` (the usual DDIM skip), then 0."""
    if not 1 <= num_steps <= num_train_steps:
        raise ValueError(f"num_steps must be in [1, {num_train_steps}], got {num_steps}")
    alpha_bars = ddpm_alpha_bars(num_train_steps, beta_start, beta_end)
    timesteps = torch.arange(0, num_train_steps, num_train_steps // num_steps).flip(0)
    sigmas = sigma_from_alpha_bar(alpha_bars[timesteps])
    return append_zero(sigmas) if append_zero_ else sigmas


# --- Loss weights ---------------------------------------------------------------------------------


def edm_loss_weight(sigma: Tensor, sigma_data: float) -> Tensor:
    """EDM's ``lambda(sigma) = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2``, unit effective weight at every sigma."""
    return (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2


def snr(sigma: Tensor) -> Tensor:
    """Signal-to-noise ratio ``alpha_bar / (1 - alpha_bar) = 1 / sigma^2``."""
    return sigma.pow(-2)
