import pytest
import torch

from scidiff.likelihoods import GaussianLikelihood, Likelihood, LinearGaussianLikelihood, in_model_units
from scidiff.likelihoods.physics import SVD

SHAPE = (2, 3)


def _linear(seed=0):
    g = torch.Generator().manual_seed(seed)
    M = torch.randn(4, 6, generator=g, dtype=torch.float64)
    y = torch.randn(1, 4, generator=g, dtype=torch.float64)
    return LinearGaussianLikelihood.from_matrix(M, y, 0.3, SHAPE)


def _x(n=3):
    return torch.randn(n, *SHAPE, dtype=torch.float64, generator=torch.Generator().manual_seed(9))


MEAN = torch.tensor([[1.0], [-2.0]], dtype=torch.float64)  # per-channel normaliser, shape (C, 1)
STD = torch.tensor([[0.5], [3.0]], dtype=torch.float64)


def test_linear_stays_linear_and_matches_physical_energy():
    phys = _linear()
    lik = in_model_units(phys, MEAN, STD, shape=SHAPE)
    assert isinstance(lik, LinearGaussianLikelihood)
    x = _x()
    assert torch.allclose(lik.energy(x), phys.energy(MEAN + STD * x))
    xr = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(phys.energy(MEAN + STD * xr).sum(), xr)
    assert torch.allclose(lik.grad(x), g)
    # A is linear (offset moved into y) and A_adjoint is its adjoint
    u, v = _x(1), torch.randn(1, 4, dtype=torch.float64)
    assert torch.allclose(lik.A(2 * u), 2 * lik.A(u))
    assert torch.allclose((lik.A(u) * v).sum(), (u * lik.A_adjoint(v)).sum())
    # the pseudo-inverse solves the least-squares problem in model units
    x_ls = lik.A_dagger(lik.y)
    assert torch.allclose(lik.grad(x_ls), torch.zeros_like(x_ls), atol=1e-8)


def test_svd_is_rescaled_for_scalar_std():
    eye = lambda v: v  # noqa: E731
    s = torch.tensor([1.0, 0.0, 2.0], dtype=torch.float64)
    base = LinearGaussianLikelihood(lambda x: s * x, lambda r: s * r, torch.ones(1, 3, dtype=torch.float64), 0.1,
                                    svd=SVD(eye, eye, eye, eye, s))
    lik = in_model_units(base, 0.0, 2.0)
    x = torch.randn(2, 3, dtype=torch.float64)
    svd = lik.require("svd")
    assert torch.allclose(svd.U(svd.singular_values * svd.V_adjoint(x)), lik.A(x))


def test_nonlinear_and_generic():
    fwd = lambda x: torch.sin(x).flatten(1)  # noqa: E731
    phys = GaussianLikelihood(fwd, torch.zeros(1, 6, dtype=torch.float64), 0.2)
    lik = in_model_units(phys, MEAN, STD)
    x = _x()
    assert torch.allclose(lik.energy(x), phys.energy(MEAN + STD * x))

    class Quartic(Likelihood):
        def energy(self, x, sigma=None):
            return x.pow(4).flatten(1).sum(1)

    gen = in_model_units(Quartic(), MEAN, STD)
    assert torch.allclose(gen.grad(x), 4 * (MEAN + STD * x) ** 3 * STD)


def test_errors():
    with pytest.raises(ValueError, match="std must be positive"):
        in_model_units(_linear(), 0.0, torch.tensor([1.0, 0.0]))
    with pytest.raises(ValueError, match="non-finite"):
        in_model_units(_linear(), float("nan"), 1.0)
    with pytest.raises(ValueError, match="event shape"):
        in_model_units(_linear(), 1.0, 1.0)
