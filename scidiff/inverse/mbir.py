"""DiffusionMBIR (Chung, Ryu, McCann, Klasky & Ye, CVPR 2023): a 2D slice prior plus a TV prior along z.

Every axial slice follows a reverse VE diffusion with the 2D prior (predictor--corrector, Song et al.
2021), slices in parallel batches of ``max_slices``. After each diffusion step the whole volume takes one
ADMM iteration of ``1/2 |A x - y|^2 + lam |D_z x|_1`` with ``n_cg`` CG steps; the ADMM variables ``z, u``
persist across diffusion steps ("variable sharing", paper Sec. 3). The paper's defaults: 2000 steps, one
Langevin corrector with ``snr = 0.16``, ``n_cg = 1``, z-only TV (``tv="all"`` gives the all-direction variant).

Deviations from the reference code, on purpose: the adjoint is exact (not an unfiltered back-projection),
``lam``/``rho`` are relative to ``|A|^2`` (the code's 0.04/10 are tied to its scaled back-projection),
z-differences have Neumann ends (the code wraps the last slice onto the first), and the sigma grid is the
prior's (``exponential_sigmas``: geometric, as the VE-SDE's).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..diffusion._utils import host_sigmas
from ..diffusion.random import Generator, randn
from ..diffusion.schedules import exponential_sigmas
from ._volume import admm_state, check_problem, prior_sigma_range, prior_units, slicewise_denoiser, volume_shape
from .posterior import Posterior


def _langevin_eps(score: Tensor, noise: Tensor, snr: float) -> Tensor:
    """Corrector step size ``2 (snr |xi| / |s|)^2`` (Song et al. 2021, Alg. 5), norms per slice averaged over the
    slices of each volume, ``(B, 1, 1, 1, 1)`` -- volumes in a batch stay independent."""
    s_norm = score.flatten(3).norm(dim=-1).mean((1, 2))
    z_norm = noise.flatten(3).norm(dim=-1).mean((1, 2))
    return (2 * (snr * z_norm / s_norm.clamp_min(1e-12)) ** 2).reshape(-1, 1, 1, 1, 1)


@torch.no_grad()
def diffusion_mbir(
    denoiser,
    physics,
    y: Tensor,
    *,
    n_steps: int = 2000,
    sigma_min: float | None = None,
    sigma_max: float | None = None,
    lam: float = 1e-3,
    rho: float = 1e-2,
    tv: str = "z",
    n_cg: int = 1,
    snr: float = 0.16,
    corrector: bool = True,
    boundary: str = "neumann",
    max_slices: int = 12,
    generator: Generator = None,
    progress: bool = False,
    callback: Callable[[dict], None] | None = None,
) -> Posterior:
    """Reconstruct volumes ``(B, 1, D, H, W)`` from ``y = physics.A(x)`` with a 2D slice ``denoiser``.

    ``denoiser(x, sigma)`` acts on ``(N, 1, H, W)`` slices (a :class:`~scidiff.priors.DiffusionPrior` is used
    in physical units through its normaliser). ``sigma_min``/``sigma_max`` default to the prior's.
    ``tv="none"`` turns the z-prior off (slice-wise 2D diffusion with CG data consistency only).
    Returns a :class:`~scidiff.inverse.Posterior` holding one sample per measured volume.
    """
    check_problem(physics, y)
    start = time.perf_counter()
    mean, std = prior_units(denoiser)
    sigma_min, sigma_max = prior_sigma_range(denoiser, sigma_min, sigma_max, std)
    sigmas = host_sigmas(exponential_sigmas(n_steps, sigma_min, sigma_max))
    D = slicewise_denoiser(denoiser, max_slices, mean, std)  # noqa: N806
    admm = admm_state(physics, y, lam, rho, tv, boundary)
    x = mean + sigmas[0] * randn(volume_shape(physics, y), generator, device=y.device, dtype=y.dtype)
    nfe = 0
    for i in tqdm(range(n_steps), disable=not progress, desc="diffusion-mbir", leave=False):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        # predictor: reverse-diffusion step of the VE SDE
        score = (D(x, sigma) - x) / sigma**2
        h = sigma**2 - sigma_next**2
        x = x + h * score
        nfe += 1
        if sigma_next > 0:
            x = x + math.sqrt(h) * randn(x.shape, generator, device=x.device, dtype=x.dtype)
            if corrector:
                score = (D(x, sigma_next) - x) / sigma_next**2
                noise = randn(x.shape, generator, device=x.device, dtype=x.dtype)
                eps = _langevin_eps(score, noise, snr)
                x = x + eps * score + torch.sqrt(2 * eps) * noise
                nfe += 1
        # data consistency and the z-prior on the whole volume: one ADMM iteration, variables shared
        x = admm.step(x, n_cg)
        if callback is not None:
            callback({"i": i, "sigma": sigma, "x": x})
    info = {"method": "DiffusionMBIR", "n_steps": n_steps, "nfe_per_slice": nfe, "tv": tv, "lam": lam, "rho": rho,
            "n_cg": n_cg, "wall_time_s": time.perf_counter() - start}
    return Posterior(x, info=info)
