"""The preconditioned PDE residual norms (``PDEResidual(norm="h-1" | "h-2")``): the sine-basis operator powers
against the five-point Laplacian, the conditioning they promise (known exactly for Poisson), and their effect in
the guided sampler on the Gaussian Poisson prior of ``tests/conftest.py``."""

import numpy as np
import pytest
import torch

from scidiff.diffusion import karras_sigmas
from scidiff.pde import solve_poisson
from scidiff.pde.diffusionpde import (
    PDE_NORMS,
    ChannelAffine,
    PDEResidual,
    PreconditionedPDEStep,
    diffusionpde_likelihood,
    joint_residual,
    sample_diffusionpde,
)
from scidiff.pde.elliptic import _laplacian, laplacian_power


def _interior_field(n, batch=2, seed=0):
    v = torch.zeros(batch, n, n, dtype=torch.float64)
    v[:, 1:-1, 1:-1] = torch.randn(batch, n - 2, n - 2, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    return v


def test_laplacian_power_inverts_the_five_point_laplacian():
    v = _interior_field(9)
    inner = v[:, 1:-1, 1:-1]
    assert torch.allclose(laplacian_power(-_laplacian(v), -1.0), inner, atol=1e-12)
    assert torch.allclose(laplacian_power(inner, 1.0), -_laplacian(v), atol=1e-9)
    half = laplacian_power(laplacian_power(inner, -0.5), -0.5)
    assert torch.allclose(half, laplacian_power(inner, -1.0), atol=1e-14)
    assert torch.allclose(laplacian_power(inner, 0.0), inner, atol=1e-14)
    with pytest.raises(ValueError, match="square grid"):
        laplacian_power(torch.zeros(1, 3, 4), -1.0)


@pytest.mark.parametrize("norm, power", [("l2", 2), ("h-1", 1), ("h-2", 0)])
def test_gauss_newton_conditioning_in_u(norm, power):
    """For Poisson the residual is linear in u with Jacobian lap_h (interior unknowns); after P = (-lap_h)^s the
    Gauss-Newton matrix J^T P^2 J = (-lap_h)^(2 + 2s) has condition number cond(-lap_h)^(2 + 2s)."""
    n = 8
    m = n - 2
    pde = PDEResidual(joint_residual("poisson"), norm=norm)
    def pr(u_inner):  # P R(a = 0, u) on the interior unknowns
        u = torch.nn.functional.pad(u_inner.reshape(1, m, m), (1, 1, 1, 1))
        r = joint_residual("poisson")(torch.stack([torch.zeros_like(u), u], 1))
        return laplacian_power(r, PDE_NORMS[norm]).flatten()  # the operator the energy applies

    jac = torch.autograd.functional.jacobian(pr, torch.zeros(m * m, dtype=torch.float64))
    eig = torch.linalg.eigvalsh(jac.T @ jac)
    k = 2 * np.pi * np.arange(1, m + 1) / (2 * (m + 1))
    lam = (2 - 2 * np.cos(k)) * (m + 1) ** 2  # 1D Dirichlet eigenvalues
    cond_lap = (2 * lam.max()) / (2 * lam.min())
    assert float(eig.max() / eig.min()) == pytest.approx(cond_lap**power, rel=1e-6)
    assert pde.norm == norm


def test_h2_gradient_points_at_the_poisson_solution():
    """With the H^-2 norm, P R = u* - u for Poisson, so one step of length ||u - u*|| along the (un-squared)
    energy's gradient lands on the discrete solution u* of the sampled source."""
    n = 12
    a = torch.randn(1, n, n, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    u_star = torch.as_tensor(solve_poisson(a[0].numpy()))
    u = _interior_field(n, batch=1).requires_grad_(True)
    pde = PDEResidual(joint_residual("poisson"), norm="h-2")
    energy = pde.energy(torch.stack([a, u], 1))
    (g,) = torch.autograd.grad(energy.sum(), u)
    count = (n - 2) ** 2  # energy = ||u - u*|| / count, gradient = (u - u*) / (||u - u*|| count)
    step = u - g * energy * count**2
    assert torch.allclose(step[0, 1:-1, 1:-1], u_star[1:-1, 1:-1], atol=1e-10)
    assert energy.item() == pytest.approx((u - u_star)[0, 1:-1, 1:-1].norm().item() / count, rel=1e-10)


def _joint(a, u):
    return torch.stack([torch.as_tensor(a), torch.as_tensor(u)], 1)


def test_preconditioned_step_is_newton_for_poisson():
    """For Poisson M = A, so with u = 0 on the boundary the step's gradient is (u - u*) / std_u (the Newton step);
    on the boundary nodes it is u / std_u (the Dirichlet data)."""
    n = 9
    aff = ChannelAffine([2.0, 50.0], [0.1, -0.3])  # std_u = 1 / 50
    a = torch.randn(2, n, n, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    u = _interior_field(n, seed=2)
    step = PreconditionedPDEStep("poisson", aff)
    x = aff.to_normalised(_joint(a, u)).requires_grad_(True)
    energy = step.energy(x)
    (g,) = torch.autograd.grad(energy.sum(), x)
    want = (u - torch.as_tensor(solve_poisson(a.numpy()))) * 50.0
    assert torch.allclose(g[:, 1], want, atol=1e-9)
    assert torch.equal(g[:, 0], torch.zeros_like(g[:, 0]))  # a is left to the prior and the observations
    assert torch.allclose(energy, 0.5 * want.flatten(1).pow(2).sum(1))
    u_edge = u + 1.0  # non-zero boundary values are pulled to the Dirichlet data
    x = aff.to_normalised(_joint(a, u_edge)).requires_grad_(True)
    (g,) = torch.autograd.grad(step.energy(x).sum(), x)
    assert torch.allclose(g[:, 1, 0], u_edge[:, 0] * 50.0) and torch.allclose(g[:, 1, :, -1], u_edge[:, :, -1] * 50.0)


def test_preconditioned_richardson_converges_on_darcy_where_the_plain_gradient_stalls():
    """Iterating u <- u - zeta d from u = 0 (no prior) converges to the Darcy solution for a in {3, 12} at the rate
    of the spectral bound: |1 - zeta lambda| with lambda in [3, 12] / a_ref. Plain gradient descent on the squared
    L2 residual, at its largest stable step (2 / lambda_max of A^T A), barely moves the smooth modes."""
    from scidiff.pde import make_dataset, solve_darcy
    from scidiff.pde.elliptic import _darcy_matrix

    n = 16
    a = make_dataset("darcy", 1, n, seed=3, workers=1, progress=False).a.values.astype(np.float64)
    u_true = solve_darcy(a)[0]
    aff = ChannelAffine([1.0, 1.0], [0.0, 0.0])
    step, zeta, iters = PreconditionedPDEStep("darcy", aff, a_ref=7.5), 0.75, 30
    x = _joint(a, np.zeros_like(a))
    for _ in range(iters):
        x = x.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(step.energy(x).sum(), x)
        x = x - zeta * g
    err_pc = np.linalg.norm(x[0, 1].detach().numpy() - u_true) / np.linalg.norm(u_true)
    rate = max(abs(1 - zeta * 3 / 7.5), abs(1 - zeta * 12 / 7.5))
    assert err_pc < 2 * rate**iters, (err_pc, rate**iters)
    assert err_pc < 1e-3
    # The paper's residual (squared here, the gentlest case) with the largest stable gradient step.
    A = _darcy_matrix(a[0]).toarray()
    lr = 1.9 / np.linalg.eigvalsh(A.T @ A).max()
    r_fn = joint_residual("darcy")
    x = _joint(a, np.zeros_like(a))
    for _ in range(iters):
        x = x.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(0.5 * r_fn(x).pow(2).sum(), x)
        x = x - lr * g * torch.tensor([0.0, 1.0], dtype=torch.float64).reshape(1, 2, 1, 1)
    err_l2 = np.linalg.norm(x[0, 1].detach().numpy() - u_true) / np.linalg.norm(u_true)
    assert err_l2 > 0.9, err_l2


def test_preconditioned_guidance_makes_u_solve_the_pde_for_the_sampled_a(poisson):
    """Forward problem on the exact Gaussian Poisson prior (a observed at 30 %). The prior's nugget lets its samples
    violate the PDE (~4 % of ||u||); the preconditioned step makes u the solution for the sampled a, which neither
    the paper's residual at its best stable weight nor its H^-1 / H^-2 versions do, and keeps the error of u."""
    prior, aff, truth, mask, obs = poisson
    n = truth.shape[-1]
    sig = karras_sigmas(40)

    def run(pde, zeta):
        lik = diffusionpde_likelihood([(obs, 30.0)], pde, zeta, sig)
        post = sample_diffusionpde(prior, lik, (6, 2, n, n), sig, generator=torch.Generator().manual_seed(0),
                                   progress=False, dtype=torch.float64)
        x = aff.to_physical(post.samples)
        a, u = x[:, 0].numpy(), x[:, 1].numpy()
        gap = np.linalg.norm(u - solve_poisson(a), axis=(1, 2)) / np.linalg.norm(u, axis=(1, 2))
        err = np.linalg.norm(u.mean(0) - truth[0, 1].numpy()) / np.linalg.norm(truth[0, 1].numpy())
        return float(gap.mean()), float(err)

    gap0, err0 = run(None, 0.0)
    gap_pc, err_pc = run(PreconditionedPDEStep("poisson", aff), 0.6)
    # Best weights of a sweep (tests/pde: l2 0.3-30, h-1 10-1000, h-2 100-30000); larger ones raise the gap.
    gap_l2, _ = run(PDEResidual(joint_residual("poisson"), aff.to_physical), 3.0)
    gap_h2, _ = run(PDEResidual(joint_residual("poisson"), aff.to_physical, norm="h-2"), 300.0)
    assert gap_pc < 0.1 * gap0, (gap_pc, gap0)
    assert gap_pc < 0.2 * min(gap_l2, gap_h2), (gap_pc, gap_l2, gap_h2)
    assert err_pc < 1.02 * err0, (err_pc, err0)


def test_bad_norms_raise():
    with pytest.raises(ValueError, match="unknown PDE residual norm 'h1'"):
        PDEResidual(joint_residual("poisson"), norm="h1")
    burgers = PDEResidual(joint_residual("burgers"), norm="h-2")
    with pytest.raises(ValueError, match="h-2 norm needs residuals"):
        burgers.energy(torch.rand(1, 1, 6, 9, dtype=torch.float64))
    aff = ChannelAffine([1.0, 1.0], [0.0, 0.0])
    with pytest.raises(ValueError, match="elliptic joint"):
        PreconditionedPDEStep("burgers", aff)
    with pytest.raises(ValueError, match="a_ref"):
        PreconditionedPDEStep("darcy", aff, a_ref=0.0)
    with pytest.raises(ValueError, match="a_range"):
        PreconditionedPDEStep("darcy", aff, a_range=(12.0, 3.0))
    with pytest.raises(ValueError, match="2 channels"):
        PreconditionedPDEStep("darcy", ChannelAffine([1.0], [0.0]))
