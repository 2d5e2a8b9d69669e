"""Reflected diffusion prior on a box (Lou & Ermon, "Reflected Diffusion Models", ICML 2023).

Forward process: reflected variance-exploding Brownian motion ``dX = g(t) dW + dL`` on the box with
``sigma(t) = sigma_min (sigma_max / sigma_min)^t`` and ``g(t)^2 = d sigma^2 / dt = 2 sigma^2 ln(sigma_max / sigma_min)``.
Its transition kernel is a product of 1D Neumann heat kernels, written here as the image sum

    p(x | x0) = sum_k [ phi_sigma(x - x0 - 2k) + phi_sigma(x + x0 - 2k) ]     (unit interval, period 2)

evaluated with a log-sum-exp, so the score is stable for every ``sigma`` (Lou's code switches to the
cosine series above ``sigma^2 / 2 = 1e-2`` because its image sum is not in log space). Training is
denoising score matching with that kernel score; sampling is the reflected reverse SDE started from
the uniform law (the limit of the kernel for ``sigma_max`` much larger than the box). Nothing is clamped.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..diffusion._utils import check_finite
from ..diffusion.random import Generator, rand, randn_like
from .domains import Box
from .matching import TimeMLP
from .sde import reflected_euler_maruyama


def _images(y: Tensor, y0: Tensor, s: Tensor) -> Tensor:
    """Displacements ``y - image`` to every image of ``y0`` that matters: shape ``(..., 2(2K+1))``."""
    k_max = int(math.ceil(3.0 * float(s.max()) + 2.0))
    k = torch.arange(-k_max, k_max + 1, device=y.device, dtype=y.dtype)
    u1 = y[..., None] - y0[..., None] - 2 * k
    u2 = y[..., None] + y0[..., None] - 2 * k
    return torch.cat([u1, u2], dim=-1)


def _unit_box_images(x: Tensor, x0: Tensor, sigma: Tensor, domain: Box) -> tuple[Tensor, Tensor, Tensor]:
    """Map the box to the unit cube: image offsets ``u``, the scaled sigma ``s`` (broadcast over images), width ``w``."""
    lo, hi = domain._cast(x)
    w = hi - lo
    s = sigma.reshape(-1, *([1] * (x.ndim - 1))) / w
    return _images((x - lo) / w, (x0 - lo) / w, s), s[..., None], w


def reflected_heat_kernel_log_prob(x: Tensor, x0: Tensor, sigma: Tensor, domain: Box) -> Tensor:
    """``log p(x | x0)`` per coordinate ``(B, *dims)`` of reflected BM with variance ``sigma^2`` in the box."""
    u, s, w = _unit_box_images(x, x0, sigma, domain)
    return torch.logsumexp(-(u**2) / (2 * s**2), dim=-1) - torch.log(s[..., 0] * math.sqrt(2 * math.pi)) - torch.log(w)


def reflected_heat_kernel_score(x: Tensor, x0: Tensor, sigma: Tensor, domain: Box) -> Tensor:
    """``grad_x log p(x | x0)`` of the reflected heat kernel on a box (the DSM target of Lou & Ermon)."""
    u, s, w = _unit_box_images(x, x0, sigma, domain)
    weights = torch.softmax(-(u**2) / (2 * s**2), dim=-1)
    return (weights * (-u / s**2)).sum(-1) / w


def reflected_empirical_score(x: Tensor, data: Tensor, sigma: Tensor, domain: Box) -> Tensor:
    """Exact score of the reflected-noised empirical measure of ``data`` ``(N, d)``: a test oracle."""
    B, N = x.shape[0], data.shape[0]
    xe = x[:, None].expand(B, N, -1).reshape(B * N, -1)
    de = data[None].expand(B, N, -1).reshape(B * N, -1)
    se = sigma.repeat_interleave(N)
    logp = reflected_heat_kernel_log_prob(xe, de, se, domain).sum(-1).reshape(B, N)
    scores = reflected_heat_kernel_score(xe, de, se, domain).reshape(B, N, -1)
    return (torch.softmax(logp, dim=1)[..., None] * scores).sum(1)


class ReflectedDiffusionPrior(nn.Module):
    """A score model on a box trained by reflected denoising score matching; sampled by the reflected reverse SDE.

    ``sigma_min`` and ``sigma_max`` are in units of the box width (defaults 0.01 and 5, Lou & Ermon).
    The network sees coordinates rescaled to ``[0, 1]`` and returns ``sigma * score`` (unit-variance target).
    """

    def __init__(self, domain: Box, sigma_min: float = 0.01, sigma_max: float = 5.0, hidden: int = 128, depth: int = 3):
        super().__init__()
        if not isinstance(domain, Box):
            raise TypeError("the reflected heat-kernel score is closed-form only for a Box domain")
        if not 0 < sigma_min < sigma_max:
            raise ValueError(f"need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
        self.domain, self.sigma_min, self.sigma_max = domain, float(sigma_min), float(sigma_max)
        self.width = float((domain.hi - domain.lo).max())
        self.net = TimeMLP(domain.dim, domain.dim, hidden, depth)

    def sigma(self, t: Tensor) -> Tensor:
        """Absolute noise level ``sigma(t)`` (box width times the unit-box schedule)."""
        return self.width * self.sigma_min * (self.sigma_max / self.sigma_min) ** t

    def g2(self, t: float) -> float:
        """``g(t)^2 = d sigma^2 / dt``."""
        s = self.width * self.sigma_min * (self.sigma_max / self.sigma_min) ** t
        return 2.0 * s**2 * math.log(self.sigma_max / self.sigma_min)

    def score(self, x: Tensor, t: Tensor) -> Tensor:
        lo, hi = self.domain._cast(x)
        return self.net((x - lo) / (hi - lo), t) / self.sigma(t)[:, None]

    def loss(self, x0: Tensor, generator: Generator = None) -> Tensor:
        """``E sigma^2 |s(x_t, t) - grad log p(x_t | x0)|^2`` with ``x_t`` the reflected (folded) noising of ``x0``."""
        t = rand((x0.shape[0],), generator, device=x0.device, dtype=x0.dtype)
        sigma = self.sigma(t)
        xt = self.domain.fold(x0 + sigma[:, None] * randn_like(x0, generator))
        target = reflected_heat_kernel_score(xt, x0, sigma, self.domain)
        return ((sigma[:, None] * (self.score(xt, t) - target)) ** 2).sum(-1).mean()

    def fit(self, data: Tensor, n_iter: int = 2000, batch_size: int = 256, lr: float = 2e-3,
            generator: torch.Generator | None = None, progress: bool = True) -> list[float]:
        """Adam on :meth:`loss` over minibatches of ``data`` (which must lie in the box); returns the losses."""
        if data.ndim != 2 or data.shape[1] != self.domain.dim:
            raise ValueError(f"data must be (N, {self.domain.dim}); got {tuple(data.shape)}")
        check_finite(data, "data")
        self.domain.check_inside(data, "data")
        opt = torch.optim.Adam(self.parameters(), lr=lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, n_iter)
        losses = []
        self.train()
        for _ in tqdm(range(n_iter), disable=not progress, desc="reflected DSM", leave=False):
            idx = torch.randint(data.shape[0], (batch_size,), generator=generator).to(data.device)
            loss = self.loss(data[idx], generator)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
        self.eval()
        return losses

    @torch.no_grad()
    def sample(self, n: int, n_steps: int = 500, boundary: str = "reflect", generator: Generator = None,
               progress: bool = True, score_fn=None, dtype: torch.dtype = torch.float32) -> Tensor:
        """Reflected reverse SDE ``dx = -g^2 s dt + g dW`` from ``t = 1`` (uniform start) to ``t = 0``.

        ``score_fn(x, t)`` replaces the network (e.g. :func:`reflected_empirical_score` in tests).
        The last step is deterministic (noise removal, as in Lou & Ermon's sampler).
        """
        score = score_fn if score_fn is not None else self.score
        lo, hi = (b.to(dtype) for b in self.domain.bounds())
        x = lo + rand((n, self.domain.dim), generator, dtype=dtype) * (hi - lo)
        return reflected_euler_maruyama(
            lambda x_, t: -self.g2(float(t[0])) * score(x_, t), x, self.domain,
            diffusion=lambda t: math.sqrt(self.g2(t)), t0=1.0, t1=0.0, n_steps=n_steps,
            boundary=boundary, last_step_noise=False, generator=generator, progress=progress,
        )
