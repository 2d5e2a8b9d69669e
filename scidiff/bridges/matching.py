"""Simulation-free Schrodinger bridge matching with minibatch entropic OT couplings.

This is [SF]^2M / SB-CFM (Tong, Malkin, Fatras, ... Bengio, "Simulation-free Schrodinger bridges via
score and flow matching", AISTATS 2024). With a Brownian reference of diffusion ``sigma`` on ``[0, 1]``:

1. couple a minibatch ``(x0, x1)`` by entropic OT with cost ``|x0 - x1|^2`` and ``eps = 2 sigma^2`` (the
   static SB), here POT's log-domain Sinkhorn -- the entropy is really used (torchcfm's default
   ``ot_method="exact"`` ignores it);
2. draw ``t ~ U(0, 1)``, ``x_t = t x1 + (1-t) x0 + sigma sqrt(t(1-t)) eps`` (Brownian bridge);
3. regress the flow ``v(x_t, t)`` on ``u_t = (1-2t)/(2t(1-t)) (x_t - mu_t) + x1 - x0`` and the scaled score
   ``s(x_t, t) ~ (sigma^2 / 2) grad log p_t`` through ``|lambda_t s + eps|^2`` with ``lambda_t = 2 sigma_t / sigma^2``.

The bridge SDE is ``dX = (v + s) dt + sigma dW`` forwards and ``dX = (v - s) dt + sigma dW`` backwards in time.
On a bounded domain the same networks are integrated with the reflected Euler--Maruyama scheme, which
keeps every path inside (Deng et al., UAI 2024): the reflected bridge.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..diffusion._utils import check_finite
from ..diffusion.random import Generator, rand, randn_like
from .domains import Domain
from .sde import reflected_euler_maruyama

OT_METHODS = ("sinkhorn", "exact", "independent")
METHODS = ("matching", "ipf")


class TimeMLP(nn.Module):
    """Small MLP ``(x, t) -> (B, out_dim)`` with Fourier features of ``t`` (SiLU, ``depth`` hidden layers)."""

    def __init__(self, dim: int, out_dim: int | None = None, hidden: int = 128, depth: int = 3, n_freq: int = 4):
        super().__init__()
        if dim < 1 or hidden < 1 or depth < 1:
            raise ValueError("dim, hidden and depth must be >= 1")
        self.dim, self.n_freq = dim, n_freq
        layers, width = [], dim + 1 + 2 * n_freq
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.SiLU()]
            width = hidden
        layers.append(nn.Linear(width, out_dim or dim))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        t = t.reshape(-1, 1).to(x)
        k = torch.arange(1, self.n_freq + 1, device=x.device, dtype=x.dtype)
        feats = [x, t, torch.sin(math.pi * k * t), torch.cos(math.pi * k * t)]
        return self.net(torch.cat(feats, dim=-1))


class BridgeNet(nn.Module):
    """Flow ``v`` and scaled score ``s`` of a bridge, two heads of one MLP: ``forward -> (v, s)``."""

    def __init__(self, dim: int, hidden: int = 128, depth: int = 3):
        super().__init__()
        self.dim = dim
        self.body = TimeMLP(dim, 2 * dim, hidden, depth)

    def forward(self, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        out = self.body(x, t)
        return out[:, : self.dim], out[:, self.dim :]


def _check_pair(x0: Tensor, x1: Tensor) -> None:
    for name, x in (("x0", x0), ("x1", x1)):
        if not isinstance(x, Tensor) or x.ndim != 2:
            raise ValueError(f"{name} must be a (N, d) tensor")
        check_finite(x, name)
    if x0.shape[1] != x1.shape[1]:
        raise ValueError(f"x0 and x1 must have the same dimension; got {x0.shape[1]} and {x1.shape[1]}")


def entropic_ot_plan(x0: Tensor, x1: Tensor, sigma: float, method: str = "sinkhorn", n_iter: int = 2000) -> Tensor:
    """The static SB plan between two empirical measures: ``(N0, N1)`` float64, rows sum to ``1/N0``.

    ``method="sinkhorn"`` solves entropic OT with ``reg = 2 sigma^2`` in the log domain (no underflow);
    ``"exact"`` is the ``eps -> 0`` limit (network simplex); ``"independent"`` is the product coupling.
    """
    _check_pair(x0, x1)
    if method not in OT_METHODS:
        raise ValueError(f"ot method must be one of {OT_METHODS}, got {method!r}")
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    n0, n1 = x0.shape[0], x1.shape[0]
    a = torch.full((n0,), 1.0 / n0, dtype=torch.float64)
    b = torch.full((n1,), 1.0 / n1, dtype=torch.float64)
    if method == "independent":
        return a[:, None] * b[None, :]
    import ot  # POT, only needed here

    # POT's numpy backend is much faster than its torch backend for these small dense problems.
    M = (torch.cdist(x0.detach().double().cpu(), x1.detach().double().cpu()) ** 2).numpy()
    a_np, b_np, reg = a.numpy(), b.numpy(), 2.0 * sigma**2
    if method == "exact":
        plan = ot.emd(a_np, b_np, M)
    elif M.max() / reg < 200.0:
        # exp(-M / reg) cannot underflow here, so the plain scaling iterations are exact and fast.
        plan = ot.sinkhorn(a_np, b_np, M, reg=reg, numItermax=n_iter, warn=False)
    else:
        plan = ot.sinkhorn(a_np, b_np, M, reg=reg, method="sinkhorn_log", numItermax=n_iter, warn=False)
    plan = torch.from_numpy(plan)
    if not torch.isfinite(plan).all() or abs(float(plan.sum()) - 1.0) > 1e-3:
        raise RuntimeError("the OT solver did not return a valid plan (mass %.3g)" % float(plan.sum()))
    return plan


def sample_coupling(
    x0: Tensor, x1: Tensor, sigma: float, method: str = "sinkhorn", generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """Draw ``N0`` pairs from the entropic OT plan (with replacement), as in [SF]^2M's minibatch coupling."""
    plan = entropic_ot_plan(x0, x1, sigma, method)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError("couplings take a single torch.Generator (or None)")
    flat = (plan / plan.sum()).reshape(-1).float()
    idx = torch.multinomial(flat, x0.shape[0], replacement=True, generator=generator)
    i, j = idx // x1.shape[0], idx % x1.shape[0]
    return x0[i.to(x0.device)], x1[j.to(x1.device)]


def bridge_matching_loss(net, x0: Tensor, x1: Tensor, sigma: float, generator: Generator = None, t_eps: float = 1e-4) -> Tensor:
    """[SF]^2M loss ``|v - u_t|^2 + |lambda_t s + eps|^2`` on coupled pairs (mean over the batch)."""
    _check_pair(x0, x1)
    if x0.shape != x1.shape:
        raise ValueError("coupled x0 and x1 must have the same shape")
    t = t_eps + (1 - 2 * t_eps) * rand((x0.shape[0],), generator, device=x0.device, dtype=x0.dtype)
    tc = t[:, None]
    mu = tc * x1 + (1 - tc) * x0
    sigma_t = sigma * (tc * (1 - tc)).sqrt()
    eps = randn_like(x0, generator)
    xt = mu + sigma_t * eps
    u = (1 - 2 * tc) / (2 * tc * (1 - tc)) * (xt - mu) + x1 - x0
    lam = 2 * sigma_t / sigma**2
    v, s = net(xt, t)
    return (((v - u) ** 2).sum(-1) + ((lam * s + eps) ** 2).sum(-1)).mean()


def train_bridge(
    x0: Tensor,
    x1: Tensor,
    sigma: float = 1.0,
    *,
    method: str = "matching",
    domain: Domain | None = None,
    ipf: dict | None = None,
    net: nn.Module | None = None,
    n_iter: int = 2000,
    batch_size: int = 256,
    lr: float = 1e-3,
    ot_method: str = "sinkhorn",
    hidden: int = 128,
    depth: int = 3,
    generator: torch.Generator | None = None,
    progress: bool = True,
) -> nn.Module:
    """Train a bridge network between the samples ``x0`` and ``x1``; returns it in eval mode.

    ``method="matching"`` (default, fast): [SF]^2M bridge matching -- each iteration draws a minibatch from each
    set, couples it by entropic OT (``ot_method``) and takes one Adam step on :func:`bridge_matching_loss`;
    ``domain`` is not used in training (reflection happens when sampling).
    ``method="ipf"`` (faithful to the Reflected Schrodinger Bridge): alternating forward/backward training on
    paths reflected inside ``domain`` (:func:`scidiff.bridges.ipf.train_ipf`); ``ipf`` holds its options
    (``n_stages``, ``n_iter`` per half-stage, ``n_paths``, ``n_steps``, ``batch_size``, ``lr``, ``lr_decay``).
    """
    _check_pair(x0, x1)
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    if method not in METHODS:
        raise ValueError(f"bridge training method must be one of {METHODS}, got {method!r}")
    if method == "ipf":
        from .ipf import IPF_OPTIONS, train_ipf

        unknown = set(ipf or {}) - set(IPF_OPTIONS)
        if unknown:
            raise ValueError(f"unknown ipf options {sorted(unknown)}; choose from {IPF_OPTIONS}")
        return train_ipf(x0, x1, sigma, domain, net=net, hidden=hidden, depth=depth, generator=generator,
                         progress=progress, **(ipf or {}))
    if n_iter < 1 or batch_size < 2:
        raise ValueError("n_iter must be >= 1 and batch_size >= 2")
    net = net if net is not None else BridgeNet(x0.shape[1], hidden, depth).to(x0)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, n_iter)
    net.train()
    bar = tqdm(range(n_iter), disable=not progress, desc="bridge matching", leave=False)
    for _ in bar:
        i0 = torch.randint(x0.shape[0], (batch_size,), generator=generator).to(x0.device)
        i1 = torch.randint(x1.shape[0], (batch_size,), generator=generator).to(x1.device)
        b0, b1 = sample_coupling(x0[i0], x1[i1], sigma, ot_method, generator)
        loss = bridge_matching_loss(net, b0, b1, sigma, generator)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        bar.set_postfix(loss=float(loss.detach()), refresh=False)
    return net.eval()


class EmpiricalBridge(nn.Module):
    """The exact bridge between paired samples: a mixture of Brownian bridges ``x0_i -> x1_i`` (a test oracle).

    ``forward(x, t) -> (v, s)`` in the convention of :class:`BridgeNet`: the forward drift
    ``v + s = (E[X1 | X_t = x] - x) / (1 - t)`` and the backward one ``v - s = (x - E[X0 | X_t = x]) / t``, with the
    posterior over pairs ``w_i ~ N(x; (1 - t) x0_i + t x1_i, sigma^2 t (1 - t))`` (Tong et al., AISTATS 2024,
    Prop. 3.4: the Markov drift of a mixture of bridges). Pairs come from a coupling, e.g. :func:`sample_coupling`.
    """

    def __init__(self, x0: Tensor, x1: Tensor, sigma: float, t_eps: float = 1e-4):
        super().__init__()
        _check_pair(x0, x1)
        if x0.shape != x1.shape:
            raise ValueError("paired x0 and x1 must have the same shape")
        if not sigma > 0:
            raise ValueError(f"sigma must be > 0, got {sigma}")
        self.register_buffer("x0", x0)
        self.register_buffer("x1", x1)
        self.sigma, self.t_eps = float(sigma), float(t_eps)

    def forward(self, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        t = t.reshape(-1, 1).to(x).clamp(self.t_eps, 1 - self.t_eps)
        x0, x1 = self.x0.to(x), self.x1.to(x)
        # Squared distances to every bridge's mean, without forming the (B, N, d) means.
        a, b = (1 - t)[:, :, None], t[:, :, None]
        mu_sq = (a**2 * (x0**2).sum(-1) + b**2 * (x1**2).sum(-1) + 2 * a * b * (x0 * x1).sum(-1))[:, 0]
        cross = (1 - t) * (x @ x0.T) + t * (x @ x1.T)
        d2 = (x**2).sum(-1, keepdim=True) - 2 * cross + mu_sq
        w = torch.softmax(-d2 / (2 * self.sigma**2 * t * (1 - t)), dim=1)
        forward, backward = (w @ x1 - x) / (1 - t), (x - w @ x0) / t
        return 0.5 * (forward + backward), 0.5 * (forward - backward)


def sample_bridge(
    net,
    x: Tensor,
    sigma: float,
    domain: Domain | None = None,
    *,
    direction: str = "forward",
    n_steps: int = 100,
    boundary: str = "reflect",
    generator: Generator = None,
    progress: bool = True,
    callback=None,
) -> Tensor:
    """Integrate the bridge SDE from ``x`` (samples of the source for ``"forward"``, of the target for
    ``"backward"``), reflected on ``domain`` by default; ``boundary="clamp"``/``"none"`` for baselines."""
    if direction not in ("forward", "backward"):
        raise ValueError(f"direction must be 'forward' or 'backward', got {direction!r}")
    sign = 1.0 if direction == "forward" else -1.0

    def drift(x_: Tensor, t: Tensor) -> Tensor:
        v, s = net(x_, t)
        return v + sign * s

    t0, t1 = (0.0, 1.0) if direction == "forward" else (1.0, 0.0)
    return reflected_euler_maruyama(
        drift, x, domain, diffusion=sigma, t0=t0, t1=t1, n_steps=n_steps, boundary=boundary,
        generator=generator, progress=progress, callback=callback,
    )
