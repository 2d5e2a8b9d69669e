"""Euler--Maruyama for (reflected) SDEs ``dX = f(X, t) dt + g(t) dW (+ n dL)`` on a domain.

Each step proposes ``x + f dt + g sqrt(|dt|) xi`` and maps it back with the domain's specular reflection
(Lou & Ermon, ICML 2023, Alg. 1; Deng et al., UAI 2024, Sec. 4). The ``boundary`` switch exists so that
benchmarks can compare the reflected process with the two common shortcuts: ``"clamp"`` (project each
step onto the domain, which piles mass up on the boundary) and ``"none"`` (no constraint at all).
Time may run backwards (``t1 < t0``) for reverse-time SDEs; the noise always scales with ``sqrt(|dt|)``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..diffusion._utils import check_finite
from ..diffusion.random import Generator, randn_like
from .domains import Domain

BOUNDARIES = ("reflect", "clamp", "none")


def apply_boundary(domain: Domain | None, x_old: Tensor, x_new: Tensor, boundary: str) -> Tensor:
    """Map an Euler proposal back to the domain by ``reflect``, ``clamp`` (projection) or ``none``."""
    if boundary not in BOUNDARIES:
        raise ValueError(f"boundary must be one of {BOUNDARIES}, got {boundary!r}")
    if domain is None or boundary == "none":
        return x_new
    if boundary == "clamp":
        return domain.project(x_new)
    return domain.reflect(x_old, x_new)


def _diffusion_fn(diffusion) -> Callable[[float], float]:
    if callable(diffusion):
        return diffusion
    g = float(diffusion)
    if not g >= 0:
        raise ValueError(f"diffusion coefficient must be >= 0, got {diffusion}")
    return lambda t: g


@torch.no_grad()
def reflected_euler_maruyama(
    drift: Callable[[Tensor, Tensor], Tensor] | None,
    x: Tensor,
    domain: Domain | None,
    *,
    diffusion: float | Callable[[float], float] = 1.0,
    t0: float = 0.0,
    t1: float = 1.0,
    n_steps: int = 100,
    times: Tensor | None = None,
    boundary: str = "reflect",
    last_step_noise: bool = True,
    generator: Generator = None,
    progress: bool = True,
    callback: Callable[[dict], None] | None = None,
) -> Tensor:
    """Simulate ``dX = drift(X, t) dt + g(t) dW`` with reflection on ``domain``; returns the final state.

    Args:
        drift: ``drift(x, t)`` with ``t`` a ``(B,)`` tensor; ``None`` means zero drift.
        x: start ``(B, d)`` (or ``(B, *dims)`` for a ``Box``); must lie in the domain when it reflects.
        domain: the constraint, or ``None`` for an unconstrained SDE.
        diffusion: ``g`` as a number or a function of the (float) time.
        t0, t1, n_steps: uniform time grid (``t1 < t0`` runs backwards); or give ``times`` explicitly.
        boundary: ``"reflect"`` (default), ``"clamp"`` or ``"none"``.
        last_step_noise: set ``False`` to make the final step deterministic (noise removal).
        generator: ``None``, a ``torch.Generator`` or per-sample generators (see scidiff.diffusion.random).
        callback: receives ``{"x", "i", "t"}`` after every step (the trajectory is not kept otherwise).
    """
    if not isinstance(x, Tensor):
        raise TypeError("x must be a torch.Tensor")
    check_finite(x, "initial state x")
    if times is None:
        if not isinstance(n_steps, int) or n_steps < 1:
            raise ValueError(f"n_steps must be a positive int, got {n_steps!r}")
        times = torch.linspace(t0, t1, n_steps + 1, dtype=torch.float64)
    ts = [float(t) for t in torch.as_tensor(times).detach().cpu().reshape(-1)]
    if len(ts) < 2:
        raise ValueError("need at least two time points")
    diff = (torch.tensor(ts[1:]) - torch.tensor(ts[:-1]))
    if not ((diff > 0).all() or (diff < 0).all()):
        raise ValueError("times must be strictly monotone")
    if boundary not in BOUNDARIES:
        raise ValueError(f"boundary must be one of {BOUNDARIES}, got {boundary!r}")
    if domain is not None and boundary != "none":
        domain.check_inside(x, "initial state x")
    g_of = _diffusion_fn(diffusion)
    n = len(ts) - 1
    for i in tqdm(range(n), disable=not progress, desc="reflected SDE", leave=False):
        t, dt = ts[i], ts[i + 1] - ts[i]
        step = drift(x, x.new_full((x.shape[0],), t)) * dt if drift is not None else 0.0
        g = g_of(t)
        noisy = last_step_noise or i < n - 1
        proposal = x + step + (g * abs(dt) ** 0.5) * randn_like(x, generator) if (noisy and g > 0) else x + step
        x = apply_boundary(domain, x, proposal, boundary)
        if callback is not None:
            callback({"x": x, "i": i, "t": ts[i + 1]})
    return x
