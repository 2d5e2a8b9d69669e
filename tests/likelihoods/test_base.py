import pytest
import torch

from scidiff.likelihoods import GaussianLikelihood, LinearGaussianLikelihood, MissingCapability


def _problem(seed=0, m=5, shape=(1, 4)):
    g = torch.Generator().manual_seed(seed)
    M = torch.randn(m, 4, generator=g, dtype=torch.float64)
    y = torch.randn(1, m, generator=g, dtype=torch.float64)
    return M, y, LinearGaussianLikelihood.from_matrix(M, y, 0.3, shape)


def test_linear_gradient_matches_autograd_of_generic_gaussian():
    M, y, lik = _problem()
    generic = GaussianLikelihood(lambda x: x.reshape(len(x), -1) @ M.T, y, 0.3)
    x = torch.randn(3, 1, 4, dtype=torch.float64)
    assert torch.allclose(lik.energy(x), generic.energy(x))
    assert torch.allclose(lik.grad(x), generic.grad(x))


def test_hutchinson_laplacian_is_unbiased_for_trace():
    M, y, lik = _problem()
    x = torch.randn(2, 1, 4, dtype=torch.float64)
    est = lik.laplacian(x, generator=torch.Generator().manual_seed(0), num_probes=4000)
    exact = (M**2).sum() / 0.3**2
    assert torch.allclose(est, exact.expand(2), rtol=0.05)


def test_pseudo_inverse_by_cg_matches_pinv():
    M, y, lik = _problem(m=3)  # underdetermined: CG from zero gives the minimum-norm solution
    cg = LinearGaussianLikelihood(lik.A, lik.A_adjoint, y, 0.3)
    assert torch.allclose(cg.A_dagger(y), lik.A_dagger(y), atol=1e-6)


def test_sum_and_schedule_weight():
    _, _, a = _problem(0)
    _, _, b = _problem(1)
    x = torch.randn(2, 1, 4, dtype=torch.float64)
    s = (a + 2.0 * b).energy(x)
    assert torch.allclose(s, a.energy(x) + 2 * b.energy(x))
    w = (lambda sigma: sigma**2) * a
    sigma = torch.tensor([1.0, 2.0], dtype=torch.float64)
    assert torch.allclose(w.grad(x, sigma), a.grad(x) * sigma[:, None, None] ** 2)
    with pytest.raises(ValueError, match="depends on sigma"):
        w.energy(x)


def test_clear_errors():
    M, y, lik = _problem()
    with pytest.raises(ValueError, match="does not match the measurements"):
        GaussianLikelihood(lambda x: x.reshape(len(x), -1), y, 0.1).energy(torch.zeros(1, 1, 4, dtype=torch.float64))
    with pytest.raises(MissingCapability, match="svd"):
        LinearGaussianLikelihood(lik.A, lik.A_adjoint, lik.y, 0.1).require("svd")
    with pytest.raises(ValueError, match="non-finite"):
        GaussianLikelihood(lambda x: x, torch.tensor([[float("nan")]]), 0.1)
    with pytest.raises(ValueError, match="sigma_y must be positive"):
        GaussianLikelihood(lambda x: x, y, 0.0)


def test_generic_hutchinson_laplacian_matches_closed_form_for_a_nonlinear_forward():
    y = torch.tensor([[0.5, -0.2, 1.0]], dtype=torch.float64)
    lik = GaussianLikelihood(lambda x: x**2, y, 0.5)
    x = torch.tensor([[0.3, -1.2, 0.8]], dtype=torch.float64)
    exact = ((6 * x**2 - 2 * y) / 0.25).sum(1)  # d^2/dx^2 of (y - x^2)^2 / (2 sigma^2)
    est = lik.laplacian(x, generator=torch.Generator().manual_seed(0), num_probes=64)
    assert torch.allclose(est, exact, rtol=1e-10)  # diagonal Hessian: Rademacher probes are exact


@pytest.mark.parametrize("m", [3, 7])
def test_dense_matrix_svd_factors_the_operator(m):
    M, y, lik = _problem(m=m)
    svd = lik.require("svd")
    x = torch.randn(2, 1, 4, dtype=torch.float64)
    assert torch.allclose(svd.U(svd.singular_values * svd.V_adjoint(x)), lik.A(x))
    assert torch.allclose(svd.U_adjoint(svd.U(svd.U_adjoint(y))), svd.U_adjoint(y))
    # V has orthonormal columns: V^T V = I on the spectral side
    c = torch.randn(2, min(m, 4), dtype=torch.float64)
    assert torch.allclose(svd.V_adjoint(svd.V(c)), c)
