"""Elliptic PDEs on the unit square with ``u = 0`` on the boundary: Darcy, Poisson, Helmholtz.

Grid: ``n x n`` nodes of ``[0, 1]^2`` including the boundary nodes, spacing ``h = 1 / (n - 1)``; axis ``-2``
is ``y``, axis ``-1`` is ``x``. The reference solvers (numpy/scipy) and the residuals (torch, differentiable,
batched) use the *same* discrete operator, so a reference solution has residual at round-off level and
the discretisation error itself is second order (tested on manufactured solutions).

* Darcy (DiffusionPDE §4; FNO): ``-div(a grad u) = f`` (``f = 1``), five-point finite-volume stencil with
  arithmetic face means of ``a``. Arithmetic (not harmonic) means keep the residual smooth and defined for
  any ``a`` a sampler proposes; it is still second order for smooth ``a``.
* Poisson: ``lap u = a``; Helmholtz: ``lap u + k^2 u = a`` (``k = 1``), five-point Laplacian.

Residuals are returned on the interior nodes, shape ``(B, n - 2, n - 2)``, in physical units: the
reference implementation of DiffusionPDE drops the ``1 / h^2`` of the Darcy stencil (its residual of the
true solution is about 1); this one keeps it.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import scipy.sparse as sp
import torch
from scipy.sparse.linalg import splu
from torch import Tensor

from ._checks import batch_np, check_fields, check_square


# --- Darcy ---------------------------------------------------------------------------------------
def _darcy_matrix(a: np.ndarray) -> sp.csr_matrix:
    """Sparse operator ``-div(a grad .)`` on the ``(n-2)^2`` interior unknowns (boundary values are 0)."""
    n = a.shape[0]
    m, h2 = n - 2, (1.0 / (n - 1)) ** 2
    ax = 0.5 * (a[:, 1:] + a[:, :-1])  # faces between x-neighbours, (n, n-1)
    ay = 0.5 * (a[1:, :] + a[:-1, :])  # faces between y-neighbours, (n-1, n)
    east, west = ax[1:-1, 1:], ax[1:-1, :-1]  # faces of interior node (i, j), each (m, m)
    north, south = ay[1:, 1:-1], ay[:-1, 1:-1]
    idx = np.arange(m * m).reshape(m, m)
    rows, cols, vals = [idx.ravel()], [idx.ravel()], [((east + west + north + south) / h2).ravel()]
    links = (  # (source nodes, neighbour nodes, face coefficient) for neighbours that are unknowns
        (idx[:, :-1], idx[:, 1:], east[:, :-1]),
        (idx[:, 1:], idx[:, :-1], west[:, 1:]),
        (idx[:-1, :], idx[1:, :], north[:-1, :]),
        (idx[1:, :], idx[:-1, :], south[1:, :]),
    )
    for src, dst, face in links:
        rows.append(src.ravel()), cols.append(dst.ravel()), vals.append((-face / h2).ravel())
    return sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(m * m, m * m))


def solve_darcy(a, f=1.0) -> np.ndarray:
    """Solve ``-div(a grad u) = f`` with ``u = 0`` on the boundary of ``[0, 1]^2``.

    Args:
        a: positive coefficient on the node grid, ``(n, n)`` or ``(B, n, n)``.
        f: source, a scalar or an array broadcastable to ``a`` (only interior values are used).

    Returns ``u`` shaped like ``a`` (boundary nodes 0). One sparse direct solve per sample.
    """
    a, single = batch_np(a, "a", 2)
    check_square(a, "a")
    if (a <= 0).any():
        raise ValueError(f"the Darcy coefficient a must be positive; got min(a) = {a.min():.3g}")
    f = np.broadcast_to(np.asarray(f, dtype=np.float64), a.shape)
    if not np.isfinite(f).all():
        raise ValueError("the source f contains non-finite values")
    u, _ = _darcy_lu_solve(a, f)
    return u[0] if single else u


def _darcy_lu_solve(a: np.ndarray, f: np.ndarray) -> tuple[np.ndarray, list]:
    """``u`` ``(B, n, n)`` (boundary 0) and the sparse LU factors of each sample's operator."""
    n = a.shape[-1]
    u, lus = np.zeros_like(a), []
    for b in range(a.shape[0]):
        # A minimum-degree order on A + A^T suits the symmetric five-point pattern (25 % faster than COLAMD).
        lus.append(splu(_darcy_matrix(a[b]).tocsc(), permc_spec="MMD_AT_PLUS_A"))
        u[b, 1:-1, 1:-1] = lus[-1].solve(np.ascontiguousarray(f[b, 1:-1, 1:-1]).ravel()).reshape(n - 2, n - 2)
    return u, lus


class _DarcySolve(torch.autograd.Function):
    """``u = S(a)`` of :func:`solve_darcy` with the adjoint-state gradient (see :func:`solve_darcy_torch`)."""

    @staticmethod
    def forward(ctx, a: Tensor, f: float) -> Tensor:
        a_np = a.detach().cpu().double().numpy()
        u, lus = _darcy_lu_solve(a_np, np.full_like(a_np, float(f)))
        u_t = torch.as_tensor(u, dtype=a.dtype, device=a.device)
        ctx.lus, ctx.f = lus, float(f)
        ctx.save_for_backward(a, u_t)
        return u_t

    @staticmethod
    def backward(ctx, grad_u: Tensor):
        a, u = ctx.saved_tensors
        n = a.shape[-1]
        g = grad_u.detach().cpu().double().numpy()[:, 1:-1, 1:-1].reshape(a.shape[0], -1)
        # The adjoint state: A(a)^T lam = dL/du on the interior (A is symmetric: the same LU factors).
        lam = np.stack([lu.solve(gb) for lu, gb in zip(ctx.lus, g)]).reshape(a.shape[0], n - 2, n - 2)
        lam_t = torch.as_tensor(lam, dtype=a.dtype, device=a.device)
        with torch.enable_grad():  # dL/da = -(dR/da)^T lam, R(a, u) = A(a) u - f linear in a
            a_var = a.detach().requires_grad_(True)
            (vjp,) = torch.autograd.grad(darcy_residual(a_var, u, ctx.f), a_var, lam_t)
        return -vjp, None


def solve_darcy_torch(a: Tensor, f: float = 1.0) -> Tensor:
    """:func:`solve_darcy` for a torch batch ``a`` ``(B, n, n)`` (positive), differentiable in ``a``.

    The gradient is the adjoint-state one: with ``R(a, u) = A(a) u - f`` (the residual of
    :func:`darcy_residual`) and ``u = S(a)`` solving ``R = 0``, ``dL/da = -(dR/da)^T lam`` with the adjoint
    ``A(a)^T lam = dL/du``; ``A`` is symmetric, so the backward pass reuses the forward LU factors (one extra
    triangular solve per sample). Plessix 2006, "A review of the adjoint-state method for computing the gradient
    of a functional with geophysical applications", Geophys. J. Int. 167(2).
    """
    check_fields({"a": a}, 3)
    check_square(a, "a")
    if (a <= 0).any():
        raise ValueError(f"the Darcy coefficient a must be positive; got min(a) = {float(a.min()):.3g}")
    return _DarcySolve.apply(a, float(f))


def darcy_residual(a: Tensor, u: Tensor, f: float | Tensor = 1.0) -> Tensor:
    """``-div(a grad u) - f`` on the interior nodes, ``(B, n-2, n-2)``; differentiable in ``a`` and ``u``."""
    check_fields({"a": a, "u": u}, 3)
    n = check_square(u, "u")
    h = 1.0 / (n - 1)
    flux_x = 0.5 * (a[..., :, 1:] + a[..., :, :-1]) * (u[..., :, 1:] - u[..., :, :-1]) / h
    flux_y = 0.5 * (a[..., 1:, :] + a[..., :-1, :]) * (u[..., 1:, :] - u[..., :-1, :]) / h
    div = (flux_x[..., 1:-1, 1:] - flux_x[..., 1:-1, :-1]) / h + (flux_y[..., 1:, 1:-1] - flux_y[..., :-1, 1:-1]) / h
    if isinstance(f, Tensor) and f.ndim == 3:
        f = f[..., 1:-1, 1:-1]
    return -div - f


# --- Poisson and Helmholtz -------------------------------------------------------------------------
@lru_cache(maxsize=8)
def _laplacian_lu(n: int, k2: float):
    """LU factors of the Dirichlet five-point ``lap + k^2 I`` on the interior; factorised once per (n, k)."""
    m, h2 = n - 2, (1.0 / (n - 1)) ** 2
    t = sp.diags([np.ones(m - 1), -2.0 * np.ones(m), np.ones(m - 1)], [-1, 0, 1]) / h2
    eye = sp.identity(m)
    op = sp.kron(eye, t) + sp.kron(t, eye) + k2 * sp.identity(m * m)
    return splu(op.tocsc())


def _solve_lap(a, k2: float) -> np.ndarray:
    a, single = batch_np(a, "a", 2)
    n = check_square(a, "a")
    lu = _laplacian_lu(n, float(k2))
    rhs = a[:, 1:-1, 1:-1].reshape(a.shape[0], -1).T  # all samples at once
    u = np.zeros_like(a)
    u[:, 1:-1, 1:-1] = lu.solve(np.ascontiguousarray(rhs)).T.reshape(a.shape[0], n - 2, n - 2)
    return u[0] if single else u


def solve_poisson(a) -> np.ndarray:
    """Solve ``lap u = a`` on ``[0, 1]^2`` with ``u = 0`` on the boundary; ``a`` is ``(n, n)`` or ``(B, n, n)``."""
    return _solve_lap(a, 0.0)


def solve_helmholtz(a, k: float = 1.0) -> np.ndarray:
    """Solve ``lap u + k^2 u = a`` with ``u = 0`` on the boundary (``k^2`` must avoid the Dirichlet eigenvalues)."""
    if not np.isfinite(k):
        raise ValueError(f"k must be finite, got {k}")
    return _solve_lap(a, float(k) ** 2)


class _LaplaceSolve(torch.autograd.Function):
    """``u = L^-1 a`` of :func:`_solve_lap` (``L = lap_h + k^2 I`` on the interior) with its exact gradient."""

    @staticmethod
    def forward(ctx, a: Tensor, k2: float) -> Tensor:
        ctx.k2 = k2
        return torch.as_tensor(_solve_lap(a.detach().cpu().double().numpy(), k2), dtype=a.dtype, device=a.device)

    @staticmethod
    def backward(ctx, grad_u: Tensor):
        # The solve is linear and L symmetric: dL/da = L^-T dL/du = L^-1 dL/du on the interior, the same solve
        # (same LU factors) of the incoming gradient; a's boundary nodes do not enter u (gradient 0 there).
        lam = _solve_lap(grad_u.detach().cpu().double().numpy(), ctx.k2)
        return torch.as_tensor(lam, dtype=grad_u.dtype, device=grad_u.device), None


def solve_elliptic_torch(pde: str, a: Tensor, f: float = 1.0, k: float = 1.0) -> Tensor:
    """The reference solver of ``pde`` (``darcy``: :func:`solve_darcy_torch` with source ``f``; ``poisson``,
    ``helmholtz`` with wave number ``k``) for a torch batch ``a`` ``(B, n, n)``, differentiable in ``a``.

    Poisson and Helmholtz are linear in ``a``: ``u = L^-1 a`` on the interior, so the gradient is exact, one more
    solve with the LU factors of the forward pass (cached per grid and ``k``)."""
    if pde == "darcy":
        return solve_darcy_torch(a, f)
    if pde not in ("poisson", "helmholtz"):
        raise ValueError(f"solve_elliptic_torch: pde must be darcy, poisson or helmholtz; got {pde!r}")
    check_fields({"a": a}, 3)
    check_square(a, "a")
    if not math.isfinite(k):
        raise ValueError(f"k must be finite, got {k}")
    return _LaplaceSolve.apply(a, float(k) ** 2 if pde == "helmholtz" else 0.0)


def _laplacian(u: Tensor) -> Tensor:
    h2 = (1.0 / (u.shape[-1] - 1)) ** 2
    c = u[..., 1:-1, 1:-1]
    return (u[..., 1:-1, 2:] + u[..., 1:-1, :-2] + u[..., 2:, 1:-1] + u[..., :-2, 1:-1] - 4 * c) / h2


def poisson_residual(a: Tensor, u: Tensor) -> Tensor:
    """``lap_h u - a`` on the interior nodes, ``(B, n-2, n-2)``."""
    check_fields({"a": a, "u": u}, 3)
    check_square(u, "u")
    return _laplacian(u) - a[..., 1:-1, 1:-1]


def helmholtz_residual(a: Tensor, u: Tensor, k: float = 1.0) -> Tensor:
    """``lap_h u + k^2 u - a`` on the interior nodes, ``(B, n-2, n-2)``."""
    check_fields({"a": a, "u": u}, 3)
    check_square(u, "u")
    return _laplacian(u) + k**2 * u[..., 1:-1, 1:-1] - a[..., 1:-1, 1:-1]


# --- the constant-coefficient operator as a preconditioner --------------------------------------------------
@lru_cache(maxsize=8)
def _dirichlet_sine_basis(m: int) -> tuple[np.ndarray, np.ndarray]:
    """Eigenpairs of the 1D Dirichlet ``-d^2/dx^2`` (three-point, ``m`` interior nodes, ``h = 1 / (m + 1)``).

    The eigenvectors ``S[j, k] = sqrt(2 / (m + 1)) sin(pi j k / (m + 1))`` (the DST-I) form a symmetric
    orthogonal matrix (``S @ S = I``); the eigenvalues are ``(2 - 2 cos(pi k / (m + 1))) / h^2``.
    """
    k = np.arange(1, m + 1)
    basis = np.sqrt(2.0 / (m + 1)) * np.sin(np.pi * np.outer(k, k) / (m + 1))
    return basis, (2.0 - 2.0 * np.cos(np.pi * k / (m + 1))) * (m + 1) ** 2


def laplacian_power(r: Tensor, power: float) -> Tensor:
    """``(-lap_h)^power r`` for fields ``r`` ``(..., m, m)`` on the interior nodes of an ``(m + 2)^2`` grid of
    ``[0, 1]^2`` with zero Dirichlet data (the operator of :func:`poisson_residual`); differentiable.

    ``-lap_h`` is diagonal in the 2D sine basis (eigenvalues ``lambda_i + lambda_j``), so any real power is
    two small matrix products each way. ``power = -1`` solves the Poisson problem ``-lap_h v = r``.
    """
    check_square(r, "the residual", min_size=1)
    basis, lam = _dirichlet_sine_basis(r.shape[-1])
    s = torch.as_tensor(basis, dtype=r.dtype, device=r.device)
    scale = torch.as_tensor(np.add.outer(lam, lam) ** power, dtype=r.dtype, device=r.device)
    return s @ ((s @ r @ s) * scale) @ s
