"""Nonlinear forward models as Gaussian likelihoods.

:class:`SaturatingSensor` -- a detector with a finite range: the ideal reading ``u = inner(x)`` (any
differentiable forward, e.g. a deepinv ``Physics.A``) is compressed smoothly towards ``+-level``,
``y = level tanh(u / level) + sigma_y n``. It is linear for ``|u| << level`` and flat beyond, so strong
signals lose information: a standard nonlinear test problem (it is the photometric saturation used for
nonlinear inverse problems with diffusion priors, and the soft clipping of amplifiers and ADCs).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from .base import GaussianLikelihood


class SaturatingSensor(GaussianLikelihood):
    """``y = level * tanh(inner(x) / level) + sigma_y n``.

    Args:
        inner: the linear (or not) measurement before saturation.
        y: measurements (batch 1 or the batch size of ``x``); every ``|y|`` must be below ``level + 6 sigma_y``.
        sigma_y: noise std.
        level: saturation level (the sensor's full scale), positive.
    """

    def __init__(self, inner: Callable[[Tensor], Tensor], y: Tensor, sigma_y: float, level: float):
        if not level > 0:
            raise ValueError(f"the saturation level must be positive, got {level}")
        if torch.as_tensor(y).abs().max() > level + 6 * sigma_y:
            raise ValueError(
                f"measurements reach {float(torch.as_tensor(y).abs().max()):.4g}, beyond the sensor's range "
                f"level + 6 sigma_y = {level + 6 * sigma_y:.4g}: wrong level or units"
            )
        self.inner, self.level = inner, float(level)
        super().__init__(self.saturate, y, sigma_y)

    def saturate(self, x: Tensor) -> Tensor:
        return self.level * torch.tanh(self.inner(x) / self.level)
