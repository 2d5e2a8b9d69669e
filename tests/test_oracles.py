import math

import pytest
import torch

from conftest import smooth_mixture
from scidiff.oracles import Gaussian, GaussianMixture


def test_denoiser_is_tweedie_of_log_prob():
    gm = smooth_mixture((2, 3))
    x = torch.randn(5, 2, 3, dtype=torch.float64) * 3
    sigma = torch.tensor([0.1, 0.5, 1.0, 2.0, 10.0], dtype=torch.float64)
    x.requires_grad_(True)
    (grad,) = torch.autograd.grad(gm.log_prob(x, sigma).sum(), x)
    tweedie = x + sigma[:, None, None] ** 2 * grad
    assert torch.allclose(gm(x.detach(), sigma), tweedie.detach(), atol=1e-8)


def test_gaussian_denoiser_closed_form_diagonal():
    var = torch.tensor([0.5, 2.0, 1.0])
    g = Gaussian(torch.tensor([1.0, 0.0, -1.0]), var)
    x = torch.randn(4, 3, dtype=torch.float64)
    s = 0.7
    expect = g.means[0] + var / (var + s**2) * (x - g.means[0])
    assert torch.allclose(g(x, s), expect, atol=1e-10)


def test_posterior_matches_brute_force_bayes_in_1d():
    gm = GaussianMixture(torch.tensor([0.4, 0.6]), torch.tensor([[-2.0], [1.5]]), torch.tensor([0.3, 0.8]))
    A, y, sy = torch.tensor([[0.8]]), torch.tensor([0.5]), 0.4
    post = gm.posterior(A, y, sy)
    grid = torch.linspace(-8, 8, 200001, dtype=torch.float64)[:, None]
    dens = (gm.log_prob(grid) - 0.5 * ((y - 0.8 * grid[:, 0]) / sy) ** 2).exp()
    dens = dens / dens.sum()
    mean = (dens * grid[:, 0]).sum()
    var = (dens * (grid[:, 0] - mean) ** 2).sum()
    assert post.mean()[0] == pytest.approx(float(mean), abs=1e-6)
    assert post.covariance()[0, 0] == pytest.approx(float(var), abs=1e-6)


def test_sample_moments_and_reproducibility():
    gm = smooth_mixture((1, 6))
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    a, b = gm.sample(20000, g1, dtype=torch.float64), gm.sample(20000, g2, dtype=torch.float64)
    assert torch.equal(a, b)
    flat = a.reshape(len(a), -1)
    assert torch.allclose(flat.mean(0), gm.mean(), atol=0.1)
    assert torch.linalg.norm(torch.cov(flat.T) - gm.covariance()) / torch.linalg.norm(gm.covariance()) < 0.05


def test_bad_inputs():
    with pytest.raises(ValueError, match="covs must be"):
        GaussianMixture(torch.ones(2), torch.zeros(2, 3), torch.ones(2, 4))
    gm = Gaussian(torch.zeros(3), torch.tensor(1.0))
    with pytest.raises(ValueError, match="A must be"):
        gm.posterior(torch.ones(2, 4), torch.zeros(2), 0.1)
    with pytest.raises(ValueError, match="sigma_y must be positive"):
        gm.posterior(torch.ones(2, 3), torch.zeros(2), 0.0)
    with pytest.raises(ValueError, match="non-finite"):
        gm(torch.full((1, 3), math.nan), 1.0)
