"""The exact posterior of the Darcy coefficient given its values at sparse nodes, under the data's own law.

The Darcy coefficient of :func:`scidiff.pde.datasets.make_dataset` is ``a = a_high`` where ``g >= 0`` and ``a_low``
elsewhere, with ``g`` the Gaussian field of :func:`scidiff.pde.grf.grf_neumann`: ``g = L xi``, ``xi`` i.i.d.
standard normal and ``L`` the orthonormal inverse DCT after a diagonal scaling, so ``Cov(g) = C = L L^T`` is known.
Observing ``a`` at the nodes ``O`` fixes the signs of ``g_O`` and nothing else, so the posterior of ``g`` is

* ``g_O ~ N(0, C_OO)`` truncated to the observed orthant, drawn by Gibbs sampling one coordinate at a time from
  its one-dimensional truncated normal conditional (Geweke 1991, "Efficient simulation from the multivariate normal
  and Student-t distributions subject to linear constraints"; Robert 1995, Statistics and Computing 5);
* the rest given ``g_O``: Gaussian, drawn with Matheron's rule ``g = f + C_{.O} C_OO^{-1} (g_O - f_O)`` for a fresh
  prior draw ``f`` (Journel & Huijbregts 1978, "Mining Geostatistics"; Wilson et al. 2020, ICML, "Efficiently
  sampling functions from Gaussian process posteriors").

Pushed through the reference solver, these samples give the best any prior can do on the forward problem (a in
sparse points -> u): the mean of the solver over them estimates ``E[u | observed a]``, the minimiser of the expected
squared error. ``benchmarks/pde.py`` prints it as the floor of the Darcy forward rows.
"""

from __future__ import annotations

import numpy as np
import scipy.fft as sfft
from scipy.special import log_ndtr, ndtri_exp

from .grf import _rng, grf_neumann


def _spectrum(res: int, alpha: float, tau: float) -> np.ndarray:
    """The diagonal of ``L`` in the cosine basis (the scaling of :func:`grf_neumann`)."""
    k = np.arange(res)
    coef = tau ** (alpha - 1) * (np.pi**2 * (k[:, None] ** 2 + k[None, :] ** 2) + tau**2) ** (-alpha / 2)
    coef[0, 0] = 0.0
    return res * coef


def grf_covariance_apply(v: np.ndarray, res: int, alpha: float = 2.0, tau: float = 3.0) -> np.ndarray:
    """``C v`` for fields ``v`` ``(..., res, res)`` of :func:`grf_neumann`'s covariance ``C = L L^T``: ``L^T`` is
    the orthonormal DCT followed by the scaling, ``L`` the scaling followed by the orthonormal inverse DCT."""
    scale2 = _spectrum(res, alpha, tau) ** 2
    return sfft.idctn(scale2 * sfft.dctn(v, type=2, axes=(-2, -1), norm="ortho"), type=2, axes=(-2, -1), norm="ortho")


def grf_covariance_columns(nodes: np.ndarray, res: int, alpha: float = 2.0, tau: float = 3.0) -> np.ndarray:
    """``C[:, nodes]`` of :func:`grf_neumann`'s field, shape ``(res * res, len(nodes))``; ``nodes`` are flat indices."""
    unit = np.zeros((len(nodes), res * res))
    unit[np.arange(len(nodes)), nodes] = 1.0
    cols = grf_covariance_apply(unit.reshape(-1, res, res), res, alpha, tau)
    return cols.reshape(len(nodes), -1).T


def linear_posterior_mean(
    pde: str, values: np.ndarray, mask: np.ndarray, observed: str, *, k: float = 1.0, alpha: float = 2.0,
    tau: float = 3.0,
) -> tuple[np.ndarray, np.ndarray]:
    """The exact posterior mean ``(E[a | y], E[u | y])`` of Poisson or Helmholtz pairs under the data's own law,
    given the field ``observed`` (``"a"`` or ``"u"``) at the nodes of ``mask`` (``values``: the full field, of which
    only the masked nodes are read).

    The source ``a`` of :func:`scidiff.pde.datasets.make_dataset` is :func:`grf_neumann`'s zero-mean field with
    covariance ``C``, and ``u = S a`` with ``S`` the linear solve (``lap_h + k^2 I`` on the interior, 0 on the
    boundary; ``k = 0`` for Poisson). So ``(a, u)`` is jointly Gaussian and the observations ``y = P a`` or
    ``y = P S a`` are linear: ``E[a | y] = C G^T (G C G^T)^+ y`` with ``G = P`` or ``P S`` (Gaussian conditioning,
    e.g. Rasmussen & Williams 2006, eq. A.6), and ``E[u | y] = S E[a | y]``. It minimises the expected squared
    error of either field: the floor of the benchmark's Poisson and Helmholtz rows. Noise-free observations; the
    pseudo-inverse covers observed boundary values of u (always 0: they carry no information).
    """
    from .elliptic import solve_helmholtz, solve_poisson

    if pde not in ("poisson", "helmholtz") or observed not in ("a", "u"):
        raise ValueError(f"need pde poisson or helmholtz and observed a or u; got {pde!r}, {observed!r}")
    values, mask = np.asarray(values, dtype=np.float64), np.asarray(mask, dtype=bool)
    if values.ndim != 2 or values.shape[0] != values.shape[1] or mask.shape != values.shape:
        raise ValueError(f"need a square field and a mask of its shape; got {values.shape} and {mask.shape}")
    if not mask.any():
        raise ValueError("the mask observes no node, so there is nothing to condition on")
    if not np.isfinite(values[mask]).all():
        raise ValueError("the observed values contain NaN or inf")
    res, nodes = values.shape[0], np.flatnonzero(mask)
    solve = solve_poisson if pde == "poisson" else (lambda f: solve_helmholtz(f, k))
    unit = np.zeros((len(nodes), res * res))
    unit[np.arange(len(nodes)), nodes] = 1.0
    g_t = unit.reshape(-1, res, res)  # rows of G as fields: P^T, or S^T P^T = S P^T (S is symmetric)
    if observed == "u":
        g_t = solve(g_t)
    c_g = grf_covariance_apply(g_t, res, alpha, tau).reshape(len(nodes), -1)  # rows of (C G^T)^T
    gram = c_g @ g_t.reshape(len(nodes), -1).T  # G C G^T
    a_mean = (np.linalg.pinv(gram, hermitian=True, rcond=1e-12) @ values[mask]) @ c_g
    a_mean = a_mean.reshape(res, res)
    return a_mean, solve(a_mean)


def _truncated_normal(mean: np.ndarray, std: np.ndarray, positive: np.ndarray, rng) -> np.ndarray:
    """Draws of ``N(mean, std^2)`` truncated to ``[0, inf)`` where ``positive`` and to ``(-inf, 0)`` elsewhere.

    By inversion in log space: for the side ``x >= 0``, ``z = (x - mean) / std >= -b`` with ``b = mean / std`` and
    ``-z = Phi^-1(U Phi(b))``, computed from ``log U + log Phi(b)`` so that a far tail (``Phi(b)`` below 1e-300)
    still gives a finite draw."""
    sign = np.where(positive, 1.0, -1.0)
    b = sign * mean / std
    log_p = np.log(rng.uniform(size=mean.shape).clip(1e-300)) + log_ndtr(b)
    z = -ndtri_exp(np.minimum(log_p, -1e-300))
    return sign * (sign * mean + std * z)


def _jittered(cov: np.ndarray) -> np.ndarray:
    """``cov`` plus a relative 1e-10 of its mean variance on the diagonal: nodes next to each other make ``C_OO``
    nearly singular, and the precision and the kriging solve both need it finite."""
    return cov + 1e-10 * np.trace(cov) / len(cov) * np.eye(len(cov))


def gibbs_orthant(cov: np.ndarray, positive: np.ndarray, n: int, sweeps: int, rng) -> np.ndarray:
    """``n`` independent chains of ``N(0, cov)`` truncated to the orthant ``sign(g) = positive``, each run for
    ``sweeps`` Gibbs sweeps from a point inside the orthant; returns the last states, shape ``(n, m)``."""
    m = cov.shape[0]
    q = np.linalg.inv(_jittered(cov))  # the precision
    cond_std = 1.0 / np.sqrt(np.diag(q))
    g = np.where(positive, 1.0, -1.0) * 0.1 * np.sqrt(np.diag(cov))[None, :] * np.ones((n, 1))
    for _ in range(sweeps):
        for i in range(m):
            # E[g_i | g_-i] = g_i - (Q g)_i / Q_ii, Var = 1 / Q_ii
            mean = g[:, i] - (g @ q[:, i]) / q[i, i]
            g[:, i] = _truncated_normal(mean, np.full(n, cond_std[i]), np.full(n, bool(positive[i])), rng)
    return g


def darcy_coefficient_posterior(
    a_observed: np.ndarray,
    mask: np.ndarray,
    n: int,
    *,
    alpha: float = 2.0,
    tau: float = 3.0,
    a_high: float = 12.0,
    a_low: float = 3.0,
    sweeps: int = 300,
    generator=None,
) -> np.ndarray:
    """``n`` exact posterior draws of the Darcy coefficient ``(n, res, res)`` given its values where ``mask``.

    ``a_observed`` is a full ``(res, res)`` field of which only the masked nodes are read (each must be ``a_high``
    or ``a_low``); the law is that of ``make_dataset("darcy", alpha=..., tau=..., a_high=..., a_low=...)``. Each draw
    is the last state of its own Gibbs chain (``sweeps`` sweeps), so draws are independent of each other."""
    a_observed, mask = np.asarray(a_observed, dtype=np.float64), np.asarray(mask, dtype=bool)
    if a_observed.ndim != 2 or a_observed.shape[0] != a_observed.shape[1] or mask.shape != a_observed.shape:
        raise ValueError(f"need a square field and a mask of its shape; got {a_observed.shape} and {mask.shape}")
    if not mask.any():
        raise ValueError("the mask observes no node, so there is nothing to condition on")
    values = a_observed[mask]
    if not np.all(np.isin(values, (a_high, a_low))):
        raise ValueError(f"observed coefficients must be a_high={a_high} or a_low={a_low}; got {np.unique(values)[:5]}")
    if int(n) < 1 or int(sweeps) < 1:
        raise ValueError(f"need n >= 1 and sweeps >= 1; got n={n}, sweeps={sweeps}")
    rng = _rng(generator)
    res = a_observed.shape[0]
    nodes = np.flatnonzero(mask)
    c_cols = grf_covariance_columns(nodes, res, alpha, tau)  # C[:, O]
    c_oo = c_cols[nodes]
    g_o = gibbs_orthant(c_oo, values == a_high, int(n), int(sweeps), rng)
    f = grf_neumann(int(n), res, alpha, tau, generator=rng).reshape(int(n), -1)
    weights = np.linalg.solve(_jittered(c_oo), (g_o - f[:, nodes]).T)
    g = f + (c_cols @ weights).T
    g[:, nodes] = g_o  # the observed signs hold exactly (the solve reproduces them up to the jitter)
    return np.where(g >= 0, a_high, a_low).reshape(int(n), res, res)
