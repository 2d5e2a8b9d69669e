"""Use scidiff denoisers inside deepinv and deepinv denoisers inside scidiff.

deepinv's ``Denoiser(x, sigma)`` sees images in [0, 1] and noise levels on that scale; scidiff's Denoiser
sees data in its own units. With ``data_range = (lo, hi)`` the two are related by the affine map
``x_scidiff = lo + (hi - lo) x_deepinv`` and ``sigma_scidiff = (hi - lo) sigma_deepinv``, under which
``E[x0 | x]`` transforms the same way, so the wrapped denoiser is exact whenever the original is.
"""

from __future__ import annotations

import math

import deepinv as dinv
import torch
from torch import Tensor

from ..diffusion._utils import as_sigma_batch


def _check_range(data_range) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in data_range)
    except (TypeError, ValueError):
        raise TypeError(f"data_range must be a pair (lo, hi), got {data_range!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and hi > lo):
        raise ValueError(f"data_range must be finite with hi > lo, got {(lo, hi)}")
    return lo, hi


class ScidiffAsDeepinv(dinv.models.Denoiser):
    """A scidiff Denoiser seen as a ``deepinv.models.Denoiser`` on [0, 1] data."""

    def __init__(self, denoiser, data_range: tuple[float, float]):
        super().__init__()
        self.denoiser = denoiser
        self.lo, self.hi = _check_range(data_range)

    def forward(self, x: Tensor, sigma, *args, **kwargs) -> Tensor:
        scale = self.hi - self.lo
        sigma = self._handle_sigma(sigma, batch_size=x.shape[0], device=x.device, dtype=x.dtype)
        out = self.denoiser(self.lo + scale * x, scale * sigma.reshape(x.shape[0]), **kwargs)
        return (out - self.lo) / scale


class DeepinvAsScidiff(torch.nn.Module):
    """A ``deepinv.models.Denoiser`` (on [0, 1] data) seen as a scidiff Denoiser in the units of ``data_range``."""

    def __init__(self, denoiser, data_range: tuple[float, float]):
        super().__init__()
        self.denoiser = denoiser
        self.lo, self.hi = _check_range(data_range)

    def forward(self, x: Tensor, sigma: Tensor | float, **cond) -> Tensor:
        scale = self.hi - self.lo
        sigma = as_sigma_batch(sigma, x)
        return self.lo + scale * self.denoiser((x - self.lo) / scale, sigma / scale, **cond)


def to_deepinv(denoiser, data_range: tuple[float, float] = (-1.0, 1.0)) -> ScidiffAsDeepinv:
    """Wrap a scidiff Denoiser (or prior) so deepinv's DPS, DiffPIR, DDRM... can use it.

    ``data_range`` is the interval of scidiff units that deepinv's [0, 1] stands for.
    """
    return ScidiffAsDeepinv(denoiser, data_range)


def from_deepinv(denoiser, data_range: tuple[float, float] = (-1.0, 1.0)) -> DeepinvAsScidiff:
    """Wrap a ``deepinv.models.Denoiser`` as a scidiff Denoiser whose data live in ``data_range``."""
    if not callable(denoiser):
        raise TypeError(f"denoiser must be callable, got {type(denoiser).__name__}")
    return DeepinvAsScidiff(denoiser, data_range)
