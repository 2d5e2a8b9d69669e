"""The observed u scored through the Darcy solver: the differentiable solve (adjoint-state gradient) and the
guidance term built on it (``guidance.u_solved``)."""

import numpy as np
import pytest
import torch

from scidiff.pde import make_dataset, solve_darcy, solve_helmholtz, solve_poisson
from scidiff.pde.diffusionpde import ChannelAffine, SolvedState, SparseObservation, solved_observation
from scidiff.pde.elliptic import solve_darcy_torch, solve_elliptic_torch

AFF = ChannelAffine([1 / 4.5, 1 / 0.004], [-7.5 / 4.5, -0.005 / 0.004])  # Darcy's normaliser, roughly


def _coefficient(shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return 3.0 + 9.0 * torch.rand(shape, generator=g, dtype=torch.float64)


def test_differentiable_solve_matches_the_reference_solver_and_its_gradient_the_finite_differences():
    a = _coefficient((2, 6, 6))
    u = solve_darcy_torch(a)
    np.testing.assert_allclose(u.numpy(), solve_darcy(a.numpy()), rtol=1e-12, atol=1e-15)
    assert torch.autograd.gradcheck(solve_darcy_torch, (a.clone().requires_grad_(True),))
    # The adjoint state is the derivative of a misfit at a few points (a functional of u only).
    a = _coefficient((1, 10, 10), seed=1).requires_grad_(True)
    w = torch.zeros(1, 10, 10, dtype=torch.float64)
    w[0, 3, 4], w[0, 6, 2] = 1.0, -2.0
    (g,) = torch.autograd.grad((solve_darcy_torch(a) * w).sum(), a)
    v = _coefficient((1, 10, 10), seed=2) - 7.5
    eps = 1e-6
    fd = ((solve_darcy_torch(a.detach() + eps * v) - solve_darcy_torch(a.detach() - eps * v)) * w).sum() / (2 * eps)
    assert float((g * v).sum()) == pytest.approx(float(fd), rel=1e-6)


def test_solved_observation_is_zero_at_the_true_coefficient_and_moves_only_a():
    ref = make_dataset("darcy", 1, 12, seed=2, workers=1, progress=False)
    a = ref.a.values[0].astype(np.float64)
    u = solve_darcy(a)  # in float64 (the data set stores float32)
    mask = torch.zeros(12, 12, dtype=torch.bool)
    mask[2:10:3, 3:11:2] = True
    obs = SparseObservation(torch.as_tensor(u), mask, 1, AFF.to_physical)
    solved = solved_observation(obs, AFF)
    wrong_u = AFF.to_normalised(torch.as_tensor(np.stack([a, 0.0 * u]))[None]).requires_grad_(True)
    assert float(solved.energy(wrong_u)) < 1e-8 * np.linalg.norm(u[mask.numpy()])  # whatever the u channel holds
    assert float(obs.energy(wrong_u)) > 0.1 * np.linalg.norm(u[mask.numpy()])
    # Off the truth: the gradient lives on the a channel, and a small step down it lowers the misfit.
    a_off = np.where(a > 7.5, 9.0, 5.0)
    x = AFF.to_normalised(torch.as_tensor(np.stack([a_off, u]))[None]).requires_grad_(True)
    e = solved.energy(x)
    (g,) = torch.autograd.grad(e.sum(), x)
    assert float(g[:, 1].abs().max()) == 0.0 and float(g[:, 0].abs().max()) > 0
    assert float(solved.energy(x.detach() - 0.5 * float(e) * g / g.norm() ** 2)) < float(e)
    # Stacked observations (several cases x samples) keep one set per item.
    two = solved_observation(SparseObservation.stack([obs, obs], repeats=2), AFF)
    assert two.energy(x.detach().repeat(4, 1, 1, 1)).shape == (4,)


def test_solved_state_clips_the_coefficient_and_bad_input_raises():
    x = torch.zeros(1, 2, 6, 6, dtype=torch.float64)
    x[:, 0] = -3.0  # physical a = 7.5 - 13.5 < 0: clipped to 3 before the solve
    phys = SolvedState(AFF)(x)
    np.testing.assert_allclose(phys[0, 1].numpy(), solve_darcy(np.full((6, 6), 3.0)), rtol=1e-12)
    with pytest.raises(ValueError, match="must be positive"):
        solve_darcy_torch(torch.zeros(1, 5, 5, dtype=torch.float64))
    with pytest.raises(ValueError, match="non-finite"):
        solve_darcy_torch(torch.full((1, 5, 5), float("nan"), dtype=torch.float64))
    with pytest.raises(ValueError, match="0 < lo < hi"):
        SolvedState(AFF, a_range=(0.0, 12.0))
    with pytest.raises(ValueError, match="2 channels"):
        SolvedState(ChannelAffine([1.0], [0.0]))
    on_a = SparseObservation(torch.zeros(6, 6), torch.ones(6, 6, dtype=torch.bool), 0)
    with pytest.raises(ValueError, match="channel 1"):
        solved_observation(on_a, AFF)


@pytest.mark.parametrize("pde, k", [("poisson", 1.0), ("helmholtz", 1.0), ("helmholtz", 3.0)])
def test_linear_solve_matches_the_reference_solver_and_its_gradient_is_exact(pde, k):
    a = _coefficient((2, 7, 7)) - 7.5
    u = solve_elliptic_torch(pde, a, k=k)
    ref = solve_poisson(a.numpy()) if pde == "poisson" else solve_helmholtz(a.numpy(), k)
    np.testing.assert_allclose(u.numpy(), ref, rtol=1e-12, atol=1e-15)
    assert torch.autograd.gradcheck(lambda t: solve_elliptic_torch(pde, t, k=k), (a.clone().requires_grad_(True),))
    # u is linear in a: the vector-Jacobian product is the solve of the weights, and a's boundary does not enter.
    w = _coefficient((2, 7, 7), seed=3)
    (g,) = torch.autograd.grad((solve_elliptic_torch(pde, a.requires_grad_(True), k=k) * w).sum(), a)
    assert float(g[:, 0].abs().max()) == 0.0 and float(g[:, :, -1].abs().max()) == 0.0
    v = _coefficient((2, 7, 7), seed=4)
    assert float((g * v).sum()) == pytest.approx(float((solve_elliptic_torch(pde, v, k=k) * w).sum()), rel=1e-10)


def test_solved_observation_of_a_linear_pde_recovers_the_observed_u_and_bad_input_raises():
    """Poisson: the term vanishes at the true source whatever the u channel holds, is not clipped (a takes any
    sign), and gradient descent on a alone fits the observed u."""
    aff = ChannelAffine([1 / 0.3, 1 / 0.004], [0.0, 0.0])  # Poisson's normaliser, roughly
    ref = make_dataset("poisson", 1, 10, seed=2, workers=1, progress=False)
    a = ref.a.values[0].astype(np.float64)
    u = solve_poisson(a)  # in float64 (the data set stores float32)
    mask = torch.zeros(10, 10, dtype=torch.bool)
    mask[2:9:3, 1:9:2] = True
    obs = SparseObservation(torch.as_tensor(u), mask, 1, aff.to_physical)
    solved = solved_observation(obs, aff, None, pde="poisson")
    x_true = aff.to_normalised(torch.as_tensor(np.stack([a, 0.0 * u]))[None])
    assert float(solved.energy(x_true)) < 1e-10 * np.linalg.norm(u[mask.numpy()])
    x = torch.zeros_like(x_true).requires_grad_(True)  # a = 0: u = 0
    e0 = float(solved.energy(x))
    (g,) = torch.autograd.grad(solved.energy(x).sum(), x)
    assert float(g[:, 1].abs().max()) == 0.0
    assert float(solved.energy(x.detach() - 0.5 * e0 * g / g.norm() ** 2)) < e0
    with pytest.raises(ValueError, match="needs a positive coefficient"):
        SolvedState(aff, None, pde="darcy")
    with pytest.raises(ValueError, match="elliptic PDE"):
        SolvedState(aff, None, pde="burgers")
    with pytest.raises(ValueError, match="pde must be darcy, poisson or helmholtz"):
        solve_elliptic_torch("burgers", torch.zeros(1, 5, 5, dtype=torch.float64))
    with pytest.raises(ValueError, match="non-finite"):
        solve_elliptic_torch("poisson", torch.full((1, 5, 5), float("nan"), dtype=torch.float64))
