"""The regularised Gauss-Newton step on the coefficient (``CoefficientGNStep``, ``pde_form: coefficient``): the
closed form for Poisson, the dense Levenberg-Marquardt formula and the recovery of a from the true u for Darcy,
and its effect in the guided sampler on the exact Gaussian Poisson prior of ``tests/conftest.py``."""

import numpy as np
import pytest
import torch

from scidiff.diffusion import karras_sigmas
from scidiff.pde import make_dataset, solve_darcy
from scidiff.pde.diffusionpde import (
    ChannelAffine,
    CoefficientGNStep,
    SparseObservation,
    diffusionpde_likelihood,
    joint_residual,
    sample_diffusionpde,
)
from scidiff.pde.elliptic import _laplacian

DARCY_AFF = ChannelAffine([1 / 4.5, 1 / 0.004], [-7.5 / 4.5, 0.0])


def _joint(a, u):
    return torch.stack([torch.as_tensor(a), torch.as_tensor(u)], 1)


def _darcy_case(n, seed=3):
    a = make_dataset("darcy", 1, n, seed=seed, workers=1, progress=False).a.values.astype(np.float64)
    return a, solve_darcy(a)


def test_coefficient_step_for_poisson_pulls_a_towards_the_laplacian_of_u():
    """Poisson: J = -std_a I on the interior, so delta = std_a (lap_h u - a) / (std_a^2 + lambda) with
    lambda = damping * std_a^2 (n - 2)^2 / n^2; boundary values of a (outside the residual) stay."""
    n, damping = 9, 0.3
    aff = ChannelAffine([2.0, 50.0], [0.1, -0.3])  # std_a = 0.5
    g = torch.Generator().manual_seed(0)
    a, u = torch.randn(2, n, n, dtype=torch.float64, generator=g), torch.randn(2, n, n, dtype=torch.float64, generator=g)
    x = aff.to_normalised(_joint(a, u)).requires_grad_(True)
    step = CoefficientGNStep("poisson", aff, damping=damping)
    energy = step.energy(x)
    (grad,) = torch.autograd.grad(energy.sum(), x)
    lam = damping * 0.25 * (n - 2) ** 2 / n**2
    want = 0.5 * (_laplacian(u) - a[:, 1:-1, 1:-1]) / (0.25 + lam)
    assert torch.allclose(-grad[:, 0, 1:-1, 1:-1], want, atol=1e-9)
    assert torch.equal(grad[:, 0, 0], torch.zeros_like(grad[:, 0, 0]))
    assert torch.equal(grad[:, 1], torch.zeros_like(grad[:, 1]))  # u is left to the prior and the observations
    assert torch.allclose(energy, 0.5 * grad[:, 0].flatten(1).pow(2).sum(1))


def _neumann_differences(n):
    """Forward differences of an n x n grid along y and x, last row/column zero (dense)."""
    d = np.eye(n, k=1) - np.eye(n)
    d[-1] = 0.0
    return torch.as_tensor(np.vstack([np.kron(d, np.eye(n)), np.kron(np.eye(n), d)]))


@pytest.mark.parametrize("smoothing", [0.0, 3.0])
def test_coefficient_step_matches_the_dense_levenberg_marquardt_step_on_darcy(smoothing):
    n, damping = 8, 0.05
    a, u = _darcy_case(n)
    a0 = np.full_like(a, 7.5) + 0.5 * np.random.default_rng(0).standard_normal(a.shape)
    x = DARCY_AFF.to_normalised(_joint(a0, u))
    delta = CoefficientGNStep("darcy", DARCY_AFF, damping=damping, cg_iters=200, smoothing=smoothing).step(x)[0].flatten()

    res = joint_residual("darcy")
    u_t = torch.as_tensor(u)
    def r_of(v):  # residual as a function of the normalised a
        return res(_joint((7.5 + 4.5 * v).reshape(1, n, n), u_t)).flatten()
    v0 = x[0, 0].flatten()
    J = torch.autograd.functional.jacobian(r_of, v0)
    lam = damping * (J**2).sum() / n**2
    G = _neumann_differences(n)
    penalty = torch.eye(n * n, dtype=J.dtype) + smoothing * G.T @ G  # ||v||^2 + beta ||grad v||^2
    want = -torch.linalg.solve(J.T @ J + lam * penalty, J.T @ r_of(v0))
    assert float((delta - want).abs().max()) < 1e-4 * float(want.abs().max()), float((delta - want).abs().max())


def test_coefficient_step_recovers_darcy_a_from_the_true_u():
    """With the true u, a from a constant start: one step with light damping removes the residual and all of the
    error of a that u determines; what stays is the part of a that u does not see (J's null space), a tenth of the
    start. Damping removes the share s^2 / (s^2 + lambda) per step, so the residual falls by at least
    lambda_rel-dependent factors each step and keeps falling."""
    n = 16
    a, u = _darcy_case(n)
    x = DARCY_AFF.to_normalised(_joint(np.full_like(a, 7.5), u))
    res = joint_residual("darcy")
    inner = np.s_[0, 1:-1, 1:-1]
    err = lambda x: float(np.linalg.norm(DARCY_AFF.to_physical(x)[0, 0][1:-1, 1:-1].numpy() - a[inner])  # noqa: E731
                          / np.linalg.norm(a[inner]))
    r0, e0 = float(res(DARCY_AFF.to_physical(x)).norm()), err(x)
    light = x.clone()
    light[:, 0] += CoefficientGNStep("darcy", DARCY_AFF, damping=1e-4, cg_iters=200).step(light)
    assert float(res(DARCY_AFF.to_physical(light)).norm()) < 1e-2 * r0
    assert err(light) < 0.25 * e0, (err(light), e0)
    damped, norms = x.clone(), [r0]
    step = CoefficientGNStep("darcy", DARCY_AFF, damping=1e-2)
    for _ in range(3):
        damped[:, 0] += step.step(damped)
        norms.append(float(res(DARCY_AFF.to_physical(damped)).norm()))
    assert all(b < 0.5 * a_ for a_, b in zip(norms, norms[1:])), norms
    assert err(damped) < 0.25 * e0


def test_coefficient_guidance_makes_a_consistent_with_the_sampled_u(poisson):
    """Inverse problem on the exact Gaussian Poisson prior (u observed at 30 %): the nugget lets prior samples
    violate lap u = a (by half of ||a||: lap_h amplifies the nugget of u by 8 / h^2); the coefficient step pulls a
    towards lap_h u of the sampled u and keeps the error of a. (The observation term keeps kicking u, so the gap
    does not close; with larger observation weights u gets rougher and lap_h u a worse target.)"""
    prior, aff, truth, mask, _ = poisson
    n = truth.shape[-1]
    obs = SparseObservation(truth[0, 1], mask, channel=1, transform=aff.to_physical)
    sig = karras_sigmas(40)
    zeta_u = 10.0 * float(aff.scale[1])  # 10 / std(u), see benchmarks/pde.py ZETA_OBS

    def run(pde, zeta):
        lik = diffusionpde_likelihood([(obs, zeta_u)], pde, zeta, sig)
        post = sample_diffusionpde(prior, lik, (6, 2, n, n), sig, generator=torch.Generator().manual_seed(0),
                                   progress=False, dtype=torch.float64)
        x = aff.to_physical(post.samples)
        a, u = x[:, 0], x[:, 1]
        inner = a[:, 1:-1, 1:-1]
        gap = ((inner - _laplacian(u)).flatten(1).norm(dim=1) / inner.flatten(1).norm(dim=1)).mean()
        a_true = truth[0, 0, 1:-1, 1:-1]
        err = (inner.mean(0) - a_true).norm() / a_true.norm()
        return float(gap), float(err)

    gap0, err0 = run(None, 0.0)
    gap_c, err_c = run(CoefficientGNStep("poisson", aff), 0.5)
    assert gap_c < 0.7 * gap0, (gap_c, gap0)
    assert err_c < 1.02 * err0, (err_c, err0)


def test_bad_coefficient_steps_raise():
    aff = ChannelAffine([1.0, 1.0], [0.0, 0.0])
    with pytest.raises(ValueError, match="elliptic joint"):
        CoefficientGNStep("burgers", aff)
    with pytest.raises(ValueError, match="damping"):
        CoefficientGNStep("darcy", aff, damping=0.0)
    with pytest.raises(ValueError, match="smoothing"):
        CoefficientGNStep("darcy", aff, smoothing=-1.0)
    with pytest.raises(ValueError, match="cg_iters"):
        CoefficientGNStep("darcy", aff, cg_iters=0)
    with pytest.raises(ValueError, match="2 channels"):
        CoefficientGNStep("darcy", ChannelAffine([1.0], [0.0]))
