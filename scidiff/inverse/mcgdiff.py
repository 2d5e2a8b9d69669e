"""MCGdiff: Monte Carlo guided diffusion for linear-Gaussian inverse problems, in the operator's SVD basis.

Cardoso, Janati, Le Corff, Moulines, "Monte Carlo guided Denoising Diffusion models for Bayesian linear inverse
problems", ICLR 2024. With ``A = U diag(s) V^T`` and ``y = A x + sigma_y n``, the spectral coordinates
``x_bar = V^T x`` and ``y_bar = U^T y`` satisfy ``y_tilde_i = y_bar_i / s_i = x_bar_i + (sigma_y / s_i) n_i`` on
the observed coordinates (``s_i > 0``). In sigma space (``x_sigma = x_0 + sigma n``, noise isotropic, so also in
the ``V`` basis) ``y_tilde_i`` is therefore distributed exactly like coordinate ``i`` of the noisy state at level
``sigma*_i = sigma_y / s_i``: the posterior is the prior's reverse chain conditioned on those states. The paper
writes this with a per-coordinate time ``tau_i`` on the DDPM grid; here the level is ``sigma*_i`` itself, so no
rounding to the grid is needed.

Particles follow the DDPM reverse kernel ``N(m, v)``, ``m = x0_hat + (sigma'^2/sigma^2)(x - x0_hat)``,
``v = sigma'^2 (sigma^2 - sigma'^2) / sigma^2``. While ``sigma > sigma*_i``, coordinate ``i`` is twisted by the
forward transition from the observation, ``g_sigma(x)_i = N(x_bar_i; y_tilde_i, sigma^2 - sigma*_i^2)``; at the
first level ``sigma' <= sigma*_i`` it is conditioned on the exact message
``p(y_tilde_i | x_sigma') = N(y_tilde_i; x_bar_i, sigma*_i^2 - sigma'^2)`` (the forward process passes through
``y_tilde`` after ``x_sigma'``), and from then on it follows the prior's kernel: given ``x_sigma'`` the observation
says nothing more about the rest of the chain. The proposal is the product of kernel and potential (the locally
optimal one: no denoiser gradients) and the fully adapted weight ``N(y_tilde; m_bar, v + V') / g_sigma(x)``
depends on the current particle only, so particles are weighted and resampled *before* they move. ``kappa``
keeps the potential's variance away from zero where ``sigma`` meets ``sigma*_i`` (the paper's ``kappa``).
With an exact prior and reverse kernel this is exact; with the Gaussian DDPM kernel the error is the
discretisation error of the unconditional sampler.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..diffusion.random import Generator, randn
from ..kernels.particles import chunked
from ._smc import ParticleBook, check_smc_args
from .posterior import Posterior


class _SpectralData:
    """``y_tilde``, ``sigma*^2`` and the observed mask in the SVD basis of a linear-Gaussian likelihood."""

    def __init__(self, likelihood, rel_tol: float):
        svd = likelihood.require("svd")
        sigma_y = float(likelihood.sigma_y)  # > 0: Gaussian likelihoods refuse sigma_y <= 0
        y = likelihood.y
        if y.shape[0] != 1:
            raise ValueError(f"mcgdiff conditions on one measurement; y has batch size {y.shape[0]}")
        y_bar = svd.U_adjoint(y).double()
        s = torch.as_tensor(svd.singular_values, dtype=torch.float64, device=y.device)
        s = torch.broadcast_to(s, y_bar.shape)[0]
        self.svd = svd
        self.observed = s > rel_tol * s.max()
        safe = torch.where(self.observed, s, torch.ones_like(s))
        self.y_tilde = torch.where(self.observed, y_bar[0] / safe, torch.zeros_like(s))
        self.sigma_star2 = torch.where(self.observed, (sigma_y / safe) ** 2, torch.zeros_like(s))
        # host copy: whether any coordinate is still twisted at a level is decided without a device sync
        self.min_star2 = float(self.sigma_star2[self.observed].min()) if bool(self.observed.any()) else float("inf")

    def coords(self, x: Tensor) -> Tensor:
        return self.svd.V_adjoint(x).double()

    def twisted(self, sigma: float) -> Tensor:
        """Coordinates still carrying a potential at level ``sigma``: observed, with ``sigma > sigma*``."""
        return self.observed & (sigma**2 > self.sigma_star2)

    def potential_var(self, sigma: float, kappa: float) -> Tensor:
        """``|sigma^2 - sigma*^2|`` per coordinate, floored at ``kappa (1 + sigma*^2)``."""
        var = (sigma**2 - self.sigma_star2).abs()
        return torch.maximum(var, kappa * (1 + self.sigma_star2))

    def log_potential(self, x_bar: Tensor, var: Tensor, mask: Tensor) -> Tensor:
        """``sum_i log N(y_tilde_i; x_bar_i, var_i)`` over the coordinates in ``mask``, without the normaliser."""
        r2 = (x_bar - self.y_tilde).pow(2) / (2 * var)
        return -torch.where(mask, r2, torch.zeros_like(r2)).flatten(1).sum(1)


@torch.no_grad()
def mcgdiff(
    denoiser,
    likelihood,
    shape: Sequence[int],
    sigmas: Tensor,
    *,
    kappa: float = 1e-4,
    generator: Generator = None,
    progress: bool = True,
    callback=None,
    ess_threshold: float = 1.0,
    resampling: str = "systematic",
    rel_tol: float = 1e-6,
    max_batch_size: int | None = None,
    ess_warning: float = 0.02,
    cond: dict | None = None,
    device=None,
    dtype: torch.dtype = torch.float32,
) -> Posterior:
    """Sample ``p(x | y)`` for a linear-Gaussian likelihood with an SVD; ``shape = (K, *event_shape)``.

    Args:
        sigmas: decreasing schedule ending at 0 (the paper uses 100 DDIM steps, e.g. ``ddpm_sigmas(100)``).
        kappa: floor of the potential's variance where ``sigma`` crosses ``sigma_y / s_i`` (paper: ``1e-4``).
        ess_threshold: resample when ``ESS < ess_threshold * K``; ``1.0`` (default, as the paper) every step.
        rel_tol: singular values below ``rel_tol * max(s)`` count as unobserved.
        max_batch_size: denoise at most this many particles at once.

    Costs one denoiser forward per step and particle and no gradients. Defaults of the paper: 64 particles,
    ``kappa = 1e-4``.
    """
    shape, s = check_smc_args(likelihood, shape, sigmas, resampling)
    if not kappa > 0:
        raise ValueError(f"kappa must be > 0, got {kappa}")
    data = _SpectralData(likelihood, rel_tol)
    device = device if device is not None else likelihood.y.device
    n, cond, start = shape[0], cond or {}, time.perf_counter()

    def denoise(x: Tensor, sigma: float) -> Tensor:
        return chunked(lambda xb: denoiser(xb, xb.new_full((xb.shape[0],), sigma), **cond), x,
                       max_batch_size=max_batch_size)

    def move(mean: Tensor, var_kernel: float, var_pot: Tensor, mask: Tensor) -> Tensor:
        """Draw from ``N(mean, var_kernel)`` times the potential on the coordinates in ``mask``.

        A kernel draw ``z`` is corrected inside the span of ``V`` only, so ``V`` may be a thin factor.
        """
        z = mean + var_kernel**0.5 * randn(mean.shape, generator, device=mean.device, dtype=mean.dtype)
        m_bar, z_bar = data.coords(mean), data.coords(z)
        gain = torch.where(mask, var_kernel / (var_kernel + var_pot), torch.zeros_like(var_pot))
        x_bar = m_bar + gain * (data.y_tilde - m_bar) + (1 - gain).sqrt() * (z_bar - m_bar)
        return z + data.svd.V((x_bar - z_bar).to(mean.dtype))

    # x_T from N(0, sigma_max^2) times the potentials (conditioned already where sigma* >= sigma_max): exact,
    # with a weight that is the same for every particle
    start_var = data.potential_var(s[0], kappa)
    x = move(torch.zeros(shape, device=device, dtype=dtype), s[0] ** 2, start_var, data.observed)
    log_w = torch.zeros(n, dtype=torch.float64, device=device)
    book = ParticleBook(n, ess_threshold, resampling, ess_warning, "mcgdiff")

    for i in tqdm(range(len(s) - 1), disable=not progress, desc="mcgdiff", leave=False):
        sigma, sigma_next = s[i], s[i + 1]
        x0 = denoise(x, sigma)
        ratio = sigma_next**2 / sigma**2
        var = sigma_next**2 * (1 - ratio)
        mean = x0 + ratio * (x - x0)
        mask = data.twisted(sigma)
        if sigma**2 > data.min_star2:  # once every coordinate is conditioned the weights stay as they are
            var_next = data.potential_var(sigma_next, kappa)
            log_g = data.log_potential(data.coords(x), data.potential_var(sigma, kappa), mask)
            log_w = log_w + data.log_potential(data.coords(mean), var + var_next, mask) - log_g
            log_w, (mean,) = book.step(log_w, [mean], i, generator)
            x = move(mean, var, var_next, mask)
        else:
            x = mean + var**0.5 * randn(mean.shape, generator, device=mean.device, dtype=mean.dtype)
        if callback is not None:
            callback({"x": x, "i": i, "sigma": sigma, "denoised": x0, "log_weights": log_w})

    log_w = book.record(log_w, len(s) - 1, x)  # the final weights
    info = {"method": "mcgdiff", "nfe": len(s) - 1, "vjp": 0, "num_particles": n, "kappa": float(kappa),
            "ess_threshold": float(ess_threshold), "wall_time": time.perf_counter() - start}
    info.update(book.finish(x))
    return Posterior(x, log_w, book.ess_history, info)
