"""2D incompressible Navier--Stokes in vorticity form on the torus ``[0, 1)^2``.

    dw/dt + v . grad w = nu lap w + f,    v = (d psi/dy, -d psi/dx),    -lap psi = w

with DiffusionPDE's (and FNO's) setting: ``nu = 1e-3``, ``f = 0.1 (sin 2 pi (x + y) + cos 2 pi (x + y))``,
``w0`` a periodic Gaussian random field (alpha = 2.5, tau = 7). Grid: ``n x n`` points ``i / n``; axis ``-2``
is ``y``, axis ``-1`` is ``x``.

Solver: pseudo-spectral (``rfft2``), 2/3-rule dealiasing of the advection term, Crank--Nicolson on the
viscous term and a Heun predictor--corrector on advection and forcing (second order in time), vectorised
over the batch.

Residual: the *Navier--Stokes* residual of a trajectory ``w(t_0), w(t_1), ...`` with snapshot spacing
``dt`` -- the trapezoidal (Crank--Nicolson) form of the equation between consecutive snapshots, with spectral
space derivatives. It needs at least two snapshots. (The reference DiffusionPDE code uses ``dw/dx + dw/dy`` of
the final vorticity as its "NS residual", which is not the Navier--Stokes equation.)
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from ._checks import batch_np, check_fields, check_square, periodic_coords

NU = 1e-3


def ns_forcing(n: int) -> np.ndarray:
    """DiffusionPDE's forcing ``0.1 (sin 2 pi (x + y) + cos 2 pi (x + y))`` on the ``n x n`` periodic grid."""
    x = periodic_coords(n)
    s = x[None, :] + x[:, None]
    return 0.1 * (np.sin(2 * np.pi * s) + np.cos(2 * np.pi * s))


def _wavenumbers(n: int, xp=np, **kw):
    """Integer wavenumbers for an ``rfft2`` layout: ``ky`` (n, 1) and ``kx`` (1, n // 2 + 1)."""
    ky = xp.fft.fftfreq(n, d=1.0 / n, **kw).reshape(n, 1)
    kx = xp.fft.rfftfreq(n, d=1.0 / n, **kw).reshape(1, n // 2 + 1)
    return ky, kx


def _dealias(ky, kx, n: int):
    """2/3 rule: keep modes with ``|k| < n / 3`` in each direction."""
    return (abs(ky) < n / 3) & (abs(kx) < n / 3)


def _advection_hat(w_hat, ky, kx, lap, mask, xp, irfft2, rfft2):
    """Dealiased spectrum of ``v . grad w`` from the vorticity spectrum ``w_hat``."""
    psi_hat = -w_hat / lap  # -lap psi = w; the mean mode of lap is set to 1 and psi's mean is irrelevant
    two_pi_i = 2j * math.pi
    vx = irfft2(two_pi_i * ky * psi_hat)  # d psi / dy
    vy = -irfft2(two_pi_i * kx * psi_hat)  # -d psi / dx
    wx = irfft2(two_pi_i * kx * w_hat)
    wy = irfft2(two_pi_i * ky * w_hat)
    return mask * rfft2(vx * wx + vy * wy)


def solve_navier_stokes(
    w0,
    t_final: float = 1.0,
    n_snapshots: int = 10,
    dt: float = 1e-3,
    nu: float = NU,
    forcing="diffusionpde",
    *,
    progress: bool = False,
) -> np.ndarray:
    """Integrate vorticity ``w0`` (``(n, n)`` or ``(B, n, n)``) to ``t_final``.

    Returns ``(n_snapshots + 1, n, n)`` or ``(B, n_snapshots + 1, n, n)``: ``w`` at times
    ``t_final * j / n_snapshots``, ``j = 0..n_snapshots`` (the first is ``w0``). ``forcing`` is
    ``"diffusionpde"``, ``None`` (unforced) or an ``(n, n)`` array. ``dt`` must divide the snapshot spacing.
    """
    w0, single = batch_np(w0, "w0", 2)
    n = check_square(w0, "w0", min_size=4)
    if not (nu >= 0 and t_final > 0 and dt > 0 and int(n_snapshots) >= 1):
        raise ValueError(
            f"need nu >= 0, t_final > 0, dt > 0, n_snapshots >= 1; got {nu}, {t_final}, {dt}, {n_snapshots}"
        )
    steps_per = (t_final / n_snapshots) / dt
    if abs(steps_per - round(steps_per)) > 1e-6 * steps_per:
        raise ValueError(f"dt = {dt} must divide the snapshot spacing t_final / n_snapshots = {t_final / n_snapshots}")
    steps_per = int(round(steps_per))
    f = _forcing_array(forcing, n)
    ky, kx = _wavenumbers(n)
    k2 = 4 * math.pi**2 * (ky**2 + kx**2)
    lap = -k2.copy()
    lap[0, 0] = 1.0
    mask = _dealias(ky, kx, n)
    f_hat = np.fft.rfft2(f)
    fwd = lambda x: np.fft.rfft2(x)  # noqa: E731
    inv = lambda x: np.fft.irfft2(x, s=(n, n))  # noqa: E731
    explicit = 1.0 - 0.5 * dt * nu * k2
    implicit = 1.0 + 0.5 * dt * nu * k2

    def rhs(w_hat):
        return f_hat - _advection_hat(w_hat, ky, kx, lap, mask, np, inv, fwd)

    w_hat = fwd(w0)
    out = np.empty((w0.shape[0], n_snapshots + 1, n, n))
    out[:, 0] = w0
    for j in tqdm(range(n_snapshots), disable=not progress, desc="navier-stokes", leave=False):
        for _ in range(steps_per):
            r0 = rhs(w_hat)
            w_star = (explicit * w_hat + dt * r0) / implicit
            w_hat = (explicit * w_hat + 0.5 * dt * (r0 + rhs(w_star))) / implicit
        out[:, j + 1] = inv(w_hat)
    return out[0] if single else out


def _forcing_array(forcing, n: int) -> np.ndarray:
    if forcing is None:
        return np.zeros((n, n))
    if isinstance(forcing, str):
        if forcing != "diffusionpde":
            raise ValueError(f"unknown forcing {forcing!r}; use 'diffusionpde', None or an (n, n) array")
        return ns_forcing(n)
    f = np.asarray(forcing, dtype=np.float64)
    if f.shape != (n, n) or not np.isfinite(f).all():
        raise ValueError(f"forcing must be a finite ({n}, {n}) array; got shape {f.shape}")
    return f


def ns_residual(w: Tensor, dt: float, nu: float = NU, forcing="diffusionpde") -> Tensor:
    """Navier--Stokes residual of a vorticity trajectory ``w`` ``(B, T, n, n)`` with snapshot spacing ``dt``.

    ``(w_{j+1} - w_j) / dt + (A(w_j) + A(w_{j+1})) / 2 - nu lap (w_j + w_{j+1}) / 2 - f``, with ``A`` the
    dealiased advection ``v . grad w``; shape ``(B, T - 1, n, n)``. Second order in ``dt``; differentiable.
    """
    check_fields({"w": w}, 4)
    if w.shape[1] < 2:
        raise ValueError(f"the Navier-Stokes residual needs at least 2 snapshots; got w of shape {tuple(w.shape)}")
    if not dt > 0:
        raise ValueError(f"dt must be positive, got {dt}")
    n = check_square(w, "w", min_size=4)
    kw = {"device": w.device, "dtype": w.dtype}
    ky, kx = _wavenumbers(n, torch, **kw)
    k2 = 4 * math.pi**2 * (ky**2 + kx**2)
    lap = -k2.clone()
    lap[0, 0] = 1.0
    mask = _dealias(ky, kx, n).to(w.dtype)
    f = torch.as_tensor(_forcing_array(forcing, n), **kw)
    w_hat = torch.fft.rfft2(w)
    inv = lambda x: torch.fft.irfft2(x, s=(n, n))  # noqa: E731
    adv = inv(_advection_hat(w_hat, ky, kx, lap, mask, torch, inv, torch.fft.rfft2))
    visc = inv(-k2 * w_hat) * nu
    mid = lambda x: 0.5 * (x[:, 1:] + x[:, :-1])  # noqa: E731
    return (w[:, 1:] - w[:, :-1]) / dt + mid(adv) - mid(visc) - f


def enstrophy_and_energy(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean enstrophy ``<w^2>/2`` and kinetic energy ``<|v|^2>/2`` over the torus, for ``w`` ``(..., n, n)``."""
    n = w.shape[-1]
    ky, kx = _wavenumbers(n)
    k2 = 4 * math.pi**2 * (ky**2 + kx**2)
    k2[0, 0] = np.inf
    w_hat = np.fft.fft2(w) / n**2
    kyf = np.fft.fftfreq(n, d=1.0 / n)
    k2f = 4 * math.pi**2 * (kyf[:, None] ** 2 + kyf[None, :] ** 2)
    k2f[0, 0] = np.inf
    # Parseval: <|v|^2> = sum |w_hat|^2 / |2 pi k|^2 (v has no mean mode as psi is periodic)
    energy = 0.5 * (np.abs(w_hat) ** 2 / k2f).sum((-2, -1))
    return 0.5 * (w**2).mean((-2, -1)), energy
