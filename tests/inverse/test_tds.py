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


def _wrong_scale(gain: float, sigma_y: float, dtype):
    """N(0, I) on (1, 4) observed through gain * (first two coordinates): exact posterior mean gain y / (gain^2 + sy^2)."""
    from scidiff.likelihoods import LinearGaussianLikelihood
    from scidiff.oracles import GaussianMixture

    prior = GaussianMixture(torch.ones(1), torch.zeros(1, 4, dtype=torch.float64), torch.ones(1, dtype=torch.float64),
                            shape=(1, 4))
    A = gain * torch.eye(4, dtype=torch.float64)[:2]
    y = A @ torch.ones(4, dtype=torch.float64)
    lik = LinearGaussianLikelihood.from_matrix(A.to(dtype), y.to(dtype), sigma_y, (1, 4))
    return prior, lik, gain * float(y[0]) / (gain**2 + sigma_y**2)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("gain,sigma_y", [(1e4, 1e-3), (1e2, 1.0), (1.0, 1e-3)])
def test_stiff_twist_stays_finite_and_warns(dtype, gain, sigma_y):
    from scidiff.diffusion import karras_sigmas

    prior, lik, exact = _wrong_scale(gain, sigma_y, dtype)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        post = tds(prior, lik, (64, 1, 4), karras_sigmas(30, 0.01, 10.0), progress=False, dtype=dtype,
                   generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(post.log_weights).all() and torch.isfinite(post.samples).all()
    assert torch.isfinite(post.weights).all() and torch.isfinite(torch.tensor(post.ess_history)).all()
    assert abs(float(post.mean()[0, 0]) - exact) < 0.01  # the observed coordinate sits on the data
    if gain / sigma_y > 1e3:  # the twisted weights degenerate: said clearly, not silently
        assert any("effective sample size collapsed" in str(w.message) for w in caught)


def test_without_the_step_guard_a_wrong_scale_operator_diverges():
    from scidiff.diffusion import karras_sigmas

    prior, lik, exact = _wrong_scale(1e2, 1.0, torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        post = tds(prior, lik, (16, 1, 4), karras_sigmas(30, 0.01, 10.0), progress=False, dtype=torch.float64,
                   generator=torch.Generator().manual_seed(0), step_guard=False)
    assert not abs(float(post.mean()[0, 0]) - exact) < 1e3  # the paper's explicit step overshoots without bound


def test_step_guard_is_inactive_on_a_well_scaled_problem():
    prior, lik, _, _ = linear_problem(2)
    a = _run(prior, lik, 32, 4, ddpm_sigmas(30))
    b = _run(prior, lik, 32, 4, ddpm_sigmas(30), step_guard=False)
    assert torch.equal(a.samples, b.samples) and torch.equal(a.log_weights, b.log_weights)


def test_guard_step_is_the_minimiser_of_the_quadratic_model():
    from scidiff.inverse.tds import guard_step

    # E(t) = (1 - k t)^2: start 1, slope -2k, end (1 - k)^2, minimiser 1 / k
    k = torch.tensor([0.5, 1.0, 10.0, 1e6], dtype=torch.float64)
    t = guard_step(torch.ones_like(k), -2 * k, (1 - k) ** 2)
    torch.testing.assert_close(t, torch.tensor([1.0, 1.0, 0.1, 1e-6], dtype=torch.float64))
    # overflowed or NaN end energy: no guidance; a concave model: the full step
    nan, inf = torch.tensor([float("nan")]), torch.tensor([float("inf")])
    assert guard_step(torch.ones(1), -torch.ones(1), inf).item() == 0.0
    assert guard_step(torch.ones(1), -torch.ones(1), nan).item() == 0.0
    assert guard_step(torch.ones(1), -torch.ones(1), torch.zeros(1) - 5).item() == 1.0
