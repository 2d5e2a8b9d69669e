"""ReSample: latent diffusion posterior sampling with hard data consistency.

B. Song, S. M. Kwon, Z. Zhang, X. Hu, Q. Qu, L. Shen, "Solving Inverse Problems with Latent Diffusion Models via
Hard Data Consistency", ICLR 2024 (arXiv 2307.08123), Algorithm 1, with the schedule of the authors' code
(``resample_sampling`` in soominkwon/resample). Over ``T'`` DDIM steps (``eta = 0``), at step ``i`` with
``index = T' - 1 - i``:

1. a DDIM step from ``z_t`` to ``z'_{t-1}`` and a latent-DPS step,
   ``z_{t-1} = z'_{t-1} - (dps_scale * alpha_bar_t) grad_{z_t} |y - A(decode(z0_hat(z_t)))|``;
2. hard data consistency when ``0 < index <= T' - T' // splits`` and ``index % skip == 0``:
   *time travel* -- ``time_travel`` further DDIM steps from ``z_{t-1}`` give ``z0_hat``; then either
   **pixel space** (``index >= T' // splits``, the middle third): ``x* = argmin_x |y - A(x)|^2`` from
   ``decode(z0_hat)`` (AdamW, lr 1e-2, <= 2000 iterations) and ``z0* = encode(x*)``; or **latent space**
   (the final third): ``z0* = argmin_z |y - A(decode(z))|^2`` from ``z0_hat`` (AdamW, lr 5e-3, <= 500
   iterations, stopped early when the loss is above its value 200 iterations before). Both stop when the
   mean squared residual falls below ``tol^2`` (``tol = 1e-3`` in the code);
3. **stochastic resampling** (paper eq. 9): ``z_{t-1} ~ N((s2 sqrt(a) z0* + (1 - a) z_{t-1}) / (s2 + 1 - a),
   s2 (1 - a) / (s2 + 1 - a) I)`` with ``a = alpha_bar_{t-1}`` and ``s2 = gamma (1 - a) / (1 - alpha_bar_t)
   (1 - alpha_bar_t / a)`` -- ``gamma`` times the DDPM posterior variance, ``gamma = 40``. It is the exact
   posterior of ``z_{t-1} ~ N(sqrt(a) z0*, (1 - a) I)`` (the forward marginal around the data-consistent
   estimate) observed as ``z'_{t-1} = z_{t-1} + sqrt(s2) n``;
4. after the last step, one more latent optimisation, then decode.

scidiff works in sigma space (``z_sigma = z_t / sqrt(alpha_bar)``, see :mod:`scidiff.diffusion.schedules`):
there the DPS step is scaled by ``1 / sqrt(alpha_bar_t alpha_bar_{t-1})`` (as in :func:`~scidiff.inverse.dps`)
and the resampling reads ``N((tau2 z0* + sigma^2 z) / (tau2 + sigma^2), tau2 sigma^2 / (tau2 + sigma^2))`` with
``tau2 = s2 / a`` (:func:`stochastic_resample`). Deviation from the code: the code's DPS step evaluates the
decoder at ``(z_t - (1 - alpha_bar) eps_hat) / sqrt(alpha_bar)`` (``1 - alpha_bar`` where Tweedie's formula has
its square root); scidiff uses the Tweedie estimate ``D(z, sigma)`` itself. Each chain stops its inner
optimisation on its own, so results do not depend on batch size.

:func:`resample_pixel` is the same algorithm for an ordinary (pixel-space) prior: encode and decode are the
identity, so hard data consistency and stochastic resampling act on the image itself.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..diffusion._utils import check_finite, host_sigmas
from ..diffusion.random import Generator, randn, randn_like
from ..diffusion.samplers import ddim_step
from ..likelihoods.base import Likelihood
from ._common import check_positive, check_shape
from .dps import _denoise_and_vjp
from .latent_dps import DecodedLikelihood, Map, latent_parts
from .posterior import Posterior


def resample_variance(sigma: float, sigma_next: float, gamma: float = 40.0) -> float:
    """``tau2``: the resampling variance of the sigma-space state at ``sigma_next``.

    ``gamma`` times the DDPM posterior variance ``(1 - a') / (1 - a) (1 - a / a')`` (``a = alpha_bar`` at ``sigma``,
    ``a'`` at ``sigma_next``), divided by ``a'`` to go from the VP state to the sigma-space state.
    """
    a, a_next = 1.0 / (1.0 + sigma**2), 1.0 / (1.0 + sigma_next**2)
    return gamma * (1 - a_next) / (1 - a) * (1 - a / a_next) / a_next


def stochastic_resample(z: Tensor, z0_star: Tensor, sigma: float, tau2: float, *, generator: Generator = None) -> Tensor:
    """Draw from ``N(z0*, sigma^2 I) x N(z, tau2 I)`` normalised: ReSample's eq. 9 in sigma space.

    ``z`` is the current state at noise level ``sigma``, ``z0_star`` the data-consistent clean estimate. With
    ``tau2 -> inf`` this is a fresh forward noising of ``z0*``; with ``tau2 -> 0`` it keeps ``z``.
    """
    if not (sigma > 0 and tau2 > 0):
        raise ValueError(f"stochastic resampling needs sigma > 0 and tau2 > 0; got sigma={sigma}, tau2={tau2}")
    s2 = sigma**2
    mean = (tau2 * z0_star + s2 * z) / (tau2 + s2)
    return mean + math.sqrt(tau2 * s2 / (tau2 + s2)) * randn_like(z, generator)


def misfit(likelihood: Likelihood, x: Tensor) -> Tensor:
    """Mean squared residual ``mean((y - A(x))^2)`` per item (the loss of the reference code), ``(B,)``."""
    return likelihood.require("residual")(x).pow(2).flatten(1).mean(1)


def data_consistency(
    loss_fn: Callable[[Tensor], Tensor],
    init: Tensor,
    *,
    lr: float,
    max_iters: int,
    tol: float,
    patience: int | None = None,
    weight_decay: float = 0.01,
) -> tuple[Tensor, int]:
    """``argmin_v loss_fn(v)`` by AdamW from ``init``, each batch item stopped on its own.

    An item stops when its loss is below ``tol^2`` or (with ``patience``) above its loss ``patience`` iterations
    earlier; it then keeps the value that met the criterion. ``loss_fn`` returns one loss per item, and the
    items are independent, so each follows exactly the path it would follow alone. Returns the result and the
    number of iterations run.
    """
    v = init.detach().clone().requires_grad_(True)
    optimizer = torch.optim.AdamW([v], lr=lr, weight_decay=weight_decay)
    active = torch.ones(v.shape[0], dtype=torch.bool, device=v.device)
    history: list[Tensor] = []
    its = 0
    for its in range(1, max_iters + 1):
        optimizer.zero_grad(set_to_none=True)
        with torch.enable_grad():
            loss = loss_fn(v)
            loss.sum().backward()
        current = loss.detach()
        stop = current < tol**2
        if patience is not None:
            history.append(current)
            if len(history) > patience:
                stop = stop | (current > history.pop(0))
        active = active & ~stop
        if not bool(active.any()):
            break
        frozen = v.detach().clone()
        optimizer.step()
        with torch.no_grad():
            v[~active] = frozen[~active]
    return v.detach(), its


def _time_travel(denoiser, z: Tensor, s: list[float], start: int, steps: int, cond: dict) -> Tensor:
    """``z0_hat`` after ``steps - 1`` further DDIM (eta 0) steps from ``z`` at ``s[start]`` (the code's ``k = 5``)."""
    steps = min(steps, len(s) - 1 - start)
    with torch.no_grad():
        for j in range(steps):
            z0_hat = denoiser(z, z.new_full((z.shape[0],), s[start + j]), **cond)
            if j < steps - 1:
                z = ddim_step(z, z0_hat, s[start + j], s[start + j + 1])
    return z0_hat


def resample(
    prior,
    likelihood: Likelihood,
    shape: Sequence[int],
    sigmas: Tensor,
    *,
    encode: Map | None = None,
    decode: Map | None = None,
    dps_scale: float = 0.5,
    gamma: float = 40.0,
    skip: int = 10,
    splits: int = 3,
    time_travel: int = 5,
    pixel_lr: float = 1e-2,
    pixel_iters: int = 2000,
    latent_lr: float = 5e-3,
    latent_iters: int = 500,
    patience: int = 200,
    tol: float | str = 1e-3,
    weight_decay: float = 0.01,
    final_optimisation: bool = True,
    eta: float = 0.0,
    cond: dict | None = None,
    generator: Generator = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float32,
    progress: bool = True,
    callback: Callable[[dict], None] | None = None,
) -> Posterior:
    """Draw ``shape[0]`` samples with ReSample; every default is the authors' code's.

    Args:
        prior: the latent Denoiser ``prior(z, sigma)``, with ``encode``/``decode`` unless they are passed
            (:class:`scidiff.priors.LatentPrior`).
        likelihood: the pixel-space data term; hard data consistency needs its ``residual`` (a Gaussian
            likelihood, linear or not).
        shape: ``(N, *latent_shape)``.
        sigmas: the latent schedule, ``ddpm_sigmas(500)`` in the paper.
        dps_scale: latent-DPS step ``dps_scale * alpha_bar_t`` on ``|y - A(decode(z0_hat))|`` (0 switches it off).
        gamma: stochastic-resampling variance as a multiple of the DDPM posterior variance.
        skip, splits, time_travel: hard data consistency every ``skip``-th step of the last ``1 - 1/splits`` of
            the steps (pixel space in the middle part, latent space in the final ``1/splits``), from the
            estimate ``time_travel`` DDIM steps ahead.
        pixel_lr, pixel_iters, latent_lr, latent_iters, patience, weight_decay: the AdamW solves.
        tol: stop an inner solve when the mean squared residual is below ``tol^2``; ``"noise"`` uses the
            likelihood's ``sigma_y`` (fit to the noise level, the discrepancy principle).
        final_optimisation: the code's closing latent optimisation of ``z_0``.
        eta: DDIM stochasticity of the outer steps (0 in the paper).
        generator: ``None``, a ``torch.Generator`` or per-sample generators (batch-size-independent samples).

    Returns:
        :class:`Posterior` of decoded samples; ``info`` has ``nfe`` (denoiser forwards incl. time travel),
        ``vjp``, ``dc_events``, ``inner_iters`` (per kind), ``wall_time`` and the knobs; ``info["latents"]``
        the final latent states.
    """
    shape = check_shape(shape)
    encode, decode = latent_parts(prior, encode, decode)
    for name, value in (("gamma", gamma), ("pixel_lr", pixel_lr), ("latent_lr", latent_lr)):
        check_positive(value, name)
    for name, value in (("skip", skip), ("splits", splits), ("time_travel", time_travel),
                        ("pixel_iters", pixel_iters), ("latent_iters", latent_iters), ("patience", patience)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if dps_scale < 0 or eta < 0:
        raise ValueError(f"dps_scale and eta must be non-negative, got {dps_scale}, {eta}")
    tol = _tolerance(likelihood, tol)
    likelihood.require("residual")
    s, cond = host_sigmas(sigmas), cond or {}
    latent_lik = DecodedLikelihood(likelihood, decode)
    sigma_y = float(getattr(likelihood, "sigma_y", None) or 1.0)

    def solve_pixel(z0_hat):
        with torch.no_grad():
            x0 = decode(z0_hat)
        x_star, its = data_consistency(lambda x: misfit(likelihood, x), x0, lr=pixel_lr, max_iters=pixel_iters,
                                       tol=tol, weight_decay=weight_decay)
        with torch.no_grad():
            return encode(x_star), its

    def solve_latent(z0_hat):
        return data_consistency(lambda z: misfit(latent_lik, z), z0_hat, lr=latent_lr, max_iters=latent_iters,
                                tol=tol, patience=patience, weight_decay=weight_decay)

    start = time.perf_counter()
    n = len(s) - 1
    split = n // splits
    z = randn(shape, generator, device=device, dtype=dtype) * s[0]
    nfe, events, iters = 0, 0, {"pixel": 0, "latent": 0}
    for i in tqdm(range(n), disable=not progress, desc="resample", leave=False):
        index = n - 1 - i
        z0_hat, grad = _denoise_and_vjp(prior, latent_lik, z, s[i], "norm", sigma_y, cond)
        z_next = ddim_step(z, z0_hat, s[i], s[i + 1], eta=eta, generator=generator)
        if dps_scale > 0:
            step = dps_scale / (1 + s[i] ** 2) * math.sqrt((1 + s[i] ** 2) * (1 + s[i + 1] ** 2))
            z_next = z_next - step * grad
        nfe += 1
        kind = None
        if 0 < index <= n - split and index % skip == 0:
            travel = min(time_travel, n - 1 - i)
            z0_travel = _time_travel(prior, z_next, s, i + 1, travel, cond)
            nfe, events = nfe + travel, events + 1
            kind = "pixel" if index >= split else "latent"
            z0_star, its = (solve_pixel if kind == "pixel" else solve_latent)(z0_travel)
            iters[kind] += its
            z_next = stochastic_resample(z_next, z0_star, s[i + 1], resample_variance(s[i], s[i + 1], gamma),
                                         generator=generator)
        z = z_next.detach()
        if callback is not None:
            callback({"z": z, "i": i, "sigma": s[i], "denoised": z0_hat, "data_consistency": kind})
    if final_optimisation:
        z, its = solve_latent(z)
        iters["latent"] += its
    check_finite(z, "ReSample latents")
    with torch.no_grad():
        x = decode(z)
    info = {"method": "resample", "nfe": nfe, "vjp": n, "dc_events": events, "inner_iters_pixel": iters["pixel"],
            "inner_iters_latent": iters["latent"], "wall_time": time.perf_counter() - start, "gamma": float(gamma),
            "dps_scale": float(dps_scale), "tol": float(tol), "latents": z}
    return Posterior(samples=x, info=info)


def resample_pixel(denoiser, likelihood: Likelihood, shape: Sequence[int], sigmas: Tensor, **kwargs) -> Posterior:
    """ReSample on an ordinary prior: hard data consistency and stochastic resampling in pixel space.

    Same arguments as :func:`resample` (``shape = (N, *event_shape)``); encode and decode are the identity, so
    the "pixel" and "latent" solves differ only in their optimiser settings.
    """
    post = resample(denoiser, likelihood, shape, sigmas, encode=_identity, decode=_identity, **kwargs)
    post.info["method"] = "resample_pixel"
    return post


def _identity(x: Tensor) -> Tensor:
    return x


def _tolerance(likelihood: Likelihood, tol: float | str) -> float:
    if tol == "noise":
        return float(likelihood.require("sigma_y"))
    if isinstance(tol, str) or not tol >= 0:
        raise ValueError(f"tol must be a non-negative number or 'noise', got {tol!r}")
    return float(tol)
