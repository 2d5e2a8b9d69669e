"""Batched conjugate gradients: each batch item is its own linear system."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


def _dot(a: Tensor, b: Tensor) -> Tensor:
    return (a * b).flatten(1).sum(1).reshape(-1, *([1] * (a.ndim - 1)))


def conjugate_gradient(
    apply: Callable[[Tensor], Tensor],
    b: Tensor,
    x0: Tensor | None = None,
    *,
    max_iter: int = 100,
    tol: float = 1e-6,
    check_every: int = 8,
) -> Tensor:
    """Solve ``apply(x) = b`` for a symmetric positive (semi-)definite ``apply``, batch item by item.

    Stops when every item's residual norm is below ``tol`` times its ``|b|``. On a semi-definite system
    (e.g. ``A^T A`` with a non-trivial null space) started from zero, it converges to the minimum-norm
    solution, so ``apply = A^T A``, ``b = A^T y`` gives the pseudo-inverse ``A^+ y``.

    An item stops moving once converged; whether all have converged is asked of the device only every
    ``check_every`` iterations (one host sync each time), which gives the same result as asking every time.
    """
    x = torch.zeros_like(b) if x0 is None else x0.clone()
    r = b - apply(x) if x0 is not None else b.clone()
    p = r.clone()
    rs = _dot(r, r)
    threshold = (tol**2) * _dot(b, b).clamp_min(torch.finfo(b.dtype).tiny)
    for it in range(max_iter):
        active = rs > threshold
        if it % check_every == 0 and not bool(active.any()):
            break
        ap = apply(p)
        denom = _dot(p, ap)
        alpha = torch.where(active & (denom > 0), rs / denom.clamp_min(torch.finfo(b.dtype).tiny), torch.zeros_like(rs))
        x = x + alpha * p
        r = r - alpha * ap
        rs_new = _dot(r, r)
        p = r + (rs_new / rs.clamp_min(torch.finfo(b.dtype).tiny)) * p
        rs = rs_new
    return x
