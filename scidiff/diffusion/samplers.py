"""Unconditional samplers written once over ``denoiser(x, sigma, **cond) -> x0_hat``.

Each sampler takes the starting state ``x`` (already at noise level ``sigmas[0]``) and a decreasing
schedule ``sigmas`` ending at 0 (see :mod:`scidiff.diffusion.schedules`), and works for any tensor rank
``(B, *dims)``. Names follow Karras et al. 2022 (EDM) and k-diffusion. The schedule is read on the host
as Python numbers, so the inner loop never synchronises with an accelerator.

The callback receives ``{"x", "i", "sigma", "sigma_hat", "denoised"}`` after each step; nothing else
keeps the trajectory.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ._utils import check_finite, host_sigmas
from .random import Generator, randn, randn_like

Callback = Callable[[dict], None]


def _prepare(x: Tensor, sigmas: Tensor) -> list[float]:
    check_finite(x, "initial state x")
    return host_sigmas(sigmas)


def _steps(n: int, progress: bool, desc: str):
    return tqdm(range(n), disable=not progress, desc=desc, leave=False)


def _denoise(denoiser, x: Tensor, sigma: float, cond: dict) -> Tensor:
    return denoiser(x, x.new_full((x.shape[0],), sigma), **cond)


@torch.no_grad()
def sample_euler(
    denoiser,
    x: Tensor,
    sigmas: Tensor,
    *,
    cond: dict | None = None,
    progress: bool = True,
    callback: Callback | None = None,
) -> Tensor:
    """Deterministic Euler steps of the probability-flow ODE ``dx/dsigma = (x - D(x, sigma)) / sigma``.

    With the VP reparametrisation this is exactly DDIM with ``eta = 0``. NFE = ``len(sigmas) - 1``.
    """
    s, cond = _prepare(x, sigmas), cond or {}
    for i in _steps(len(s) - 1, progress, "euler"):
        denoised = _denoise(denoiser, x, s[i], cond)
        x = x + (x - denoised) / s[i] * (s[i + 1] - s[i])
        if callback is not None:
            callback({"x": x, "i": i, "sigma": s[i], "sigma_hat": s[i], "denoised": denoised})
    return x


@torch.no_grad()
def sample_heun(
    denoiser,
    x: Tensor,
    sigmas: Tensor,
    *,
    cond: dict | None = None,
    generator: Generator = None,
    progress: bool = True,
    callback: Callback | None = None,
    s_churn: float = 0.0,
    s_tmin: float = 0.0,
    s_tmax: float = math.inf,
    s_noise: float = 1.0,
) -> Tensor:
    """EDM Algorithm 2: Heun's second-order method with optional stochastic churn.

    ``s_churn = 0`` gives the deterministic sampler (NFE = ``2 (len(sigmas) - 1) - 1`` when the schedule
    ends at 0, since the last step is Euler).
    """
    s, cond = _prepare(x, sigmas), cond or {}
    n = len(s) - 1
    for i in _steps(n, progress, "heun"):
        gamma = min(s_churn / n, math.sqrt(2) - 1) if s_tmin <= s[i] <= s_tmax else 0.0
        sigma_hat = s[i] * (1 + gamma)
        if gamma > 0:
            x = x + randn_like(x, generator) * s_noise * math.sqrt(sigma_hat**2 - s[i] ** 2)
        denoised = _denoise(denoiser, x, sigma_hat, cond)
        d = (x - denoised) / sigma_hat
        x_next = x + d * (s[i + 1] - sigma_hat)
        if s[i + 1] > 0:
            d_next = (x_next - _denoise(denoiser, x_next, s[i + 1], cond)) / s[i + 1]
            x_next = x + (d + d_next) / 2 * (s[i + 1] - sigma_hat)
        x = x_next
        if callback is not None:
            callback({"x": x, "i": i, "sigma": s[i], "sigma_hat": sigma_hat, "denoised": denoised})
    return x


@torch.no_grad()
def sample_ddim(
    denoiser,
    x: Tensor,
    sigmas: Tensor,
    *,
    eta: float = 0.0,
    cond: dict | None = None,
    generator: Generator = None,
    progress: bool = True,
    callback: Callback | None = None,
) -> Tensor:
    """DDIM (Song et al. 2021) with stochasticity ``eta``, written in sigma space.

    Dividing the VP update by ``sqrt(alpha_bar)`` gives
    ``x' = x0_hat + sigma_down (x - x0_hat) / sigma + sigma_up z`` with
    ``sigma_up = eta sigma' sqrt(1 - sigma'^2 / sigma^2)`` and ``sigma_down^2 = sigma'^2 - sigma_up^2``.
    ``eta = 0`` is deterministic DDIM (= Euler), ``eta = 1`` is ancestral DDPM sampling.
    """
    if eta < 0:
        raise ValueError(f"eta must be >= 0, got {eta}")
    s, cond = _prepare(x, sigmas), cond or {}
    for i in _steps(len(s) - 1, progress, f"ddim(eta={eta:g})"):
        denoised = _denoise(denoiser, x, s[i], cond)
        x = ddim_step(x, denoised, s[i], s[i + 1], eta=eta, generator=generator)
        if callback is not None:
            callback({"x": x, "i": i, "sigma": s[i], "sigma_hat": s[i], "denoised": denoised})
    return x


def ddim_step(
    x: Tensor, denoised: Tensor, sigma: float, sigma_next: float, *, eta: float = 0.0, generator: Generator = None
) -> Tensor:
    """One DDIM step from ``sigma`` to ``sigma_next`` given the denoised estimate (see :func:`sample_ddim`).

    Shared by the unconditional sampler and by guided posterior samplers (DPS), which pass their own
    ``denoised``. ``eta = 0``: Euler/DDIM; ``eta = 1``: ancestral DDPM.
    """
    sigma_up = min(sigma_next, eta * sigma_next * math.sqrt(max(0.0, 1 - sigma_next**2 / sigma**2)))
    sigma_down = math.sqrt(sigma_next**2 - sigma_up**2)
    x = denoised + (x - denoised) * (sigma_down / sigma)
    if sigma_up > 0:
        x = x + randn_like(x, generator) * sigma_up
    return x


def sample_ancestral(denoiser, x: Tensor, sigmas: Tensor, **kwargs) -> Tensor:
    """Ancestral (DDPM) sampling: :func:`sample_ddim` with ``eta = 1``."""
    return sample_ddim(denoiser, x, sigmas, eta=1.0, **kwargs)


@torch.no_grad()
def sample_euler_maruyama(
    denoiser,
    x: Tensor,
    sigmas: Tensor,
    *,
    cond: dict | None = None,
    generator: Generator = None,
    progress: bool = True,
    callback: Callback | None = None,
) -> Tensor:
    """Euler--Maruyama on the reverse-time SDE ``dx = -d[sigma^2] score dt + sqrt(d[sigma^2]) dW``.

    With ``score = (D(x, sigma) - x) / sigma^2`` and ``h = sigma^2 - sigma'^2`` one step is
    ``x' = x + h score + sqrt(h) z``. The last step (to ``sigma = 0``) adds no noise.
    """
    s, cond = _prepare(x, sigmas), cond or {}
    for i in _steps(len(s) - 1, progress, "euler-maruyama"):
        denoised = _denoise(denoiser, x, s[i], cond)
        h = s[i] ** 2 - s[i + 1] ** 2
        x = x + (denoised - x) * (h / s[i] ** 2)
        if s[i + 1] > 0:
            x = x + randn_like(x, generator) * math.sqrt(h)
        if callback is not None:
            callback({"x": x, "i": i, "sigma": s[i], "sigma_hat": s[i], "denoised": denoised})
    return x


@torch.no_grad()
def sample_predictor_corrector(
    denoiser,
    x: Tensor,
    sigmas: Tensor,
    *,
    corrector_steps: int = 1,
    snr: float = 0.16,
    corrector_sigma_max: float = math.inf,
    cond: dict | None = None,
    generator: Generator = None,
    progress: bool = True,
    callback: Callback | None = None,
) -> Tensor:
    """Predictor--corrector sampling (Song et al. 2021, "Score-based generative modeling through SDEs", Alg. 2/5).

    Predictor: one Euler--Maruyama step of the reverse SDE from ``sigma_i`` to ``sigma_{i+1}``. Corrector:
    ``corrector_steps`` Langevin steps ``x <- x + e score + sqrt(2 e) z`` at ``sigma_{i+1}`` (where
    ``sigma_{i+1} <= corrector_sigma_max``) with ``e = 2 (snr sigma_{i+1})^2``. This is Alg. 5's step
    ``2 (snr |z| / |score|)^2`` at its typical value (``|score| ~ |z| / sigma``), made the same for every sample:
    per-sample norms make the step depend on the state, which breaks the invariance of the Langevin kernel in low
    dimension (variances come out twice too large for a 4-dimensional Gaussian), and batch-averaged norms would make
    a sample depend on the batch. ``-log p_sigma`` has curvature at most ``1 / sigma^2`` (a Gaussian smoothing of
    width ``sigma``), so the step stays stable at every level. The Langevin steps
    leave ``p_sigma`` invariant, so errors carried in from earlier levels (here: samples that a too-weak guidance
    left outside the event, then pushed onto its boundary) relax towards the law at the current level instead of
    being transported as they are by the probability-flow ODE. NFE = ``(1 + corrector_steps) (len(sigmas) - 1)``
    at most (the last step, to ``sigma = 0``, is the denoiser's mean and has no corrector).
    """
    if corrector_steps < 0 or not snr > 0:
        raise ValueError(f"corrector_steps must be >= 0 and snr > 0; got {corrector_steps} and {snr}")
    s, cond = _prepare(x, sigmas), cond or {}

    def score(x: Tensor, sigma: float) -> Tensor:
        return (_denoise(denoiser, x, sigma, cond) - x) / sigma**2

    for i in _steps(len(s) - 1, progress, "predictor-corrector"):
        h = s[i] ** 2 - s[i + 1] ** 2
        x = x + h * score(x, s[i])
        if s[i + 1] > 0:
            x = x + math.sqrt(h) * randn_like(x, generator)
        if 0 < s[i + 1] <= corrector_sigma_max:
            for _ in range(corrector_steps):
                e = 2 * (snr * s[i + 1]) ** 2
                x = x + e * score(x, s[i + 1]) + math.sqrt(2 * e) * randn_like(x, generator)
        if callback is not None:
            callback({"x": x, "i": i, "sigma": s[i], "sigma_hat": s[i]})
    return x


SAMPLERS: dict[str, Callable[..., Tensor]] = {
    "euler": sample_euler,
    "heun": sample_heun,
    "ddim": sample_ddim,
    "ancestral": sample_ancestral,
    "euler_maruyama": sample_euler_maruyama,
    "pc": sample_predictor_corrector,
}


def sample(
    denoiser,
    shape: Sequence[int],
    sigmas: Tensor,
    *,
    sampler: str = "heun",
    generator: Generator = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float32,
    **kwargs,
) -> Tensor:
    """Draw ``shape[0]`` samples: ``x_T = sigmas[0] * n`` then run the named sampler.

    ``generator`` follows :mod:`scidiff.diffusion.random`; with per-sample generators (see
    :func:`~scidiff.diffusion.random.seeded_generators`) every sample is independent of batch size.
    Extra keyword arguments go to the sampler (``cond``, ``progress``, ``callback``, ``eta``, ``s_churn``...).
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; choose from {sorted(SAMPLERS)}")
    fn = SAMPLERS[sampler]
    if fn is not sample_euler:
        kwargs["generator"] = generator
    x = randn(shape, generator, device=device, dtype=dtype) * float(torch.as_tensor(sigmas)[0])
    return fn(denoiser, x, sigmas, **kwargs)
