"""Join a prior trained in normalised units to a data term written in physical units.

Priors are trained on ``x = (x_phys - mean) / std``; operators and sensors live in physical units. The
likelihood a sampler needs is therefore ``energy_model(x) = energy_phys(mean + std * x)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ..diffusion._utils import check_finite
from .base import GaussianLikelihood, Likelihood, LinearGaussianLikelihood


def in_model_units(
    likelihood: Likelihood,
    mean: float | Tensor,
    std: float | Tensor,
    *,
    shape: Sequence[int] | None = None,
) -> Likelihood:
    """The likelihood of the normalised signal ``x``, where ``x_phys = mean + std * x``.

    ``mean`` and ``std`` are scalars or tensors broadcastable to the event shape (e.g. ``(C, 1, 1)`` for
    per-channel normalisers). A linear-Gaussian likelihood stays linear-Gaussian: the offset moves into
    the measurements, ``y' = y - A(mean)`` and ``A'(x) = A(std * x)``, so ``A``, ``A_adjoint``,
    ``A_dagger`` (and the SVD, when ``std`` is a scalar) keep their meaning. That shift needs the event
    ``shape`` unless ``mean`` is zero or already has the full event shape. Other likelihoods are composed
    with the map.
    """
    mean_t = torch.as_tensor(mean, dtype=torch.float64)
    std_t = torch.as_tensor(std, dtype=torch.float64)
    check_finite(mean_t, "normaliser mean")
    check_finite(std_t, "normaliser std")
    if (std_t <= 0).any():
        raise ValueError("normaliser std must be positive")
    if isinstance(likelihood, LinearGaussianLikelihood):
        return _linear(likelihood, mean_t, std_t, shape)
    if isinstance(likelihood, GaussianLikelihood):
        fwd = likelihood.forward
        return GaussianLikelihood(lambda x: fwd(_to_phys(x, mean_t, std_t)), likelihood.y, likelihood.sigma_y)
    return _ComposedLikelihood(likelihood, mean_t, std_t)


def _to_phys(x: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    return mean.to(x) + std.to(x) * x


def _linear(lik: LinearGaussianLikelihood, mean: Tensor, std: Tensor, shape) -> LinearGaussianLikelihood:
    y = lik.y
    if bool((mean != 0).any()):
        if shape is None and mean.ndim == 0:
            raise ValueError("a scalar mean needs the event shape (shape=...) to compute the offset A(mean)")
        shape = tuple(shape) if shape is not None else tuple(mean.shape)
        full = mean.to(y.dtype).expand(*shape)[None].to(y.device)
        y = y - lik.A(full)

    def A(x):  # noqa: N802
        return lik.A(std.to(x) * x)

    def A_adjoint(r):  # noqa: N802
        return std.to(r) * lik.A_adjoint(r)

    def A_dagger(v):  # noqa: N802
        return lik.A_dagger(v) / std.to(v)

    svd = None
    if lik.svd is not None and std.numel() == 1:
        s = lik.svd
        svd = type(s)(s.U, s.U_adjoint, s.V, s.V_adjoint, s.singular_values * float(std))
    return LinearGaussianLikelihood(A, A_adjoint, y, lik.sigma_y, A_dagger=A_dagger, svd=svd)


class _ComposedLikelihood(Likelihood):
    """``energy(mean + std * x)`` for a general likelihood (gradient by autograd, chain rule included)."""

    def __init__(self, base: Likelihood, mean: Tensor, std: Tensor):
        self.base, self.mean, self.std = base, mean, std

    def energy(self, x, sigma=None):
        return self.base.energy(_to_phys(x, self.mean, self.std), sigma)
