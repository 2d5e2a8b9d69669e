"""Likelihoods from deepinv ``Physics`` operators (deepinv is imported lazily, only here).

``from_physics(physics, y)`` turns any deepinv forward model plus its Gaussian noise level into a scidiff
:class:`~scidiff.likelihoods.Likelihood`:

* a ``LinearPhysics`` gives a :class:`~scidiff.likelihoods.LinearGaussianLikelihood` with the operator's own
  ``A``, ``A_adjoint`` and ``A_dagger``;
* a ``DecomposablePhysics`` (``A = U diag(s) V^T``) also exposes an :class:`SVD` for SVD-space samplers;
* any other (nonlinear) ``Physics`` gives a :class:`~scidiff.likelihoods.GaussianLikelihood` on ``physics.A``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from .base import GaussianLikelihood, LinearGaussianLikelihood


@dataclass(frozen=True)
class SVD:
    """A linear operator in factored form ``A x = U(s * V^T x)``.

    ``V_adjoint`` maps a signal to its spectral coordinates, ``singular_values`` multiply them (entries
    near zero are unobserved directions), ``U`` maps them to measurement space; ``U_adjoint`` and ``V``
    go back. This is the capability DDRM-, FPS- and MCGdiff-type samplers ask for (``require("svd")``).
    """

    U: Callable[[Tensor], Tensor]
    U_adjoint: Callable[[Tensor], Tensor]
    V: Callable[[Tensor], Tensor]
    V_adjoint: Callable[[Tensor], Tensor]
    singular_values: Tensor | float


def _noise_sigma(physics) -> float:
    import deepinv as dinv

    noise = getattr(physics, "noise_model", None)
    if isinstance(noise, dinv.physics.GaussianNoise):
        sigma = torch.as_tensor(noise.sigma).detach().reshape(-1)
        if sigma.numel() != 1:
            raise ValueError("the physics' GaussianNoise has a per-item sigma; pass one sigma_y explicitly")
        return float(sigma[0])
    raise ValueError(
        f"cannot read sigma_y from the physics' noise model ({type(noise).__name__}); "
        "only GaussianNoise is understood, so pass sigma_y explicitly"
    )


def from_physics(
    physics,
    y: Tensor,
    sigma_y: float | None = None,
    *,
    x_shape: Sequence[int] | None = None,
) -> GaussianLikelihood:
    """A Gaussian likelihood ``|y - physics.A(x)|^2 / (2 sigma_y^2)`` for any deepinv ``Physics``.

    Args:
        physics: a ``deepinv.physics.Physics`` (linear, decomposable or nonlinear).
        y: measurements with batch size 1 (shared by every sample) or the number of samples.
        sigma_y: measurement noise std; read from ``physics.noise_model`` (``GaussianNoise``) when ``None``.
        x_shape: optional event shape of the signal ``(C, ...)``. When given, ``physics.A`` is applied to a
            zero signal once so a mismatch with ``y``'s shape is reported here rather than inside a sampler.
    """
    import deepinv as dinv

    if not isinstance(physics, dinv.physics.Physics):
        raise TypeError(f"physics must be a deepinv.physics.Physics, got {type(physics).__name__}")
    if not isinstance(y, Tensor):
        raise TypeError(f"y must be a tensor, got {type(y).__name__}")
    if sigma_y is None:
        sigma_y = _noise_sigma(physics)
    if x_shape is not None:
        _check_y_shape(physics, y, tuple(x_shape))

    if isinstance(physics, dinv.physics.DecomposablePhysics):
        svd = SVD(physics.U, physics.U_adjoint, physics.V, physics.V_adjoint, physics.mask)
        return LinearGaussianLikelihood(
            physics.A, physics.A_adjoint, y, sigma_y, A_dagger=physics.A_dagger, svd=svd
        )
    if isinstance(physics, dinv.physics.LinearPhysics):
        return LinearGaussianLikelihood(physics.A, physics.A_adjoint, y, sigma_y, A_dagger=physics.A_dagger)
    return GaussianLikelihood(physics.A, y, sigma_y)


def _check_y_shape(physics, y: Tensor, x_shape: tuple[int, ...]) -> None:
    with torch.no_grad():
        ay = physics.A(torch.zeros(1, *x_shape, dtype=y.dtype, device=y.device))
    if tuple(ay.shape[1:]) != tuple(y.shape[1:]):
        raise ValueError(
            f"physics.A maps x of shape (B, {', '.join(map(str, x_shape))}) to {tuple(ay.shape)}, "
            f"which does not match the measurements y of shape {tuple(y.shape)}"
        )
