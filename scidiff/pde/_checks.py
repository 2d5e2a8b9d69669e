"""Input validation and grids shared by the PDE solvers (numpy) and residuals (torch)."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def batch_np(arr, name: str, ndim: int) -> tuple[np.ndarray, bool]:
    """Return ``arr`` as a float64 array with a leading batch axis and whether the input had none."""
    arr = np.asarray(arr, dtype=np.float64)
    if arr.ndim == ndim:
        arr, single = arr[None], True
    elif arr.ndim == ndim + 1:
        single = False
    else:
        raise ValueError(f"{name} must have {ndim} (one field) or {ndim + 1} (a batch) dims; got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains {int((~np.isfinite(arr)).sum())} non-finite value(s) (NaN or inf)")
    return arr, single


def check_square(arr: np.ndarray | Tensor, name: str, min_size: int = 3) -> int:
    """The last two dims must be an ``n x n`` grid with ``n >= min_size``; return ``n``."""
    h, w = arr.shape[-2:]
    if h != w or h < min_size:
        raise ValueError(f"{name} must live on a square grid of at least {min_size}x{min_size}; got {h}x{w}")
    return h


def check_fields(name_fields: dict[str, Tensor], ndim: int) -> None:
    """Torch residual inputs: same shape, rank ``ndim`` (batch included), floating point, no NaN."""
    shapes = {k: tuple(v.shape) for k, v in name_fields.items()}
    for k, v in name_fields.items():
        if not isinstance(v, Tensor):
            raise TypeError(f"{k} must be a torch.Tensor, got {type(v).__name__}")
        if v.ndim != ndim:
            raise ValueError(f"{k} must have {ndim} dims (batch first); got shape {tuple(v.shape)}")
        if not v.is_floating_point():
            raise TypeError(f"{k} must be a floating-point tensor, got {v.dtype}")
        if not torch.isfinite(v).all():
            raise ValueError(f"{k} contains non-finite values (NaN or inf)")
    if len(set(shapes.values())) > 1:
        raise ValueError(f"fields must have the same shape; got {shapes}")


def node_coords(n: int) -> np.ndarray:
    """Nodes of the unit interval including both boundary nodes: spacing ``h = 1 / (n - 1)``."""
    return np.linspace(0.0, 1.0, n)


def periodic_coords(n: int) -> np.ndarray:
    """Nodes of the periodic unit interval ``[0, 1)``: spacing ``h = 1 / n``."""
    return np.arange(n) / n
