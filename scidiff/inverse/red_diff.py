"""RED-Diff: regularisation by denoising diffusion (Mardani, Song, Kautz, Vahdat, ICLR 2024, arXiv 2305.04391).

A variational posterior ``q(x0 | y) = N(mu, s^2 I)`` with ``s -> 0`` turns posterior sampling into

    min_mu  obs_weight * L_obs(mu) + E_{t, eps}[ lambda w(t) sg(eps_hat(x_t, t) - eps)^T mu ],

with ``x_t = alpha_t mu + sigma_t eps``. The stop-gradient means the denoiser is only run forward: the
prior gradient is ``lambda w(t) (eps_hat - eps)``. As in the authors' code (NVlabs/RED-diff,
``algos/reddiff.py``): ``mu`` starts at the pseudo-inverse ``A^+ y``; one Adam step (``betas = (0.9, 0.99)``)
is taken per timestep over a *descending* sweep of the DDPM grid with fresh noise each step; the losses are
means, ``L_obs = mean((y - A(mu))^2) / 2`` and ``L_noise = mean(sg(eps_hat - eps) * mu)``; and the weight is
``w(t) = sigma_t / alpha_t`` ("linear"), defaults ``lambda = 0.25``, ``lr = 0.1``.

In scidiff's sigma space (``x_sigma = x_t / alpha_t``, ``sigma = sigma_t / alpha_t``) the noise prediction is
``eps_hat = (x_sigma - D(x_sigma, sigma)) / sigma``, so ``eps_hat - eps = (mu - D(mu + sigma eps, sigma)) / sigma``
and the "linear" weight is simply ``sigma``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..diffusion._utils import append_dims, check_finite
from ..diffusion.random import Generator, rand, randn_like
from ..likelihoods.base import Likelihood, MissingCapability
from ..diffusion._utils import host_sigmas
from ._common import check_positive, check_shape
from .posterior import Posterior

# The denoiser weightings of the reference code, as functions of sigma = sqrt(1 - alpha_bar) / sqrt(alpha_bar).
WEIGHTINGS: dict[str, Callable[[Tensor], Tensor]] = {
    "linear": lambda s: s,
    "sqrt": torch.sqrt,
    "square": torch.square,
    "log": torch.log1p,
    "clip": lambda s: s.clamp_max(1.0),
    "power2over3": lambda s: s.pow(2.0 / 3.0),
    "const": torch.ones_like,
}
WEIGHTINGS["trunc_linear"] = WEIGHTINGS["clip"]  # the reference code's name


def red_diff(
    denoiser,
    likelihood: Likelihood,
    shape: Sequence[int],
    sigmas: Tensor,
    *,
    lam: float = 0.25,
    lr: float = 0.1,
    betas: tuple[float, float] = (0.9, 0.99),
    weighting: str = "linear",
    obs_weight: float = 1.0,
    data_term: str = "mean",
    mu_init: str | Tensor = "pinv",
    pinv_cutoff: float | None = None,
    order: str = "descending",
    sigma_x0: float = 0.0,
    cond: dict | None = None,
    generator: Generator = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float32,
    progress: bool = True,
    callback: Callable[[dict], None] | None = None,
) -> Posterior:
    """Run RED-Diff for ``shape[0]`` independent chains (fresh noise per chain) and return their ``mu``.

    Args:
        denoiser: ``denoiser(x, sigma, **cond) -> x0_hat``; only called forward, never differentiated.
        likelihood: the data term. ``data_term="mean"`` needs a Gaussian likelihood (its ``residual``).
        shape: ``(N, *event_shape)``.
        sigmas: the timestep grid as noise levels; the positive entries are visited (e.g. ``ddpm_sigmas(50)``
            gives the reference ``range(0, 1000, 20)`` sweep).
        lam: ``lambda``, weight of the denoising regulariser (``grad_term_weight``).
        lr, betas: Adam's learning rate and betas.
        weighting: ``w(sigma)``: ``"linear"`` (sigma), ``"sqrt"``, ``"square"``, ``"log"`` (log(1 + sigma)),
            ``"clip"`` (min(sigma, 1)), ``"power2over3"`` or ``"const"``.
        obs_weight: weight of the data term (``v`` in the code).
        data_term: ``"mean"`` -- ``mean((y - A(mu))^2) / 2`` over the measured entries as in the code (independent
            of ``sigma_y``; zero-filled unmeasured entries, e.g. an inpainting mask's, do not count);
            ``"energy"`` -- the likelihood's energy ``-log p(y | mu)`` as in the paper's objective (any Likelihood).
        mu_init: ``"pinv"`` (``A^+ y``, needs ``A_dagger``), ``"zeros"``, or a tensor of the event shape
            (optionally with a leading batch of 1 or ``N``).
        pinv_cutoff: with ``mu_init="pinv"``, use the truncated SVD pseudo-inverse ``V diag(1/s; s > cutoff) U^T y``
            (needs the likelihood's ``svd``) instead of ``A_dagger``: ill-conditioned operators (blur) otherwise
            amplify the noise in the start. The reference code zeroes singular values below 3e-2 for deblurring.
        order: ``"descending"`` (the code) or ``"random"`` (a random permutation per chain, as in the paper's
            ``t ~ U[0, T]``).
        sigma_x0: std of the variational posterior (0 in the code).
        generator: ``None``, a ``torch.Generator`` or per-sample generators (batch-size-independent results).

    Returns:
        :class:`Posterior` of the final ``mu``; ``info`` holds ``nfe``, ``vjp`` (always 0), ``wall_time``.
    """
    shape = check_shape(shape)
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {sorted(WEIGHTINGS)}, got {weighting!r}")
    if data_term not in ("mean", "energy"):
        raise ValueError(f"data_term must be 'mean' or 'energy', got {data_term!r}")
    if order not in ("descending", "random"):
        raise ValueError(f"order must be 'descending' or 'random', got {order!r}")
    check_positive(lr, "lr")
    if lam < 0 or obs_weight < 0 or sigma_x0 < 0:
        raise ValueError("lam, obs_weight and sigma_x0 must be non-negative")
    if data_term == "mean" and not hasattr(likelihood, "residual"):
        raise ValueError("data_term='mean' needs a Gaussian likelihood with a residual; use data_term='energy'")
    levels = [s for s in host_sigmas(sigmas) if s > 0]
    cond = cond or {}

    start = time.perf_counter()
    mu = _initial_mu(likelihood, mu_init, pinv_cutoff, shape, device, dtype).requires_grad_(True)
    table = _sigma_table(levels, order, shape[0], generator, mu)
    weights = lam * WEIGHTINGS[weighting](table)
    optimizer = torch.optim.Adam([mu], lr=lr, betas=betas, weight_decay=0.0)
    # counted once: the count reads the operator's singular values, a device sync if done every step
    n_meas = likelihood.num_measurements if data_term == "mean" else None
    for k in tqdm(range(len(levels)), disable=not progress, desc="red-diff", leave=False):
        sigma = table[:, k]
        sigma_b = append_dims(sigma, mu.ndim)
        x0 = mu + sigma_x0 * randn_like(mu, generator) if sigma_x0 > 0 else mu
        eps = randn_like(mu, generator)
        with torch.no_grad():
            eps_diff = (x0 - denoiser(x0 + sigma_b * eps, sigma, **cond)) / sigma_b
        loss_noise = (eps_diff * x0).flatten(1).mean(1)
        loss = weights[:, k] * loss_noise + obs_weight * _data_loss(likelihood, x0, sigma, n_meas)
        optimizer.zero_grad(set_to_none=True)
        # chains are independent: summing per-chain losses keeps every chain's Adam update batch-size free
        loss.sum().backward()
        optimizer.step()
        if callback is not None:
            callback({"mu": mu.detach(), "i": k, "sigma": sigma, "loss": loss.detach()})
    samples = mu.detach()
    check_finite(samples, "RED-Diff result")
    info = {"method": "red_diff", "nfe": len(levels), "vjp": 0, "wall_time": time.perf_counter() - start,
            "lam": float(lam), "lr": float(lr), "weighting": weighting, "order": order}
    return Posterior(samples=samples, info=info)


def _data_loss(likelihood, x0: Tensor, sigma: Tensor, n_meas: int | None) -> Tensor:
    if n_meas is not None:
        # a mean over the measured entries only: the reference operators return just the observed pixels
        # (inpainting keeps ``x[:, kept]``), while zero-filled ones would dilute the data term by the mask ratio
        return likelihood.residual(x0).pow(2).flatten(1).sum(1) / (2 * n_meas)
    return likelihood.energy(x0, sigma)


def _initial_mu(likelihood, mu_init, pinv_cutoff, shape, device, dtype) -> Tensor:
    if isinstance(mu_init, Tensor):
        init = mu_init.detach()
    elif mu_init == "zeros":
        return torch.zeros(shape, device=device, dtype=dtype)
    elif mu_init == "pinv" and pinv_cutoff is not None:
        init = _truncated_pinv(likelihood.require("svd"), likelihood.y, pinv_cutoff)
    elif mu_init == "pinv":
        try:
            a_dagger = likelihood.require("A_dagger")
        except MissingCapability as err:
            hint = "RED-Diff's mu_init='pinv' needs it; pass mu_init='zeros' or a tensor"
            raise MissingCapability(f"{err}. {hint}") from None
        init = a_dagger(likelihood.y).detach()
    else:
        raise ValueError(f"mu_init must be 'pinv', 'zeros' or a tensor, got {mu_init!r}")
    event = shape[1:]
    if tuple(init.shape) == event:
        init = init[None]
    if tuple(init.shape[1:]) != event or init.shape[0] not in (1, shape[0]):
        raise ValueError(f"initial mu has shape {tuple(init.shape)}; expected {event} or (1 or {shape[0]}, *{event})")
    check_finite(init, "initial mu")
    return init.to(device=device or init.device, dtype=dtype).expand(shape).clone()


def _truncated_pinv(svd, y: Tensor, cutoff: float) -> Tensor:
    s = torch.as_tensor(svd.singular_values, dtype=y.dtype, device=y.device)
    kept = s.abs() > cutoff
    inverse = torch.where(kept, 1.0 / torch.where(kept, s, torch.ones_like(s)), torch.zeros_like(s))
    return svd.V(inverse * svd.U_adjoint(y))


def _sigma_table(levels: list[float], order: str, n: int, generator: Generator, like: Tensor) -> Tensor:
    """``(N, steps)`` noise levels visited by each chain: the same descending sweep, or one permutation per chain."""
    table = torch.tensor(levels, dtype=like.dtype, device=like.device).expand(n, -1)
    if order == "random":
        keys = rand((n, len(levels)), generator, device=like.device, dtype=torch.float64)
        table = table.gather(1, keys.argsort(1))
    return table.contiguous()


