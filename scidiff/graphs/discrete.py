"""Categorical noise on node and edge types with marginal (or uniform) transitions (DiGress, Vignac et al. 2023).

Each node type and each edge class (0 = no edge) is a one-hot vector x. The forward process is

    Q_t = alpha_t I + (1 - alpha_t) 1 m^T,     Qbar_t = abar_t I + (1 - abar_t) 1 m^T,

so q(z_t | x) = abar_t x + (1 - abar_t) m, with m the training marginals (``transition="marginal"``) or uniform
(Austin et al. 2021, D3PM). ``abar`` follows the cosine schedule of Nichol & Dhariwal (2021) with s = 0.008 as in
DiGress. Edges are noised on the upper triangle and mirrored. The reverse step marginalises the network's
prediction of x over the exact posterior,

    p(z_s | z_t) = sum_c p(x = c | z_t) q(z_s | z_t, x = c),   q(z_s | z_t, x) = q(z_t | z_s) q(z_s | x) / q(z_t | x).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..diffusion.random import Generator, rand


def cosine_alpha_bar(T: int, s: float = 0.008) -> Tensor:
    """``abar[t]`` for ``t = 0..T`` (float64): cos^2 schedule normalised to abar[0] = 1 (Nichol & Dhariwal 2021)."""
    if T < 1:
        raise ValueError(f"T must be >= 1, got {T}")
    t = torch.arange(T + 1, dtype=torch.float64) / T
    f = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
    return (f / f[0]).clamp(min=1e-6, max=1.0)


def limit_distribution(kind: str, counts: Tensor) -> Tensor:
    """m: the normalised class frequencies (``marginal``) or uniform over the classes (``uniform``)."""
    counts = torch.as_tensor(counts, dtype=torch.float64)
    if kind == "uniform":
        return torch.full_like(counts, 1.0 / counts.numel())
    if kind == "marginal":
        if counts.sum() <= 0:
            raise ValueError("marginal transitions need at least one observed class")
        return counts / counts.sum()
    raise ValueError(f"unknown transition {kind!r}; expected 'marginal' or 'uniform'")


def forward_probs(x0: Tensor, abar: Tensor, m: Tensor) -> Tensor:
    """q(z_t | x0) = abar x0 + (1 - abar) m for one-hot (or probability) ``x0`` [..., K]; ``abar`` broadcasts
    against the leading dims (give it shape [B] and it is expanded over the rest)."""
    abar = abar.to(x0.dtype).reshape(abar.shape + (1,) * (x0.dim() - abar.dim()))
    return abar * x0 + (1 - abar) * m.to(x0)


def sample_categorical(probs: Tensor, generator: Generator = None) -> Tensor:
    """Class indices drawn from ``probs`` [B, ..., K] by inverse CDF; per-sample generators are honoured."""
    u = rand(probs.shape[:-1], generator, device=probs.device, dtype=probs.dtype)
    cdf = probs.cumsum(-1)
    cdf = cdf / cdf[..., -1:].clamp_min(1e-30)
    return (cdf < u.unsqueeze(-1)).sum(-1).clamp_max(probs.shape[-1] - 1)


def symmetric_edge_sample(probs: Tensor, generator: Generator = None) -> Tensor:
    """Sample edge classes from ``probs`` [B, N, N, K] on the upper triangle and mirror; diagonal = class 0."""
    n = probs.shape[1]
    z = sample_categorical(probs, generator)
    upper = torch.triu(torch.ones(n, n, dtype=torch.bool, device=probs.device), 1)
    z = torch.where(upper, z, torch.zeros_like(z))
    return z + z.transpose(1, 2)


def posterior_probs(zt: Tensor, x0_probs: Tensor, alpha_t: Tensor, abar_s: Tensor, abar_t: Tensor, m: Tensor) -> Tensor:
    """p(z_s | z_t) = sum_c p(x=c) q(z_s | z_t, x=c) for one-hot ``zt`` [B, ..., K] and predicted ``x0_probs``.

    With Q_t = alpha_t I + (1-alpha_t) 1 m^T the sum is closed form:
    q(z_t=k | z_s=j) = alpha_t [j=k] + (1-alpha_t) m_k, q(z_s=j | x=c) = abar_s [j=c] + (1-abar_s) m_j and
    q(z_t=k | x=c) = abar_t [c=k] + (1-abar_t) m_k, so with w_c = p(x=c) / q(z_t | x=c)
    p(z_s=j | z_t) = q(z_t | z_s=j) (abar_s w_j + (1-abar_s) m_j sum_c w_c).
    """
    def b(a):
        return a.to(zt.dtype).reshape(a.shape + (1,) * (zt.dim() - a.dim()))

    m = m.to(zt)
    zt_m = (zt * m).sum(-1, keepdim=True)  # m_k at the observed class k
    like = b(alpha_t) * zt + (1 - b(alpha_t)) * zt_m  # q(z_t | z_s = j) over j
    denom = b(abar_t) * zt + (1 - b(abar_t)) * zt_m  # q(z_t | x = c) over c
    w = x0_probs / denom.clamp_min(1e-30)
    prior = b(abar_s) * w + (1 - b(abar_s)) * m * w.sum(-1, keepdim=True)
    p = like * prior
    return p / p.sum(-1, keepdim=True).clamp_min(1e-30)


def valence_constrained_edge_sample(probs: Tensor, fixed: Tensor, free: Tensor, capacity: Tensor,
                                    generator: Generator = None) -> Tensor:
    """Symmetric edge classes drawn from ``probs`` [B, N, N, K] on the ``free`` pairs, never letting a node's bond
    order sum exceed ``capacity`` [B, N] (class k = bond order k). Pairs outside ``free`` keep their ``fixed``
    class and count towards the sums.

    An optional, chemistry-aware sampling step (not part of DiGress or PARD): pairs are visited from the most
    confident prediction to the least, and each draws from its distribution restricted to the bond orders that
    both end atoms still have room for ("no bond" is always allowed). It uses the same uniforms as
    :func:`symmetric_edge_sample`, so when no constraint binds the draw is identical to the unconstrained one.
    """
    b, n, _, k = probs.shape
    u = rand(probs.shape[:-1], generator, device=probs.device, dtype=probs.dtype)
    upper = torch.triu(torch.ones(n, n, dtype=torch.bool, device=probs.device), 1)
    pairs = free & upper
    fixed = torch.where(free, torch.zeros_like(fixed), fixed)
    used = fixed.sum(-1).to(capacity.dtype)
    order = torch.arange(k, device=probs.device).to(capacity.dtype)
    conf = torch.where(pairs, probs.amax(-1), torch.full_like(u, -1.0)).reshape(b, -1)
    visit = conf.argsort(-1, descending=True)[:, : int(pairs.sum((1, 2)).max())]
    z = torch.zeros(b, n * n, dtype=torch.long, device=probs.device)
    rows = torch.arange(b, device=probs.device)
    flat_p, flat_u, flat_pairs = probs.reshape(b, n * n, k), u.reshape(b, -1), pairs.reshape(b, -1)
    for r in range(visit.shape[1]):
        idx = visit[:, r]
        i, j = idx // n, idx % n
        room = torch.minimum(capacity[rows, i] - used[rows, i], capacity[rows, j] - used[rows, j])
        p = flat_p[rows, idx] * (order[None] <= room[:, None])
        p[:, 0] = torch.where(p.sum(-1) > 0, p[:, 0], torch.ones_like(p[:, 0]))  # nothing allowed had mass: no bond
        cdf = p.cumsum(-1)
        cls = (cdf / cdf[:, -1:] < flat_u[rows, idx, None]).sum(-1).clamp_max(k - 1)
        cls = torch.where(flat_pairs[rows, idx], cls, torch.zeros_like(cls))
        z[rows, idx] = cls
        used[rows, i] += cls.to(used.dtype)
        used[rows, j] += cls.to(used.dtype)
    z = z.reshape(b, n, n)
    return z + z.transpose(1, 2) + fixed
