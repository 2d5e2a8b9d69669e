"""Reference solvers: order of convergence on exact/manufactured solutions, residuals at discretisation
level, conservation laws of Navier--Stokes, and clear errors."""

import math

import numpy as np
import pytest
import torch

from scidiff.pde import (
    burgers_residual,
    darcy_residual,
    enstrophy_and_energy,
    grf_neumann,
    grf_periodic,
    helmholtz_residual,
    ns_residual,
    poisson_residual,
    solve_burgers,
    solve_darcy,
    solve_helmholtz,
    solve_navier_stokes,
    solve_poisson,
    threshold,
)

T = lambda x: torch.as_tensor(np.asarray(x), dtype=torch.float64)  # noqa: E731


def _orders(errors):
    return [math.log2(e0 / e1) for e0, e1 in zip(errors[:-1], errors[1:])]


def _grid(n):
    x = np.linspace(0, 1, n)
    return np.meshgrid(x, x)  # X varies along axis -1, Y along axis -2


# --- manufactured solutions ------------------------------------------------------------------------
def _darcy_manufactured(n):
    """u = sin(pi x) sin(pi y) e^x, a = 2 + sin(2x + y); f = -div(a grad u) computed by hand."""
    X, Y = _grid(n)
    s, c = np.sin, np.cos
    u = s(np.pi * X) * s(np.pi * Y) * np.exp(X)
    ux = (np.pi * c(np.pi * X) + s(np.pi * X)) * s(np.pi * Y) * np.exp(X)
    uy = np.pi * s(np.pi * X) * c(np.pi * Y) * np.exp(X)
    uxx = (2 * np.pi * c(np.pi * X) + (1 - np.pi**2) * s(np.pi * X)) * s(np.pi * Y) * np.exp(X)
    uyy = -(np.pi**2) * u
    a = 2 + s(2 * X + Y)
    ax, ay = 2 * c(2 * X + Y), c(2 * X + Y)
    f = -(ax * ux + ay * uy + a * (uxx + uyy))
    return a, f, u


def test_darcy_converges_second_order():
    errs = []
    for n in (17, 33, 65):
        a, f, u = _darcy_manufactured(n)
        errs.append(np.abs(solve_darcy(a, f) - u).max())
    assert all(1.8 < p < 2.3 for p in _orders(errs)), errs


@pytest.mark.parametrize("k", [0.0, 1.0, 3.0])
def test_poisson_helmholtz_converge_second_order(k):
    errs = []
    for n in (17, 33, 65):
        X, Y = _grid(n)
        u = np.sin(np.pi * X) * np.sin(2 * np.pi * Y) * np.exp(Y)
        lap = (
            ((1 - 5 * np.pi**2) * np.sin(2 * np.pi * Y) + 4 * np.pi * np.cos(2 * np.pi * Y))
            * np.sin(np.pi * X)
            * np.exp(Y)
        )
        a = lap + k**2 * u
        sol = solve_poisson(a) if k == 0 else solve_helmholtz(a, k=k)
        errs.append(np.abs(sol - u).max())
    assert all(1.8 < p < 2.3 for p in _orders(errs)), errs


def test_residuals_are_consistent_with_the_continuous_operators():
    """Residual of the exact (manufactured) solution: O(h^2), i.e. the 1/h factors are right."""
    res = []
    for n in (33, 65):
        a, f, u = _darcy_manufactured(n)
        res.append(darcy_residual(T(a)[None], T(u)[None], T(f)[None]).abs().max().item())
    assert res[1] < 0.3 * res[0] and res[0] < 0.5, res


def test_reference_solutions_have_round_off_residuals():
    a = threshold(grf_neumann(3, 33, generator=0))
    u = solve_darcy(a)
    assert darcy_residual(T(a), T(u)).abs().max() < 1e-8
    assert 0.005 < u.max() < 0.03  # the scale of the FNO/DiffusionPDE Darcy data (max u ~ 0.013)
    # DiffusionPDE's unit-spacing residual of the same solution is O(1): the bug this module avoids.
    assert darcy_residual(T(a), T(u) / 32**2).abs().mean() > 0.5
    s = grf_neumann(3, 33, generator=1)
    assert poisson_residual(T(s), T(solve_poisson(s))).abs().max() < 1e-9
    assert helmholtz_residual(T(s), T(solve_helmholtz(s, 2.0)), k=2.0).abs().max() < 1e-9


def test_residuals_are_differentiable_and_batched():
    a = T(threshold(grf_neumann(2, 17, generator=0))).requires_grad_(True)
    u = T(solve_darcy(a.detach().numpy())).requires_grad_(True)
    r = darcy_residual(a, u)
    assert r.shape == (2, 15, 15)
    ga, gu = torch.autograd.grad(r.pow(2).sum(), (a, u))
    assert torch.isfinite(ga).all() and torch.isfinite(gu).all()
    single = darcy_residual(a[:1], u[:1])
    assert torch.allclose(single, r[:1])


# --- Navier--Stokes --------------------------------------------------------------------------------
def test_ns_single_mode_decays_exactly():
    """sin(2 pi x) sin(4 pi y) is a steady Euler flow (w is a function of psi): pure viscous decay."""
    x = np.arange(32) / 32
    X, Y = np.meshgrid(x, x)
    w0 = np.sin(2 * np.pi * X) * np.sin(4 * np.pi * Y)
    nu = 1e-2
    w = solve_navier_stokes(w0, t_final=1.0, n_snapshots=2, dt=1e-2, nu=nu, forcing=None)
    exact = w0 * math.exp(-nu * 4 * math.pi**2 * 5 * 1.0)
    assert np.abs(w[-1] - exact).max() < 1e-4


def test_ns_second_order_in_time_and_mean_vorticity_conserved():
    w0 = grf_periodic(2, 32, generator=0)
    ref = solve_navier_stokes(w0, 0.5, 1, dt=1 / 1600)[:, -1]
    errs = [np.abs(solve_navier_stokes(w0, 0.5, 1, dt=dt)[:, -1] - ref).max() for dt in (1 / 50, 1 / 100, 1 / 200)]
    assert all(1.7 < p < 2.4 for p in _orders(errs)), errs
    w = solve_navier_stokes(w0, 1.0, 5, dt=1e-2)
    assert np.abs(w.mean((-2, -1)) - w0.mean((-2, -1))[:, None]).max() < 1e-12


def test_ns_energy_and_enstrophy_decay_without_forcing():
    w = solve_navier_stokes(grf_periodic(2, 32, generator=3), 1.0, 10, dt=1e-2, forcing=None)
    enstrophy, energy = enstrophy_and_energy(w)
    assert (np.diff(energy, axis=1) < 0).all() and (np.diff(enstrophy, axis=1) < 0).all()
    # Energy decays at the viscous rate: dE/dt = -2 nu Z, with Z the enstrophy <w^2>/2.
    dedt = np.diff(energy, axis=1) / 0.1
    z_mid = 0.5 * (enstrophy[:, 1:] + enstrophy[:, :-1])
    assert np.allclose(dedt, -2e-3 * z_mid, rtol=2e-2)


def test_ns_residual_is_navier_stokes_and_second_order():
    w0 = grf_periodic(1, 32, generator=1)
    res = []
    for k in (1, 2, 4):
        w = solve_navier_stokes(w0, 0.1, 5 * k, dt=0.02 / k / 4)
        res.append(ns_residual(T(w), 0.02 / k).abs().mean().item())
    assert all(1.8 < p < 2.3 for p in _orders(res)), res
    # Wrong physics is caught: the trajectory does not satisfy NS with another viscosity or no forcing.
    w = T(solve_navier_stokes(w0, 0.1, 10, dt=0.0025))
    good = ns_residual(w, 0.01).abs().mean()
    assert ns_residual(w, 0.01, forcing=None).abs().mean() > 50 * good
    assert ns_residual(w, 0.01, nu=0.05).abs().mean() > 50 * good


# --- Burgers ---------------------------------------------------------------------------------------
def _cole_hopf(x, t, nu, a0=1.5, a1=1.0):
    """Exact periodic Burgers solution u = -2 nu phi_x / phi, phi = a0 + a1 e^{-4 pi^2 nu t} cos(2 pi x)."""
    e = a1 * np.exp(-4 * np.pi**2 * nu * t)
    return 4 * np.pi * nu * e * np.sin(2 * np.pi * x) / (a0 + e * np.cos(2 * np.pi * x))


def test_burgers_exact_solution_spectral_space_fourth_order_time():
    nu = 0.02
    errs = []
    for dt in (0.25, 0.125, 0.0625):
        x = np.arange(64) / 64
        u = solve_burgers(_cole_hopf(x, 0, nu), nu=nu, n_times=2, refine=1, dt=dt)
        errs.append(np.abs(u[-1] - _cole_hopf(x, 1.0, nu)).max())
    assert all(3.5 < p < 4.5 for p in _orders(errs)), errs
    x = np.arange(32) / 32
    u = solve_burgers(_cole_hopf(x, 0, nu), nu=nu, n_times=5, refine=1, dt=1e-2)
    assert np.abs(u[-1] - _cole_hopf(x, 1.0, nu)).max() < 1e-6
    assert np.abs(u[2] - _cole_hopf(x, 0.5, nu)).max() < 1e-6


def test_burgers_residual_second_order_and_grf_data():
    nu = 0.02
    res = []
    for n in (64, 128, 256):
        x, t = np.arange(n) / n, np.linspace(0, 1, n)[:, None]
        res.append(burgers_residual(T(_cole_hopf(x, t, nu))[None], nu=nu).abs().max().item())
    assert all(1.8 < p < 2.3 for p in _orders(res)), res
    u0 = grf_periodic(4, 64, 2.5, 7.0, 49.0, dim=1, generator=0)
    u = solve_burgers(u0)
    assert u.shape == (4, 64, 64) and np.isfinite(u).all()
    # Viscous Burgers: max |u| does not grow, the mean is conserved (exactly on the solver's own grid).
    assert (np.abs(u).max(-1) <= np.abs(u0).max(-1)[:, None] + 1e-8).all()
    u1 = solve_burgers(u0, refine=1)
    assert np.allclose(u1.mean(-1), u0.mean(-1)[:, None], atol=1e-12)


# --- GRFs ------------------------------------------------------------------------------------------
def test_grf_reproducible_zero_mean_and_resolution_independent_amplitude():
    a = grf_neumann(4, 32, generator=5)
    assert np.array_equal(a, grf_neumann(4, 32, generator=np.random.default_rng(5)))
    assert not np.array_equal(a, grf_neumann(4, 32, generator=6))
    stds = [grf_periodic(200, n, generator=0).std() for n in (32, 64)]
    assert abs(stds[0] / stds[1] - 1) < 0.05
    assert abs(grf_periodic(50, 32, generator=0).mean((-2, -1))).max() < 1e-12
    assert set(np.unique(threshold(a))) == {3.0, 12.0}


# --- errors ----------------------------------------------------------------------------------------
def test_bad_input_raises():
    a = threshold(grf_neumann(1, 9, generator=0))[0]
    with pytest.raises(ValueError, match="positive"):
        solve_darcy(-a)
    with pytest.raises(ValueError, match="non-finite"):
        solve_darcy(np.where(a > 5, np.nan, a))
    with pytest.raises(ValueError, match="dims"):
        solve_poisson(np.zeros((1, 1, 9, 9)))
    with pytest.raises(ValueError, match="square"):
        solve_poisson(np.zeros((9, 8)))
    with pytest.raises(ValueError, match="same shape"):
        poisson_residual(torch.zeros(1, 9, 9), torch.zeros(1, 8, 8))
    with pytest.raises(ValueError, match="dims"):
        darcy_residual(torch.zeros(9, 9), torch.zeros(9, 9))
    with pytest.raises(ValueError, match="non-finite"):
        helmholtz_residual(torch.full((1, 9, 9), float("nan")), torch.zeros(1, 9, 9))
    with pytest.raises(TypeError):
        poisson_residual(np.zeros((1, 9, 9)), torch.zeros(1, 9, 9))
    with pytest.raises(ValueError, match="2 snapshots"):
        ns_residual(torch.zeros(1, 1, 8, 8), 0.1)
    with pytest.raises(ValueError, match="divide"):
        solve_navier_stokes(np.zeros((8, 8)), 1.0, 10, dt=0.03)
    with pytest.raises(ValueError, match="forcing"):
        solve_navier_stokes(np.zeros((8, 8)), 1.0, 10, dt=0.1, forcing="kolmogorov")
    with pytest.raises(ValueError, match="positive"):
        solve_burgers(np.zeros(16), nu=0.0)
    with pytest.raises(ValueError, match="alpha"):
        grf_neumann(2, 16, alpha=-1)
    with pytest.raises(TypeError, match="generator"):
        grf_periodic(2, 16, generator="seed")
