"""Closed-form Gaussian Schrodinger bridge: the test oracle for every bridge trainer.

With a Brownian reference ``g dW`` on ``[0, 1]`` (``sigma^2 = g^2``), the static SB between
``N(m0, A)`` and ``N(m1, B)`` is entropic OT with cost ``|x - y|^2`` and ``eps = 2 sigma^2``; its coupling is
Gaussian with cross-covariance (Janati et al., NeurIPS 2020; Bunne et al., AISTATS 2023)

    D = (4 A^1/2 B A^1/2 + sigma^4 I)^1/2,      C = Cov(X0, X1) = 1/2 (A^1/2 D A^-1/2 - sigma^2 I).

In 1D with ``a = b = sigma = 1``: ``C = (sqrt(5) - 1) / 2 = 0.618``. The SB is a mixture of Brownian bridges,
so its marginals and Markov drift follow in closed form too (see :func:`gaussian_sb_drift`).
"""

from __future__ import annotations

import torch
from torch import Tensor


def _sqrtm(m: Tensor) -> Tensor:
    vals, vecs = torch.linalg.eigh(m)
    return vecs @ torch.diag_embed(vals.clamp_min(0.0).sqrt()) @ vecs.mT


def _as_cov(c) -> Tensor:
    c = torch.as_tensor(c, dtype=torch.float64)
    if c.ndim == 0:
        c = c.reshape(1, 1)
    if c.ndim != 2 or c.shape[0] != c.shape[1]:
        raise ValueError(f"covariance must be a square matrix or a scalar; got shape {tuple(c.shape)}")
    if not torch.allclose(c, c.mT) or torch.linalg.eigvalsh(c).min() <= 0:
        raise ValueError("covariance must be symmetric positive definite")
    return c


def gaussian_sb_cross_covariance(A, B, sigma: float) -> Tensor:
    """``Cov(X0, X1)`` of the Schrodinger bridge between ``N(., A)`` and ``N(., B)`` (float64 ``(d, d)``)."""
    A, B = _as_cov(A), _as_cov(B)
    if A.shape != B.shape:
        raise ValueError("A and B must have the same shape")
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    eye = torch.eye(A.shape[0], dtype=torch.float64)
    ra = _sqrtm(A)
    D = _sqrtm(4.0 * ra @ B @ ra + sigma**4 * eye)
    return 0.5 * (ra @ D @ torch.linalg.inv(ra) - sigma**2 * eye)


def gaussian_sb_marginal(m0, A, m1, B, sigma: float, t: float) -> tuple[Tensor, Tensor]:
    """Mean and covariance of the SB at time ``t``: ``(1-t)^2 A + t^2 B + t(1-t)(C + C^T + sigma^2 I)``."""
    A, B = _as_cov(A), _as_cov(B)
    C = gaussian_sb_cross_covariance(A, B, sigma)
    m0, m1 = (torch.as_tensor(m, dtype=torch.float64).reshape(-1) for m in (m0, m1))
    eye = torch.eye(A.shape[0], dtype=torch.float64)
    mean = (1 - t) * m0 + t * m1
    cov = (1 - t) ** 2 * A + t**2 * B + t * (1 - t) * (C + C.mT + sigma**2 * eye)
    return mean, cov


def gaussian_sb_drift(m0, A, m1, B, sigma: float):
    """Markov drift ``v(x, t) = (E[X1 | X_t = x] - x) / (1 - t)`` of the Gaussian SB (noise ``sigma dW``)."""
    A, B = _as_cov(A), _as_cov(B)
    C = gaussian_sb_cross_covariance(A, B, sigma)
    m1_ = torch.as_tensor(m1, dtype=torch.float64).reshape(-1)

    def drift(x: Tensor, t: Tensor) -> Tensor:
        tt = float(t[0])
        mean, cov = gaussian_sb_marginal(m0, A, m1, B, sigma, tt)
        gain = ((1 - tt) * C.mT + tt * B) @ torch.linalg.inv(cov)
        x1_hat = m1_.to(x) + (x - mean.to(x)) @ gain.to(x).mT
        return (x1_hat - x) / max(1.0 - tt, 1e-6)

    return drift
