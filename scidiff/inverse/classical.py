"""Classical 3D baselines: filtered back-projection (or zero filling) and ADMM-TV.

ADMM-TV solves ``min_x 1/2 |A x - y|^2 + lam TV(x)`` (anisotropic 3D TV by default, as the DiffusionMBIR
baseline ``get_ADMM_TV``; Chung et al. 2023), with ``lam`` and ``rho`` *relative to* ``|A|^2`` and
Neumann boundaries. Defaults (``lam = 1e-3``, ``rho = 1e-2``) are the optimum measured on 64^3 phantoms at
8 views (docs/ct3d.md).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..kernels.tv import tv as tv_norm
from ._volume import TV_DIMS, admm_state, check_problem


@torch.no_grad()
def fbp(physics, y: Tensor) -> Tensor:
    """Filtered back-projection per slice (CT) or the zero-filled ``A^T y`` (MRI)."""
    check_problem(physics, y)
    return physics.fbp(y)


def objective(
    physics, y: Tensor, x: Tensor, lam_abs: float, tv: str = "all", boundary: str = "neumann", isotropic: bool = False
) -> Tensor:
    """``1/2 |A x - y|^2 + lam TV(x)`` per volume, ``(B,)`` (``lam_abs`` in absolute units)."""
    data = 0.5 * (physics.A(x) - y).pow(2).flatten(1).sum(1)
    return data + lam_abs * tv_norm(x, TV_DIMS[tv], boundary, isotropic=isotropic) if TV_DIMS[tv] else data


@torch.no_grad()
def admm_tv(
    physics,
    y: Tensor,
    *,
    lam: float = 1e-3,
    rho: float = 1e-2,
    tv: str = "all",
    n_iter: int = 30,
    n_cg: int = 20,
    boundary: str = "neumann",
    isotropic: bool = False,
    x0: Tensor | None = None,
    progress: bool = False,
    callback: Callable[[dict], None] | None = None,
) -> Tensor:
    """ADMM-TV reconstruction ``(B, 1, D, H, W)``; ``callback({"i", "x", "objective"})`` after each iteration."""
    check_problem(physics, y)
    state = admm_state(physics, y, lam, rho, tv, boundary, isotropic)
    x = torch.zeros_like(state.Aty) if x0 is None else x0.clone()
    for i in tqdm(range(n_iter), disable=not progress, desc="admm-tv", leave=False):
        x = state.step(x, n_cg)
        if callback is not None:
            callback({"i": i, "x": x, "objective": objective(physics, y, x, state.lam, tv, boundary, isotropic)})
    return x
