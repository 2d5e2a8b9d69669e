"""Point sensors: a field observed at arbitrary continuous coordinates through (multi)linear interpolation."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
from torch import Tensor

from ..diffusion._utils import check_finite
from .base import LinearGaussianLikelihood


class PointSensors(LinearGaussianLikelihood):
    """``y_m = interp(x, c_m) + sigma_y n``: values of a gridded field at ``M`` points ``c_m`` anywhere in the grid.

    The interpolation is linear in 1D, bilinear in 2D and trilinear in 3D, so the observation is a sparse
    linear operator: each sensor reads the ``2^D`` grid nodes around it. Its exact adjoint spreads a
    measurement residual back onto those nodes with the same weights.

    Args:
        coords: ``(M, D)`` sensor coordinates in the units of ``grid``.
        values: ``(M,)`` readings of a one-channel field, or ``(C, M)`` for ``C`` channels.
        sigma_y: sensor noise std.
        grid: ``D`` increasing 1D tensors, the node coordinates of the last ``D`` axes of ``x``
            (``x`` is ``(B, C, *spatial)``); spacing may be non-uniform.
    """

    def __init__(self, coords: Tensor, values: Tensor, sigma_y: float, grid: Sequence[Tensor]):
        coords = torch.as_tensor(coords, dtype=torch.float64)
        values = torch.as_tensor(values)
        grid = [torch.as_tensor(g, dtype=torch.float64) for g in grid]
        _check_inputs(coords, values, grid)
        self.grid_shape = tuple(len(g) for g in grid)
        self.index, self.weight = _interpolation_stencil(coords, grid)
        y = values.reshape(1, -1, coords.shape[0]) if values.ndim == 1 else values[None]
        super().__init__(self._apply, self._apply_adjoint, y, sigma_y)

    def _spatial(self, x: Tensor) -> None:
        if tuple(x.shape[2:]) != self.grid_shape or x.ndim != 2 + len(self.grid_shape):
            raise ValueError(
                f"the sensors' grid has shape {self.grid_shape}; expected x of shape (B, C, "
                f"{', '.join(map(str, self.grid_shape))}), got {tuple(x.shape)}"
            )

    def _apply(self, x: Tensor) -> Tensor:
        self._spatial(x)
        flat = x.reshape(*x.shape[:2], -1)
        corners = flat[:, :, self.index.to(x.device)]  # (B, C, M, 2^D)
        return (corners * self.weight.to(x.device, x.dtype)).sum(-1)

    def _apply_adjoint(self, r: Tensor) -> Tensor:
        contrib = (r[..., None] * self.weight.to(r.device, r.dtype)).flatten(2)
        out = r.new_zeros(*r.shape[:2], math.prod(self.grid_shape))
        out.index_add_(2, self.index.to(r.device).flatten(), contrib)
        return out.reshape(*r.shape[:2], *self.grid_shape)

    def to_physics(self):
        """The same operator as a ``deepinv.physics.LinearPhysics`` (e.g. to run deepinv's ``adjointness_test``)."""
        import deepinv as dinv

        return dinv.physics.LinearPhysics(A=self._apply, A_adjoint=self._apply_adjoint)


def _check_inputs(coords: Tensor, values: Tensor, grid: list[Tensor]) -> None:
    if coords.ndim != 2 or coords.shape[1] != len(grid):
        raise ValueError(f"coords must be (M, {len(grid)}) for a {len(grid)}-D grid; got {tuple(coords.shape)}")
    if not 1 <= len(grid) <= 3:
        raise ValueError(f"grid must have 1, 2 or 3 axes, got {len(grid)}")
    for d, g in enumerate(grid):
        if g.ndim != 1 or len(g) < 2 or not (g[1:] > g[:-1]).all():
            raise ValueError(f"grid axis {d} must be a strictly increasing 1D tensor with at least 2 nodes")
    check_finite(coords, "sensor coords")
    check_finite(values, "sensor values")
    if values.ndim not in (1, 2) or values.shape[-1] != coords.shape[0]:
        raise ValueError(f"values must be (M,) or (C, M) with M = {coords.shape[0]}; got {tuple(values.shape)}")
    lo = torch.stack([g[0] for g in grid])
    hi = torch.stack([g[-1] for g in grid])
    outside = ((coords < lo) | (coords > hi)).any(1)
    if outside.any():
        first = int(outside.nonzero()[0])
        raise ValueError(
            f"{int(outside.sum())} sensor(s) lie outside the grid (first: index {first} at "
            f"{coords[first].tolist()}; grid spans {lo.tolist()} to {hi.tolist()})"
        )


def _interpolation_stencil(coords: Tensor, grid: list[Tensor]) -> tuple[Tensor, Tensor]:
    """Flat node indices ``(M, 2^D)`` and multilinear weights ``(M, 2^D)`` of every sensor."""
    lower, frac = [], []
    for d, g in enumerate(grid):
        i = (torch.searchsorted(g, coords[:, d].contiguous(), right=True) - 1).clamp(0, len(g) - 2)
        lower.append(i)
        frac.append((coords[:, d] - g[i]) / (g[i + 1] - g[i]))
    strides = [math.prod(len(g) for g in grid[d + 1 :]) for d in range(len(grid))]
    index, weight = [], []
    for corner in itertools.product((0, 1), repeat=len(grid)):
        idx = sum((lower[d] + b) * strides[d] for d, b in enumerate(corner))
        w = math.prod((frac[d] if b else 1 - frac[d]) for d, b in enumerate(corner))
        index.append(idx)
        weight.append(w)
    return torch.stack(index, 1), torch.stack(weight, 1)
