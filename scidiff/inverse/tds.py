"""TDS: the twisted diffusion sampler (sequential Monte Carlo with twisted proposals).

Wu, Trippe, Naesseth, Blei, Cunningham, "Practical and Asymptotically Exact Conditional Sampling in
Diffusion Models", NeurIPS 2023. Particles follow the DDPM reverse chain, twisted towards the data by
``log p~_sigma(y | x) = -mu_y(x0_hat(x), sigma)``, the likelihood of the denoised estimate under a noise
variance that grows with the diffusion noise level. Written in sigma space (``x = x_t / sqrt(alpha_bar_t)``,
``sigma^2 = (1 - alpha_bar_t) / alpha_bar_t``), where a DDPM step from ``sigma`` to ``sigma' < sigma`` is

    p(x' | x) = N(x0_hat + (sigma'^2 / sigma^2)(x - x0_hat), v),   v = sigma'^2 (sigma^2 - sigma'^2) / sigma^2

(the VP posterior ``q(x_{t-1} | x_t, x0_hat)`` rescaled). The twisted proposal replaces ``x0_hat`` by
``x0_hat + sigma^2 grad_x log p~_sigma(y | x)`` (TDS's ``x0_hat + (1 - alpha_bar)/sqrt(alpha_bar) grad_{x_t}``),
and each particle's weight is multiplied by ``p(x' | x) p~_{sigma'}(y | x') / (q(x' | x, y) p~_sigma(y | x))``.
The last step to ``sigma = 0`` returns the denoised estimate, weighted by ``p(y | x0) / p~_sigma(y | x)``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..diffusion.random import Generator, randn
from ..kernels.particles import chunked
from ..likelihoods.base import Likelihood
from ._smc import ParticleBook, check_smc_args
from .posterior import Posterior


def twisting_likelihood(likelihood: Likelihood, scale: float = 1.0) -> Likelihood:
    """``p~_sigma(y | x0_hat)`` for a Gaussian likelihood: noise variance ``sigma_y^2 + scale * sigma^2``.

    TDS uses ``s_t^2 = (1 - alpha_bar_t) / alpha_bar_t = sigma^2`` (its ``var_type 1``) for noiseless data; the
    ``sigma_y^2`` term makes the twist end at the true likelihood at ``sigma = 0``. Implemented as the
    schedule weight ``sigma_y^2 / (sigma_y^2 + scale sigma^2)`` on the energy.
    """
    sigma_y = getattr(likelihood, "sigma_y", None)
    if sigma_y is None:
        raise ValueError(
            "twisting needs a Gaussian likelihood (with sigma_y); for other likelihoods pass twist=, a Likelihood "
            "whose energy depends on sigma"
        )
    if not scale >= 0:
        raise ValueError(f"twist scale must be >= 0, got {scale}")
    var = sigma_y**2
    return (lambda sigma: var / (var + scale * sigma**2)) * likelihood


def guard_step(e_start: Tensor, slope: Tensor, e_end: Tensor) -> Tensor:
    """Step fraction ``t`` in ``[0, 1]`` along TDS's twist ``delta = sigma^2 grad log p~``, per particle.

    TDS moves the clean estimate from ``x0_hat`` to ``x0_hat + delta``. With a stiff twist (small ``sigma_y``,
    an operator of large norm) that explicit step jumps far past the data and the particles diverge. Along
    ``delta`` the twist energy ``E`` is fitted by the quadratic through ``E(x0_hat)`` (``e_start``), its slope
    ``grad E . delta`` (``slope``) and ``E(x0_hat + delta)`` (``e_end``); it is exact for a linear-Gaussian
    likelihood. The step is cut to the model's minimiser ``t* = -slope / c`` when ``t* < 1``
    (``c = 2 (e_end - e_start - slope)``) and left at ``1`` otherwise, so the guided estimate never moves past
    the best fit along its own direction. Overflowed or NaN energies give ``t = 0`` (no guidance).
    """
    curvature = 2 * (e_end - e_start - slope)
    t = (-slope / curvature).clamp(0.0, 1.0)
    t = torch.where(curvature <= 0, torch.ones_like(t), t)  # flat or concave model: no overshoot to guard
    return torch.nan_to_num(t, nan=0.0)


def _transition_log_prob(x_next: Tensor, mean: Tensor, var: float) -> Tensor:
    """``log N(x_next; mean, var I)`` per particle, dropping the normaliser (it cancels in the weight ratio)."""
    return -(x_next - mean).double().pow(2).flatten(1).sum(1) / (2 * var)


@torch.no_grad()
def tds(
    denoiser,
    likelihood,
    shape: Sequence[int],
    sigmas: Tensor,
    *,
    generator: Generator = None,
    progress: bool = True,
    callback=None,
    ess_threshold: float = 1.0,
    resampling: str = "systematic",
    twist: Likelihood | None = None,
    twist_scale: float = 1.0,
    step_guard: bool = True,
    max_batch_size: int | None = None,
    ess_warning: float = 0.02,
    cond: dict | None = None,
    device=None,
    dtype: torch.dtype = torch.float32,
) -> Posterior:
    """Sample ``p(x | y)`` with TDS; ``shape = (K, *event_shape)``, ``sigmas`` e.g. :func:`ddpm_sigmas`.

    Args:
        ess_threshold: resample when ``ESS < ess_threshold * K``; the default ``1.0`` resamples at every step
            (as the reference), ``0`` never.
        twist: the twisting likelihood ``-log p~_sigma(y | x0_hat)`` (its energy receives ``sigma``); by default
            :func:`twisting_likelihood` of ``likelihood`` with ``twist_scale``.
        step_guard: cap the twisted step where it would overshoot (see :func:`guard_step`). The cap changes the
            proposal only, and the weights use the proposal actually drawn from, so the sampler stays consistent;
            on well-scaled problems the cap is inactive and the step is the paper's.
        max_batch_size: denoise (with its vector-Jacobian product) at most this many particles at once.

    Costs one denoiser forward and one VJP per step and particle.
    """
    shape, s = check_smc_args(likelihood, shape, sigmas, resampling)
    twist = twist if twist is not None else twisting_likelihood(likelihood, twist_scale)
    if not isinstance(twist, Likelihood):
        raise TypeError(f"twist must be a scidiff Likelihood, got {type(twist).__name__}")
    device = device if device is not None else getattr(likelihood, "y", torch.empty(0)).device
    n, cond, start = shape[0], cond or {}, time.perf_counter()

    def twisted(x: Tensor, sigma: float):
        """``x0_hat``, ``log p~``, its gradient in ``x`` (through the denoiser) and in ``x0_hat``, chunked."""

        def one(xb):
            with torch.enable_grad():
                xb = xb.detach().requires_grad_(True)
                x0 = denoiser(xb, xb.new_full((xb.shape[0],), sigma), **cond)
                log_p = -twist.energy(x0, x0.new_full((x0.shape[0],), sigma))
                grad, grad_x0 = torch.autograd.grad(log_p.sum(), (xb, x0))
            return x0.detach(), log_p.detach().double(), grad, grad_x0

        return chunked(one, x, max_batch_size=max_batch_size)

    def guided(x0: Tensor, log_p: Tensor, grad: Tensor, grad_x0: Tensor, sigma: float) -> Tensor:
        """TDS's twisted clean estimate ``x0_hat + t sigma^2 grad``, the step ``t`` capped by a line search."""
        delta = sigma**2 * grad
        if not step_guard:
            return x0 + delta
        e_end = twist.energy(x0 + delta, x0.new_full((x0.shape[0],), sigma)).double()
        t = guard_step(-log_p, -(grad_x0.double() * delta.double()).flatten(1).sum(1), e_end)
        return x0 + t.to(x0.dtype).reshape(-1, *([1] * (x0.ndim - 1))) * delta

    x = randn(shape, generator, device=device, dtype=dtype) * s[0]
    x0, log_p, grad, grad_x0 = twisted(x, s[0])
    log_w = log_p.clone()  # the first target is p(x) p~(y | x) against the proposal p(x)
    book = ParticleBook(n, ess_threshold, resampling, ess_warning, "tds")

    for i in tqdm(range(len(s) - 1), disable=not progress, desc="tds", leave=False):
        sigma, sigma_next = s[i], s[i + 1]
        log_w, (x, x0, log_p, grad, grad_x0) = book.step(log_w, [x, x0, log_p, grad, grad_x0], i, generator)
        if sigma_next == 0:
            # final step: the clean estimate, weighted by the true likelihood over the last twist
            log_w = log_w - likelihood.energy(x0).double() - log_p
            x = x0
        else:
            ratio = sigma_next**2 / sigma**2
            var = sigma_next**2 * (1 - ratio)
            x0_twisted = guided(x0, log_p, grad, grad_x0, sigma)
            mean_prior = x0 + ratio * (x - x0)
            mean_twisted = x0_twisted + ratio * (x - x0_twisted)
            x = mean_twisted + var**0.5 * randn(x.shape, generator, device=x.device, dtype=x.dtype)
            x0, log_p_next, grad, grad_x0 = twisted(x, sigma_next)
            log_w = log_w + (
                _transition_log_prob(x, mean_prior, var) - _transition_log_prob(x, mean_twisted, var) + log_p_next - log_p
            )
            log_p = log_p_next
        if callback is not None:
            callback({"x": x, "i": i, "sigma": sigma, "denoised": x0, "log_weights": log_w})

    log_w = book.record(log_w, len(s) - 1, x)  # the final weights (the history is taken before resampling)
    info = {"method": "tds", "nfe": len(s) - 1, "vjp": len(s) - 1, "num_particles": n,
            "ess_threshold": float(ess_threshold), "wall_time": time.perf_counter() - start}
    info.update(book.finish(x))
    return Posterior(x, log_w, book.ess_history, info)

