"""Data assimilation: sparse, noisy observations of a trajectory, answered by a trajectory prior.

A trajectory prior over ``(variables, time)`` windows samples all states of the window jointly, as score-based
data assimilation does (SDA, Rozet & Louppe, NeurIPS 2023): the observation model enters only at inference. The
guided score is SDA's Gaussian approximation ``log p(y | x_sigma) ≈ -|y - A(x0_hat)|^2 / (2 (sigma_y^2 + sigma^2))``
(their eq. 13 with ``gamma = 1`` in EDM units), which is DPS with ``guidance="annealed"``
(:func:`scidiff.inverse.dps`); the result is a :class:`~scidiff.inverse.Posterior` whose mean and spread over time
are the assimilated state and its uncertainty.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ..diffusion.random import Generator
from ..inverse import Posterior, dps
from ..likelihoods import LinearGaussianLikelihood, PointSensors
from ..likelihoods.units import in_model_units


def trajectory_observations(
    variables: Sequence[int], times: Sequence[float] | Tensor, values: Tensor, sigma_y: float, time_grid: Tensor,
    num_variables: int,
) -> LinearGaussianLikelihood:
    """``y_m = x_{v_m}(t_m) + sigma_y n``: readings of variable ``v_m`` at time ``t_m`` (linear in time between saved steps).

    Built on :class:`~scidiff.likelihoods.PointSensors` over the ``(variable, time)`` grid, so the operator, its
    exact adjoint and its checks are the sensors'. ``x`` is a trajectory batch ``(B, variables, time)``.
    """
    variables = torch.as_tensor(list(variables), dtype=torch.float64)
    times = torch.as_tensor(times, dtype=torch.float64)
    if variables.shape != times.shape or variables.ndim != 1:
        raise ValueError(f"variables and times must be 1D of the same length; got {tuple(variables.shape)} and "
                         f"{tuple(times.shape)}")
    if ((variables < 0) | (variables > num_variables - 1) | (variables != variables.round())).any():
        raise ValueError(f"observed variable indices must be integers in [0, {num_variables - 1}]")
    grid = [torch.arange(num_variables, dtype=torch.float64), torch.as_tensor(time_grid, dtype=torch.float64)]
    sensors = PointSensors(torch.stack([variables, times], 1), torch.as_tensor(values).reshape(-1), sigma_y, grid)

    def A(x):  # noqa: N802
        return sensors.A(x[:, None])

    def A_adjoint(r):  # noqa: N802
        return sensors.A_adjoint(r)[:, 0]

    return LinearGaussianLikelihood(A, A_adjoint, sensors.y, sigma_y)


def assimilate(
    denoiser,
    likelihood: LinearGaussianLikelihood,
    shape: Sequence[int],
    sigmas: Tensor,
    *,
    mean: Tensor | float = 0.0,
    std: Tensor | float = 1.0,
    zeta: float = 1.0,
    eta: float = 1.0,
    generator: Generator = None,
    progress: bool = False,
) -> Posterior:
    """Posterior trajectories given observations in physical units; ``x_phys = mean + std * x`` for the denoiser's ``x``.

    ``mean``/``std`` are per-variable normalisers (``prior.norm_mean``/``prior.norm_std``) or scalars. The samples
    of the returned :class:`~scidiff.inverse.Posterior` are in physical units.
    """
    mean_t = torch.as_tensor(mean, dtype=torch.float64)
    std_t = torch.as_tensor(std, dtype=torch.float64)
    # per-variable normalisers broadcast over time
    mean_t = mean_t[:, None] if mean_t.ndim == 1 else mean_t
    std_t = std_t[:, None] if std_t.ndim == 1 else std_t
    lik = in_model_units(likelihood, mean_t, std_t, shape=tuple(shape[1:]))
    post = dps(denoiser, lik, shape, sigmas, zeta=zeta, guidance="annealed", eta=eta, generator=generator,
               progress=progress)
    phys = mean_t.to(post.samples) + std_t.to(post.samples) * post.samples
    return Posterior(samples=phys, info={**post.info, "method": "assimilation (dps, annealed)"})
