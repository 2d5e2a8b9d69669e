"""Gaussian random fields with covariance ``sigma^2 (-Delta + tau^2 I)^(-alpha)``.

Two conventions, matching the data of DiffusionPDE (Huang et al., NeurIPS 2024) and FNO (Li et al., ICLR 2021):

* :func:`grf_neumann` -- cosine (DCT) eigenbasis on ``[0, 1]^2`` (Neumann Laplacian), the ``GRF.m`` recipe used
  for the Darcy coefficient and the Poisson/Helmholtz sources: coefficient
  ``tau^(alpha-1) (pi^2 |k|^2 + tau^2)^(-alpha/2)``, mean mode set to 0.
* :func:`grf_periodic` -- Fourier eigenbasis on the torus ``[0, 1)^d`` (d = 1 or 2), the ``GaussianRF`` recipe
  for the Navier--Stokes initial vorticity and the Burgers initial condition: coefficient
  ``sqrt(2) sigma (4 pi^2 |k|^2 + tau^2)^(-alpha/2)``, mean mode 0; ``sigma`` defaults to ``tau^(alpha-1)``.

``generator`` is a ``numpy.random.Generator``, an integer seed, or ``None`` (fresh entropy).
"""

from __future__ import annotations

import numpy as np
from scipy import fft as sfft


def _rng(generator) -> np.random.Generator:
    if isinstance(generator, np.random.Generator):
        return generator
    if generator is None or isinstance(generator, (int, np.integer)):
        return np.random.default_rng(generator)
    raise TypeError(f"generator must be a numpy Generator, an int seed or None; got {type(generator).__name__}")


def _check(n: int, res: int, alpha: float, tau: float) -> None:
    if int(n) < 1 or int(res) < 2:
        raise ValueError(f"need n >= 1 samples and res >= 2; got n={n}, res={res}")
    if not (alpha > 0 and tau > 0):
        raise ValueError(f"alpha and tau must be positive; got alpha={alpha}, tau={tau}")


def grf_neumann(n: int, res: int, alpha: float = 2.0, tau: float = 3.0, generator=None) -> np.ndarray:
    """``n`` fields on a ``res x res`` node grid of ``[0, 1]^2`` (cosine basis), shape ``(n, res, res)``."""
    _check(n, res, alpha, tau)
    k = np.arange(res)
    k2 = k[:, None] ** 2 + k[None, :] ** 2
    coef = tau ** (alpha - 1) * (np.pi**2 * k2 + tau**2) ** (-alpha / 2)
    coef[0, 0] = 0.0
    xi = _rng(generator).standard_normal((n, res, res))
    # Orthonormal inverse DCT: the factor res makes the amplitude independent of the resolution.
    return sfft.idctn(res * coef * xi, type=2, axes=(-2, -1), norm="ortho")


def grf_periodic(
    n: int, res: int, alpha: float = 2.5, tau: float = 7.0, sigma: float | None = None, *, dim: int = 2, generator=None
) -> np.ndarray:
    """``n`` periodic fields on ``[0, 1)^dim`` with ``res`` points per axis, shape ``(n, *(res,) * dim)``."""
    _check(n, res, alpha, tau)
    if dim not in (1, 2):
        raise ValueError(f"dim must be 1 or 2, got {dim}")
    sigma = tau ** (alpha - 1) if sigma is None else sigma
    k = np.fft.fftfreq(res, d=1.0 / res)
    k2 = sum(np.meshgrid(*([k**2] * dim), indexing="ij"))
    sqrt_eig = np.sqrt(2.0) * sigma * (4 * np.pi**2 * k2 + tau**2) ** (-alpha / 2)
    sqrt_eig[(0,) * dim] = 0.0
    rng = _rng(generator)
    shape = (n, *(res,) * dim)
    xi = rng.standard_normal(shape) + 1j * rng.standard_normal(shape)
    # ifft's 1/res^dim cancels the res^dim factor: the amplitude does not depend on the resolution.
    axes = tuple(range(-dim, 0))
    return np.real(np.fft.ifftn(res**dim * sqrt_eig * xi, axes=axes))


def threshold(g: np.ndarray, high: float = 12.0, low: float = 3.0) -> np.ndarray:
    """The Darcy coefficient of DiffusionPDE/FNO: ``high`` where ``g >= 0``, ``low`` elsewhere."""
    return np.where(g >= 0, high, low)
