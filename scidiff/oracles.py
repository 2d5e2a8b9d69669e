"""Exact denoisers: Gaussian and Gaussian-mixture priors with closed-form ``E[x0 | x0 + sigma n]``.

These are the test oracles of the whole library. A mixture ``sum_k w_k N(m_k, S_k)`` stays a mixture
under Gaussian noise and under linear-Gaussian measurements, so both the denoiser and the posterior
``p(x | y)`` for ``y = A x + sigma_y n`` are available in closed form, on any event shape
(signals, fields, volumes: ``x`` is flattened to ``d = prod(shape)`` inside).

All internal arithmetic is float64; outputs come back in the caller's dtype.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from .diffusion._utils import as_sigma_batch, check_finite
from .diffusion.random import Generator, rand, randn


class GaussianMixture:
    """A Gaussian mixture prior over tensors of shape ``shape`` that is also an exact Denoiser.

    Args:
        weights: ``(K,)`` mixture weights (normalised here).
        means: ``(K, d)`` or ``(K, *shape)``.
        covs: ``(K, d, d)`` full covariances, ``(K, d)`` diagonals, or ``(K,)`` isotropic variances.
        shape: event shape, e.g. ``(1, 16, 16)``; defaults to ``(d,)`` or the trailing dims of ``means``.
    """

    def __init__(self, weights: Tensor, means: Tensor, covs: Tensor, shape: Sequence[int] | None = None):
        weights = torch.as_tensor(weights, dtype=torch.float64)
        means = torch.as_tensor(means, dtype=torch.float64)
        k = weights.shape[0]
        if weights.ndim != 1 or (weights < 0).any() or weights.sum() <= 0:
            raise ValueError("weights must be a non-negative (K,) tensor with positive sum")
        if means.shape[0] != k:
            raise ValueError(f"means has {means.shape[0]} components but weights has {k}")
        self.shape = tuple(shape) if shape is not None else tuple(means.shape[1:])
        self.dim = math.prod(self.shape)
        self.means = means.reshape(k, -1)
        if self.means.shape[1] != self.dim:
            raise ValueError(f"means flatten to {self.means.shape[1]} entries, shape {self.shape} needs {self.dim}")
        self.covs = _full_covariances(torch.as_tensor(covs, dtype=torch.float64), k, self.dim)
        self.log_weights = (weights / weights.sum()).log()
        # Eigendecomposition S_k = U diag(lam) U^T, shared by every noise level.
        self.eigvals, self.eigvecs = torch.linalg.eigh(self.covs)
        self.eigvals = self.eigvals.clamp_min(0.0)

    # --- constructors -------------------------------------------------------------------------
    @classmethod
    def gaussian(cls, mean: Tensor, cov: Tensor, shape: Sequence[int] | None = None) -> GaussianMixture:
        """A single Gaussian ``N(mean, cov)``; ``cov`` is ``(d, d)``, ``(d,)`` diagonal or a scalar variance."""
        mean = torch.as_tensor(mean, dtype=torch.float64)
        cov = torch.as_tensor(cov, dtype=torch.float64)
        return cls(torch.ones(1), mean[None], cov[None], shape=shape or tuple(mean.shape))

    # --- properties ---------------------------------------------------------------------------
    @property
    def weights(self) -> Tensor:
        return self.log_weights.exp()

    @property
    def num_components(self) -> int:
        return self.log_weights.shape[0]

    def mean(self) -> Tensor:
        """Mixture mean, flattened ``(d,)``."""
        return self.weights @ self.means

    def covariance(self) -> Tensor:
        """Mixture covariance ``sum_k w_k (S_k + m_k m_k^T) - m m^T``, ``(d, d)``."""
        m = self.mean()
        second = torch.einsum("k,kij->ij", self.weights, self.covs + self.means[:, :, None] * self.means[:, None, :])
        return second - torch.outer(m, m)

    # --- densities ----------------------------------------------------------------------------
    def _component_log_probs(self, x: Tensor, sigma: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``log N(x; m_k, S_k + sigma^2 I)`` as ``(B, K)``, the eigen-coordinates ``z`` and ``lam + sigma^2``."""
        z = torch.einsum("kdj,bkd->bkj", self.eigvecs, x[:, None, :] - self.means[None])
        var = (self.eigvals[None] + sigma[:, None, None] ** 2).clamp_min(1e-300)  # (B, K, d)
        log_n = -0.5 * ((z**2 / var).sum(-1) + var.log().sum(-1) + self.dim * math.log(2 * math.pi))
        return log_n, z, var

    def _flat(self, x: Tensor) -> Tensor:
        if tuple(x.shape[1:]) != self.shape:
            raise ValueError(f"expected x of shape (B, {', '.join(map(str, self.shape))}); got {tuple(x.shape)}")
        return x.reshape(x.shape[0], -1).to(torch.float64)

    def log_prob(self, x: Tensor, sigma: Tensor | float = 0.0) -> Tensor:
        """Log density of the noised mixture at level ``sigma`` (0: the prior itself), ``(B,)``."""
        flat = self._flat(x)
        log_n, _, _ = self._component_log_probs(flat, as_sigma_batch(sigma, flat))
        return torch.logsumexp(self.log_weights + log_n, dim=1).to(x.dtype)

    def responsibilities(self, x: Tensor, sigma: Tensor | float = 0.0) -> Tensor:
        """``p(k | x_sigma)``, ``(B, K)``."""
        flat = self._flat(x)
        log_n, _, _ = self._component_log_probs(flat, as_sigma_batch(sigma, flat))
        return torch.softmax(self.log_weights + log_n, dim=1)

    # --- the Denoiser -------------------------------------------------------------------------
    def __call__(self, x: Tensor, sigma: Tensor | float, **cond) -> Tensor:
        """``E[x0 | x0 + sigma n = x]``, exact."""
        check_finite(x, "x")
        flat = self._flat(x)
        sigma = as_sigma_batch(sigma, flat)
        log_n, z, var = self._component_log_probs(flat, sigma)
        resp = torch.softmax(self.log_weights + log_n, dim=1)  # (B, K)
        shrunk = z * (self.eigvals[None] / var)  # posterior mean offset in eigen-coordinates
        comp_means = self.means[None] + torch.einsum("kdj,bkj->bkd", self.eigvecs, shrunk)
        out = torch.einsum("bk,bkd->bd", resp, comp_means)
        return out.reshape(x.shape).to(x.dtype)

    def score(self, x: Tensor, sigma: Tensor | float) -> Tensor:
        """``grad log p_sigma(x) = (D(x, sigma) - x) / sigma^2`` (Tweedie)."""
        s = as_sigma_batch(sigma, x).reshape(-1, *([1] * (x.ndim - 1)))
        return (self(x, sigma) - x) / s**2

    # --- sampling -----------------------------------------------------------------------------
    def sample(self, n: int, generator: Generator = None, dtype: torch.dtype = torch.float32) -> Tensor:
        """``n`` exact samples, shape ``(n, *shape)``."""
        u = rand((n,), generator, dtype=torch.float64)
        cdf = self.weights.cumsum(0)
        k = torch.searchsorted(cdf, u.clamp_max(float(cdf[-1]) * (1 - 1e-12)))
        noise = randn((n, self.dim), generator, dtype=torch.float64)
        scale = self.eigvecs[k] * self.eigvals[k].sqrt()[:, None, :]  # U sqrt(lam)
        x = self.means[k] + torch.einsum("bij,bj->bi", scale, noise)
        return x.reshape(n, *self.shape).to(dtype)

    # --- closed-form posterior ----------------------------------------------------------------
    def posterior(self, A: Tensor, y: Tensor, sigma_y: float) -> GaussianMixture:
        """Exact posterior ``p(x | y)`` for ``y = A x + sigma_y n`` (``A``: ``(m, d)`` matrix, ``y``: ``(m,)``).

        Per component, with ``G = A S A^T + sigma_y^2 I``: ``m' = m + S A^T G^{-1} (y - A m)``,
        ``S' = S - S A^T G^{-1} A S`` and ``w' ∝ w N(y; A m, G)``. Valid for singular ``S``.
        """
        A = torch.as_tensor(A, dtype=torch.float64)
        y = torch.as_tensor(y, dtype=torch.float64).reshape(-1)
        if A.ndim != 2 or A.shape[1] != self.dim:
            raise ValueError(f"A must be (m, {self.dim}); got {tuple(A.shape)}")
        if A.shape[0] != y.shape[0]:
            raise ValueError(f"y has {y.shape[0]} entries but A has {A.shape[0]} rows")
        if sigma_y <= 0:
            raise ValueError("sigma_y must be positive for a Gaussian likelihood")
        sa = self.covs @ A.T  # (K, d, m)
        gram = A @ sa + sigma_y**2 * torch.eye(A.shape[0], dtype=torch.float64)
        chol = torch.linalg.cholesky(gram)
        resid = y[None] - self.means @ A.T  # (K, m)
        sol = torch.cholesky_solve(resid[..., None], chol)[..., 0]
        means = self.means + torch.einsum("kdm,km->kd", sa, sol)
        covs = self.covs - sa @ torch.cholesky_solve(sa.transpose(1, 2), chol)
        covs = 0.5 * (covs + covs.transpose(1, 2))
        logdet = 2 * torch.diagonal(chol, dim1=1, dim2=2).log().sum(-1)
        log_ev = -0.5 * ((resid * sol).sum(-1) + logdet + A.shape[0] * math.log(2 * math.pi))
        return GaussianMixture(torch.softmax(self.log_weights + log_ev, 0), means, covs, shape=self.shape)


def _full_covariances(covs: Tensor, k: int, d: int) -> Tensor:
    if covs.shape == (k,):
        covs = covs[:, None].expand(k, d)
    if covs.shape == (k, d):
        return torch.diag_embed(covs)
    if covs.shape == (k, d, d):
        if not torch.allclose(covs, covs.transpose(1, 2), atol=1e-10):
            raise ValueError("covariances must be symmetric")
        return covs.clone()
    raise ValueError(f"covs must be (K,), (K, d) or (K, d, d) with K={k}, d={d}; got {tuple(covs.shape)}")


def Gaussian(mean: Tensor, cov: Tensor, shape: Sequence[int] | None = None) -> GaussianMixture:  # noqa: N802
    """A Gaussian prior ``N(mean, cov)`` as a one-component :class:`GaussianMixture`."""
    return GaussianMixture.gaussian(mean, cov, shape)
