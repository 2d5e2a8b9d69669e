"""Finite differences, total variation and the ADMM-TV pieces used by DiffusionMBIR, DDS and ADMM-TV.

Differences are forward differences along chosen tensor dimensions. ``boundary="neumann"`` (default)
sets the last difference to zero (no coupling across the volume's ends); ``"circular"`` wraps the last
slice onto the first, as the DiffusionMBIR/DDS reference code does -- kept as an option, not a default,
because it joins the top and the bottom of a volume.

ADMM splits ``min_x 1/2 |A x - y|^2 + lam |D x|_1`` as ``z = D x`` (Boyd et al. 2011, Sec. 6.4.1);
one iteration with scaled dual ``u`` is

    x <- argmin 1/2 |A x - y|^2 + rho/2 |D x - z + u|^2   (CG on A^T A + rho D^T D)
    z <- soft(D x + u, lam / rho);   u <- u + D x - z.

Volumes are batch items ``(B, 1, D, H, W)``: the batched CG of :mod:`scidiff.kernels.cg` takes one inner
product per item, i.e. over the whole volume, which is what a z-coupled system needs (a per-slice CG would
not be conjugate for ``D_z^T D_z``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from .cg import conjugate_gradient

BOUNDARIES = ("neumann", "circular")


def _check_boundary(boundary: str) -> None:
    if boundary not in BOUNDARIES:
        raise ValueError(f"boundary must be one of {BOUNDARIES}; got {boundary!r}")


def finite_diff(x: Tensor, dim: int, boundary: str = "neumann") -> Tensor:
    """Forward difference ``x[i+1] - x[i]`` along ``dim`` (same shape as ``x``)."""
    _check_boundary(boundary)
    if boundary == "circular":
        return torch.roll(x, -1, dim) - x
    d = torch.diff(x, dim=dim)
    return torch.cat([d, torch.zeros_like(x.narrow(dim, 0, 1))], dim)


def finite_diff_adjoint(p: Tensor, dim: int, boundary: str = "neumann") -> Tensor:
    """The exact adjoint of :func:`finite_diff` (a negative backward divergence)."""
    _check_boundary(boundary)
    if boundary == "circular":
        return torch.roll(p, 1, dim) - p
    n = p.shape[dim]
    p = torch.cat([p.narrow(dim, 0, n - 1), torch.zeros_like(p.narrow(dim, 0, 1))], dim)  # the zero last row
    prev = torch.cat([torch.zeros_like(p.narrow(dim, 0, 1)), p.narrow(dim, 0, n - 1)], dim)
    return prev - p


def gradient(x: Tensor, dims: Sequence[int], boundary: str = "neumann") -> Tensor:
    """Stacked differences ``(len(dims), *x.shape)``."""
    return torch.stack([finite_diff(x, d, boundary) for d in dims])


def gradient_adjoint(p: Tensor, dims: Sequence[int], boundary: str = "neumann") -> Tensor:
    return sum(finite_diff_adjoint(p[k], d, boundary) for k, d in enumerate(dims))


def soft_threshold(v: Tensor, tau: float) -> Tensor:
    """Proximal map of ``tau |.|_1`` (anisotropic TV)."""
    return torch.sign(v) * (v.abs() - tau).clamp_min(0)


def group_soft_threshold(v: Tensor, tau: float) -> Tensor:
    """Proximal map of ``tau |.|_{2,1}`` over the leading (direction) axis (isotropic TV)."""
    norm = v.pow(2).sum(0, keepdim=True).sqrt()
    return v * (1 - tau / norm.clamp_min(1e-12)).clamp_min(0)


def tv(x: Tensor, dims: Sequence[int], boundary: str = "neumann", *, isotropic: bool = False) -> Tensor:
    """Total variation per batch item, ``(B,)``: ``sum |D_k x|`` (anisotropic) or ``sum |D x|_2`` (isotropic)."""
    g = gradient(x, dims, boundary)
    mag = g.pow(2).sum(0).sqrt() if isotropic else g.abs().sum(0)
    return mag.flatten(1).sum(1)


class ADMMTV:
    """The state of ADMM for ``1/2 |A x - y|^2 + lam TV(x)``: splitting variable ``z`` and scaled dual ``u``.

    DiffusionMBIR and DDS (Chung et al. 2023; 2024) keep one such state for the whole diffusion run
    ("variable sharing") and call :meth:`step` once per diffusion step; ADMM-TV calls it to convergence.

    Args:
        normal: ``v -> A^T A v`` on volumes.
        Aty: ``A^T y``.
        lam, rho: TV weight and ADMM penalty (scale both by ``|A|^2`` so they do not depend on the operator's units).
        dims: tensor dimensions the TV acts on (``(-3,)`` is z for ``(B, 1, D, H, W)``).
        isotropic: group the differences (``|.|_{2,1}``) instead of ``|.|_1`` per direction.
    """

    def __init__(
        self,
        normal: Callable[[Tensor], Tensor],
        Aty: Tensor,  # noqa: N803
        lam: float,
        rho: float,
        dims: Sequence[int] = (-3,),
        boundary: str = "neumann",
        *,
        isotropic: bool = False,
    ):
        _check_boundary(boundary)
        if not lam >= 0 or not rho > 0:
            raise ValueError(f"ADMM-TV needs lam >= 0 and rho > 0; got lam={lam}, rho={rho}")
        self.normal, self.Aty, self.lam, self.rho = normal, Aty, float(lam), float(rho)
        self.dims, self.boundary, self.isotropic = tuple(dims), boundary, isotropic
        self.z = torch.zeros(len(self.dims), *Aty.shape, dtype=Aty.dtype, device=Aty.device)
        self.u = torch.zeros_like(self.z)

    def D(self, x: Tensor) -> Tensor:  # noqa: N802
        return gradient(x, self.dims, self.boundary)

    def Dt(self, p: Tensor) -> Tensor:  # noqa: N802
        return gradient_adjoint(p, self.dims, self.boundary)

    def step(self, x: Tensor, n_cg: int = 1) -> Tensor:
        """One ADMM iteration from ``x`` with ``n_cg`` CG steps for the x-update (warm-started at ``x``)."""
        b = self.Aty + self.rho * self.Dt(self.z - self.u)
        x = conjugate_gradient(
            lambda v: self.normal(v) + self.rho * self.Dt(self.D(v)), b, x, max_iter=n_cg, tol=1e-7
        )
        dx = self.D(x)
        shrink = group_soft_threshold if self.isotropic else soft_threshold
        self.z = shrink(dx + self.u, self.lam / self.rho)
        self.u = self.u + dx - self.z
        return x
