"""AFDPS: approximation-free ensemble sampling with a diffusion prior (weighted particles).

Chen, Ren, Min, Ying, Izzo, "Solving Inverse Problems via Diffusion-Based Priors: An Approximation-Free
Ensemble Sampling Approach", arXiv 2506.03979. Tilting the prior's Fokker-Planck equation by
``e^{-mu_y}`` (``mu_y = -log p(y | x)``, constant in time) gives a PDE with a drift ``c_H - V^2 grad mu_y``
and a reaction term ``r = -c_H . grad mu_y + V^2/2 (|grad mu_y|^2 - Laplacian mu_y)``. Particles follow
the drift and carry log-weights ``int r dt`` (Feynman-Kac); at ``sigma = 0`` the weighted ensemble targets
the posterior ``p(x | y)`` exactly as steps -> 0 and particles -> infinity. No gradient through the prior.

On the EDM grid (``s = 1``, ``sigma(t) = t``, ``V^2 = 2 sigma``), with ``h = sigma_i - sigma_{i+1}``,
``d = 2 (x - D(x, sigma)) / sigma`` (``= -c_H``), ``g = grad mu_y(x)`` and ``L = Laplacian mu_y(x)``::

    x     <- x - h d - 2 sigma h g + sqrt(2 sigma h) xi
    log w <- log w + h [sigma (|g|^2 - L) + d . g]

Drift split. The same PDE can be written with the particles carrying only a fraction ``lambda`` of the likelihood
drift: since ``Q = p_t e^{-mu_y}``, ``grad Q = Q (grad log p_t - g)``, and moving ``(1 - lambda) V^2 div(Q g)``
from the drift into the reaction term gives drift ``c_H - lambda V^2 g`` and (EDM, ``V^2 = 2 sigma``)

    r_lambda = lambda d . g + (2 lambda - 1) sigma (|g|^2 - L)

(``lambda = 1`` is the paper's split). With ``lambda = 1`` the particles relax towards ``p_t e^{-2 mu_y}`` and the
weights undo the extra tilt, through the ``sigma |g|^2`` term of size ``1 / sigma_y^2``; their logarithm is
heavy-tailed. ``lambda = 1/2`` makes the particles relax towards ``p_t e^{-mu_y}`` itself: the reaction reduces to
``d . g / 2`` (no ``|g|^2``, no Laplacian, so no Hutchinson probes) and the explicit step is stable for twice the step.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..diffusion._utils import check_finite
from ..diffusion.random import Generator, randn
from ..kernels.cg import conjugate_gradient
from ..kernels.particles import chunked
from ..likelihoods.base import LinearGaussianLikelihood
from ._smc import ParticleBook, check_smc_args
from .posterior import Posterior


class TiltedGaussian:
    """Solves and samples with the precision ``P = lam I + A^T A / sigma_y^2`` of a linear-Gaussian likelihood.

    ``N(m0, I / lam) e^{-mu_y}`` is the Gaussian ``N(P^{-1}(lam m0 + A^T y / sigma_y^2), P^{-1})``. For
    ``d <= dense_max_dim`` the matrix ``A^T A`` is formed once and eigendecomposed (every ``lam`` is then two
    matmuls); above it, conjugate gradients. Sampling is by perturbation-optimisation (Papandreou & Yuille
    2010): solving ``P x = lam m0 + sqrt(lam) e2 + A^T (y + sigma_y e1) / sigma_y^2`` gives an exact draw.
    """

    def __init__(
        self,
        likelihood: LinearGaussianLikelihood,
        event_shape: Sequence[int],
        *,
        dense_max_dim: int = 2048,
        cg_max_iter: int = 500,
        cg_tol: float = 1e-8,
    ):
        self.lik, self.event_shape = likelihood, tuple(event_shape)
        self.dim = math.prod(self.event_shape)
        self.inv_var = 1.0 / likelihood.sigma_y**2
        self.cg_max_iter, self.cg_tol = cg_max_iter, cg_tol
        self.eig = None
        if self.dim <= dense_max_dim:
            y = likelihood.y
            basis = torch.eye(self.dim, dtype=y.dtype, device=y.device).reshape(self.dim, *self.event_shape)
            rows = likelihood.A(basis).reshape(self.dim, -1).double()  # row j = A e_j, i.e. A^T
            self.eig = torch.linalg.eigh(rows @ rows.T)  # A^T A = U diag(e) U^T

    def curvature(self, num_iter: int = 30) -> float:
        """Largest eigenvalue of ``A^T A / sigma_y^2`` (the Lipschitz constant of ``grad mu_y``)."""
        if self.eig is not None:
            return float(self.eig[0].max().clamp_min(0)) * self.inv_var
        y = self.lik.y
        v = torch.ones(1, *self.event_shape, dtype=y.dtype, device=y.device)
        value = 0.0
        for _ in range(num_iter):  # power iteration; a slight underestimate is covered by the 1/2 margin below
            w = self.lik.A_adjoint(self.lik.A(v))
            value = float(w.norm() / v.norm())
            v = w / w.norm().clamp_min(1e-300)
        return value * self.inv_var

    def _at_y(self, y: Tensor) -> Tensor:
        return self.lik.A_adjoint(y)

    def solve(self, lam: float, b: Tensor) -> Tensor:
        """``P^{-1} b`` for ``b`` of shape ``(N, *event)``."""
        if self.eig is not None:
            e, u = self.eig
            flat = b.reshape(b.shape[0], -1).double()
            out = ((flat @ u) / (lam + e.clamp_min(0) * self.inv_var)) @ u.T
            return out.reshape(b.shape).to(b.dtype)
        apply = lambda v: lam * v + self.lik.A_adjoint(self.lik.A(v)) * self.inv_var  # noqa: E731
        return conjugate_gradient(apply, b, b / lam, max_iter=self.cg_max_iter, tol=self.cg_tol)

    def proximal(self, lam: float, x: Tensor) -> Tensor:
        """``argmin_z lam/2 |z - x|^2 + mu_y(z)``: the implicit (backward-Euler) step on ``mu_y``."""
        y = self.lik.y.to(x.dtype).expand(x.shape[0], *self.lik.y.shape[1:])
        return self.solve(lam, lam * x + self._at_y(y) * self.inv_var)

    def sample(self, lam: float, n: int, generator: Generator, *, dtype=torch.float32) -> Tensor:
        """``n`` exact draws from ``N(0, I / lam) e^{-mu_y}``."""
        zero = torch.zeros(1, *self.event_shape, dtype=dtype, device=self.lik.y.device)
        return self.proximal(lam, zero) + self.perturbation(lam, n, generator, dtype=dtype)

    def perturbation(self, lam: float, n: int, generator: Generator, *, dtype=torch.float32) -> Tensor:
        """``n`` draws from ``N(0, P^{-1})``: ``P^{-1}(sqrt(lam) e2 + A^T e1 / sigma_y)``, the noise of an exact draw
        from ``N(m, I / lam) e^{-mu_y}`` around its mean ``proximal(lam, m)``."""
        y = self.lik.y
        e1 = randn((n, *y.shape[1:]), generator, device=y.device, dtype=dtype)
        e2 = randn((n, *self.event_shape), generator, device=y.device, dtype=dtype)
        return self.solve(lam, math.sqrt(lam) * e2 + self._at_y(e1) / self.lik.sigma_y)

    def envelope(self, u: Tensor, tau: float) -> tuple[Tensor, Tensor]:
        """Mean ``z`` of ``N(u, tau I) e^{-mu_y}`` and the Moreau envelope ``M(u) = mu_y(z) + |z - u|^2 / (2 tau)``.

        ``-M(u) = log int N(x'; u, tau I) e^{-mu_y(x')} dx'`` up to a constant: for a quadratic ``mu_y`` the
        envelope is ``|y - A u|^2_{(sigma_y^2 I + tau A A^T)^{-1}} / 2`` and ``z`` is its minimiser.
        """
        z = self.proximal(1.0 / tau, u)
        return z, self.lik.energy(z).double() + (z - u).double().pow(2).flatten(1).sum(1) / (2 * tau)


@torch.no_grad()
def afdps(
    denoiser,
    likelihood,
    shape: Sequence[int],
    sigmas: Tensor,
    *,
    generator: Generator = None,
    progress: bool = True,
    callback=None,
    ess_threshold: float = 0.5,
    resampling: str = "systematic",
    likelihood_step: str = "auto",
    laplacian_probes: int = 1,
    drift_split: float = 0.5,
    max_batch_size: int | None = None,
    dense_max_dim: int = 2048,
    ess_warning: float = 0.02,
    cond: dict | None = None,
    device=None,
    dtype: torch.dtype = torch.float32,
) -> Posterior:
    """Sample ``p(x | y)`` with AFDPS's weighted particles; ``shape = (K, *event_shape)``.

    Args:
        ess_threshold: resample (``resampling`` scheme, log-weights reset) when ``ESS < ess_threshold * K``.
            ``0`` never resamples, as the authors' reference code.
        likelihood_step: ``"explicit"`` is the paper's Euler-Maruyama step on ``-2 sigma h grad mu_y``;
            ``"implicit"`` replaces it by the proximal step of ``2 sigma h mu_y`` (linear-Gaussian only), which
            stays stable when ``sigma_y`` is small (the drift's stiffness grows like ``1 / sigma_y^2``).
            ``"auto"`` (linear-Gaussian): explicit where it is stable (``2 sigma h Lip(grad mu_y) <= 1``),
            implicit on the stiff steps; explicit for any other likelihood. ``"exact"`` (linear-Gaussian only)
            integrates the likelihood part of each step exactly: the Euler-Maruyama prior step ``N(u, 2 sigma h I)``,
            ``u = x - h d``, is tilted by ``e^{-mu_y}`` and sampled exactly, with the log-weight
            ``mu_y(x) - M(u)`` (``M`` the Moreau envelope, :meth:`TiltedGaussian.envelope`), whose expansion in
            ``h`` is the paper's ``h r``; the kernel is fully adapted, so particles are weighted and resampled
            before they move. Stable for any ``sigma_y``; it carries the whole tilt (``drift_split`` does not apply).
        laplacian_probes: Hutchinson probes for ``Laplacian mu_y``; unused for linear-Gaussian likelihoods, whose
            Laplacian ``tr(A^T A) / sigma_y^2`` is the same for every particle and cancels in the weights, and
            unused at ``drift_split = 0.5``, where the Laplacian drops out of the weights.
        drift_split: the fraction ``lambda`` of the likelihood drift the particles carry (module docs); the rest
            is in the weights. ``1`` is the paper's scheme; the default ``0.5`` targets ``p_t e^{-mu_y}`` with the
            particles themselves and keeps the weights light-tailed (measured in docs/smc.md).
        max_batch_size: evaluate the denoiser on at most this many particles at once.
        ess_warning: warn when the ESS falls below ``max(1.5, ess_warning * K)``.

    Initialisation: for a linear-Gaussian likelihood an exact draw from ``N(0, sigma_max^2 I) e^{-mu_y}``;
    otherwise prior draws ``N(0, sigma_max^2 I)`` with importance log-weights ``-mu_y``.
    """
    shape, s = check_smc_args(likelihood, shape, sigmas, resampling)
    if likelihood_step not in ("auto", "explicit", "implicit", "exact"):
        raise ValueError(f"likelihood_step must be 'auto', 'explicit', 'implicit' or 'exact'; got {likelihood_step!r}")
    if laplacian_probes < 1:
        raise ValueError(f"laplacian_probes must be >= 1, got {laplacian_probes}")
    if not 0 <= drift_split <= 1:
        raise ValueError(f"drift_split must lie in [0, 1], got {drift_split}")
    linear = isinstance(likelihood, LinearGaussianLikelihood)
    if likelihood_step in ("implicit", "exact") and not linear:
        raise ValueError(f"likelihood_step={likelihood_step!r} needs a LinearGaussianLikelihood (its proximal map)")
    mode = likelihood_step if linear else "explicit"
    device = device if device is not None else getattr(likelihood, "y", torch.empty(0)).device
    n, cond, start = shape[0], cond or {}, time.perf_counter()
    tilted = TiltedGaussian(likelihood, shape[1:], dense_max_dim=dense_max_dim) if linear else None
    lipschitz = tilted.curvature() if mode == "auto" else 0.0
    num_implicit = 0

    if tilted is not None:
        x = tilted.sample(1.0 / s[0] ** 2, n, generator, dtype=dtype).to(device)
        log_w = torch.zeros(n, dtype=torch.float64, device=device)
    else:
        x = randn(shape, generator, device=device, dtype=dtype) * s[0]
        log_w = -likelihood.energy(x).double()
    check_finite(x, "initial particles")
    book = ParticleBook(n, ess_threshold, resampling, ess_warning, "afdps")
    den = lambda xb, sb: denoiser(xb, sb, **cond)  # noqa: E731

    for i in tqdm(range(len(s) - 1), disable=not progress, desc="afdps", leave=False):
        sigma, h = s[i], s[i] - s[i + 1]
        denoised = chunked(den, x, x.new_full((n,), sigma), max_batch_size=max_batch_size)
        d = 2 * (x - denoised) / sigma
        if mode == "exact":
            log_w, x, denoised = _exact_step(x, d, denoised, log_w, likelihood, tilted, book, i, s, generator)
        else:
            g = likelihood.grad(x)
            needs_lap = not linear and drift_split != 0.5  # the Laplacian's weight is (2 lambda - 1)
            lap = likelihood.laplacian(x, generator=generator, num_probes=laplacian_probes).double() if needs_lap else 0.0
            g64, d64 = g.double().flatten(1), d.double().flatten(1)
            lam = drift_split
            log_w = log_w + h * ((2 * lam - 1) * sigma * (g64.pow(2).sum(1) - lap) + lam * (d64 * g64).sum(1))
            implicit = mode == "implicit" or (mode == "auto" and 2 * lam * sigma * h * lipschitz > 1)
            num_implicit += implicit
            x = _move(x, d, g, lam * sigma, h, tilted if implicit else None)
            if s[i + 1] > 0:
                x = x + math.sqrt(2 * sigma * h) * randn(x.shape, generator, device=x.device, dtype=x.dtype)
            log_w, (x, denoised) = book.step(log_w, [x, denoised], i, generator)
        if callback is not None:
            callback({"x": x, "i": i, "sigma": sigma, "denoised": denoised, "log_weights": log_w})

    info = {"method": "afdps", "nfe": len(s) - 1, "num_particles": n, "ess_threshold": float(ess_threshold),
            "drift_split": float(drift_split),
            "likelihood_step": mode,
            "num_implicit_steps": num_implicit, "wall_time": time.perf_counter() - start}
    info.update(book.finish(x))
    return Posterior(x, log_w, book.ess_history, info)


def _move(x: Tensor, d: Tensor, g: Tensor, sigma: float, h: float, tilted: TiltedGaussian | None) -> Tensor:
    """Deterministic part of the step: prior drift, then the likelihood drift (explicit or proximal)."""
    x = x - h * d
    if tilted is None:
        return x - 2 * sigma * h * g
    return tilted.proximal(1.0 / (2 * sigma * h), x)


def _exact_step(x, d, denoised, log_w, likelihood, tilted: TiltedGaussian, book: ParticleBook, i: int, s, generator):
    """One step with the likelihood integrated exactly (linear-Gaussian): weight, resample, then move.

    The kernel ``N(u, tau I) e^{-mu_y} / Z(u)`` (``tau = 2 sigma h``) is fully adapted: with the targets
    ``p_sigma(x) e^{-mu_y(x)}`` its incremental weight ``e^{mu_y(x)} Z(u)`` depends on the current particle only,
    so particles are weighted and resampled before they move (as in MCGdiff). The last step (to ``sigma = 0``)
    adds no noise: ``x' = u`` with weight ``e^{mu_y(x) - mu_y(u)}``.
    """
    sigma, h = s[i], s[i] - s[i + 1]
    u = x - h * d
    if s[i + 1] > 0:
        z, envelope = tilted.envelope(u, 2 * sigma * h)
    else:
        z, envelope = u, likelihood.energy(u).double()
    log_w = log_w + likelihood.energy(x).double() - envelope
    log_w, (z, denoised) = book.step(log_w, [z, denoised], i, generator)
    if s[i + 1] > 0:
        z = z + tilted.perturbation(1.0 / (2 * sigma * h), z.shape[0], generator, dtype=z.dtype).to(z.device)
    return log_w, z, denoised
