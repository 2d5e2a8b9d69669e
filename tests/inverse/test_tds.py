import warnings

import pytest
import torch
from smc_problems import linear_problem, posterior_errors

from scidiff.diffusion import ddpm_sigmas
from scidiff.inverse import tds, twisting_likelihood
from scidiff.likelihoods import GaussianLikelihood

SIGMAS = ddpm_sigmas(100)



def _run(prior, lik, k, seed, sigmas=SIGMAS, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return tds(prior, lik, (k, *prior.shape), sigmas, generator=torch.Generator().manual_seed(seed),
                   progress=False, dtype=torch.float64, **kw)


def test_error_shrinks_with_particles():
    errs = {k: torch.stack([posterior_errors(_run(*linear_problem(p)[:2], k, 100 + p), linear_problem(p)[2])
                            for p in range(4)]).mean(0) for k in (16, 1024)}
    assert (errs[1024] < errs[16] / 2).all(), errs
    assert errs[1024].sum() < errs[16].sum() / 3, errs


def test_credible_intervals_cover():
    hits = []
    for p in range(40):
        prior, lik, _, x = linear_problem(1000 + p)
        hits.append(_run(prior, lik, 256, p, ddpm_sigmas(50)).coverage(x, 0.9))
    assert 0.8 <= sum(hits) / len(hits) <= 0.97


def test_tiny_noise_keeps_weights_finite():
    prior, lik, exact, _ = linear_problem(0, sigma_y=1e-3)
    post = _run(prior, lik, 64, 0, ddpm_sigmas(50))
    assert torch.isfinite(post.log_weights).all() and torch.isfinite(post.samples).all()
    assert not torch.isnan(post.weights).any()
    assert float((lik.A(post.mean()[None]) - lik.y).abs()) < 0.05


def test_reproducible_history_and_no_resampling_mode():
    prior, lik, _, _ = linear_problem(1)
    a, b = _run(prior, lik, 32, 5, ddpm_sigmas(20)), _run(prior, lik, 32, 5, ddpm_sigmas(20))
    assert torch.equal(a.samples, b.samples) and torch.equal(a.log_weights, b.log_weights)
    assert len(a.ess_history) == 21 and a.info["num_resampled"] > 0
    assert _run(prior, lik, 32, 5, ddpm_sigmas(20), ess_threshold=0.0).info["num_resampled"] == 0


def test_twist_anneals_to_the_likelihood():
    _, lik, _, _ = linear_problem(2)
    x = torch.randn(3, 2, dtype=torch.float64)
    twist = twisting_likelihood(lik)
    zero, big = torch.zeros(3, dtype=torch.float64), torch.full((3,), 10.0, dtype=torch.float64)
    assert torch.allclose(twist.energy(x, zero), lik.energy(x))
    assert torch.allclose(twist.energy(x, big), lik.energy(x) * 0.25 / (0.25 + 100))
    with pytest.raises(ValueError, match="sigma_y"):
        twisting_likelihood(2.0 * lik)


def test_chunking_and_bad_input():
    prior, lik, _, _ = linear_problem(3)
    a = _run(prior, lik, 12, 1, ddpm_sigmas(10))
    b = _run(prior, lik, 12, 1, ddpm_sigmas(10), max_batch_size=5)
    assert torch.allclose(a.samples, b.samples) and torch.allclose(a.log_weights, b.log_weights)
    with pytest.raises(TypeError, match="twist"):
        tds(prior, lik, (4, 2), SIGMAS, twist=lambda x: x, progress=False)
    with pytest.raises(ValueError, match="twisting needs a Gaussian"):
        tds(prior, 2.0 * lik, (4, 2), SIGMAS, progress=False)
    with pytest.raises(ValueError, match="event shape"):
        tds(prior, GaussianLikelihood(lik.A, lik.y, 0.5), (4, 5), SIGMAS, progress=False)
    with pytest.raises(ValueError, match="end with 0"):
        tds(prior, lik, (4, 2), SIGMAS[:-1], progress=False)
