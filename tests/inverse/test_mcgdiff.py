import warnings

import pytest
import torch
from smc_problems import linear_problem, posterior_errors

from scidiff.diffusion import karras_sigmas
from scidiff.inverse import mcgdiff
from scidiff.likelihoods import GaussianLikelihood, LinearGaussianLikelihood, MissingCapability
from scidiff.oracles import Gaussian

SIGMAS = karras_sigmas(50, 0.002, 80.0)


def _run(prior, lik, k, seed, sigmas=SIGMAS, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return mcgdiff(prior, lik, (k, *prior.shape), sigmas, generator=torch.Generator().manual_seed(seed),
                       progress=False, dtype=torch.float64, **kw)


@pytest.mark.parametrize("sigma_y", [2.0, 0.5, 0.05])
def test_gaussian_posterior_in_closed_form(sigma_y):
    # 1D N(0, 1) prior, y = x + sigma_y n: posterior N(y / (1 + sigma_y^2), sigma_y^2 / (1 + sigma_y^2)).
    prior = Gaussian(torch.zeros(1, dtype=torch.float64), torch.eye(1, dtype=torch.float64))
    y = torch.tensor([[1.5]], dtype=torch.float64)
    lik = LinearGaussianLikelihood.from_matrix(torch.eye(1, dtype=torch.float64), y, sigma_y, (1,))
    post = _run(prior, lik, 8000, 0, karras_sigmas(200, 0.002, 80.0))
    mean, var = 1.5 / (1 + sigma_y**2), sigma_y**2 / (1 + sigma_y**2)
    assert abs(float(post.mean()) - mean) < 0.03 + 0.02 * mean
    # the unconditional DDPM kernel on 200 Karras steps loses ~5 % of the variance: allow for it
    assert 0.8 * var < float(post.std()) ** 2 < 1.1 * var


def test_error_shrinks_with_particles_on_the_mixture():
    errs = {k: torch.stack([posterior_errors(_run(*linear_problem(p)[:2], k, 100 + p), linear_problem(p)[2])
                            for p in range(4)]).mean(0) for k in (16, 1024)}
    assert errs[1024][0] < errs[16][0] / 3, errs  # posterior mean
    assert errs[1024][2] < errs[16][2] / 2, errs  # mode weights
    assert errs[1024].sum() < errs[16].sum() / 2, errs


def test_no_gradients_and_one_forward_per_step():
    calls = []
    prior, lik, _, _ = linear_problem(3)

    def denoiser(x, sigma):
        calls.append(x.requires_grad)
        return prior(x, sigma)

    post = mcgdiff(denoiser, lik, (8, 2), SIGMAS, generator=torch.Generator().manual_seed(0), progress=False,
                   dtype=torch.float64)
    assert len(calls) == len(SIGMAS) - 1 and not any(calls)
    assert post.info["vjp"] == 0 and post.info["nfe"] == len(SIGMAS) - 1


def test_reproducible_and_tiny_noise_finite():
    prior, lik, _, _ = linear_problem(1, sigma_y=1e-3)
    a, b = _run(prior, lik, 32, 5), _run(prior, lik, 32, 5)
    assert torch.equal(a.samples, b.samples) and torch.equal(a.log_weights, b.log_weights)
    assert torch.isfinite(a.log_weights).all() and torch.isfinite(a.samples).all()
    assert float((lik.A(a.mean()[None]) - lik.y).abs()) < 0.02


def test_inpainting_through_deepinv_svd_keeps_observed_pixels():
    dinv = pytest.importorskip("deepinv")
    shape = (1, 4, 4)
    g = torch.Generator().manual_seed(0)
    prior = Gaussian(torch.zeros(16, dtype=torch.float64), 0.5 * torch.eye(16, dtype=torch.float64), shape=shape)
    mask = (torch.rand(1, *shape, generator=g) > 0.5).double()
    physics = dinv.physics.Inpainting(img_size=shape, mask=mask)
    x = prior.sample(1, g, dtype=torch.float64)
    y = physics.A(x)
    from scidiff.likelihoods import from_physics

    post = _run(prior, from_physics(physics, y, sigma_y=0.01), 64, 0)
    err = (post.mean()[None] - x).abs() * mask
    assert float(err.max()) < 0.05
    # unobserved pixels of an isotropic prior keep its variance
    assert float(post.std()[mask[0] == 0].pow(2).mean()) == pytest.approx(0.5, rel=0.4)


def test_clear_errors():
    prior, lik, _, _ = linear_problem(0)
    no_svd = LinearGaussianLikelihood(lik.A, lik.A_adjoint, lik.y, 0.5)
    with pytest.raises(MissingCapability, match="svd"):
        _run(prior, no_svd, 4, 0)
    with pytest.raises((MissingCapability, AttributeError), match="svd"):
        _run(prior, GaussianLikelihood(lik.A, lik.y, 0.5), 4, 0)
    matrix = torch.tensor([[1.0, 0.5]], dtype=torch.float64)
    two = LinearGaussianLikelihood.from_matrix(matrix, torch.ones(2, 1, dtype=torch.float64), 0.5, (2,))
    with pytest.raises(ValueError, match="batch size"):
        _run(prior, two, 4, 0)
    with pytest.raises(ValueError, match="kappa"):
        _run(prior, lik, 4, 0, kappa=0.0)
