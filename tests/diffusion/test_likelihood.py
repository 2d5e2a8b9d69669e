"""The probability-flow log-likelihood against exact log-densities (Gaussian and Gaussian-mixture oracles)."""

import pytest
import torch

from scidiff.diffusion import karras_sigmas, seeded_generators
from scidiff.diffusion.likelihood import probability_flow_log_likelihood
from scidiff.oracles import Gaussian, GaussianMixture


def _gaussian(d=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    L = torch.randn(d, d, generator=g, dtype=torch.float64)
    cov = L @ L.T / d + 0.3 * torch.eye(d, dtype=torch.float64)
    return Gaussian(torch.randn(d, generator=g, dtype=torch.float64), cov)


def test_exact_divergence_matches_gaussian_log_density():
    oracle = _gaussian()
    x = oracle.sample(32, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    est = probability_flow_log_likelihood(oracle, x, karras_sigmas(64, 0.002, 80.0), divergence="exact")
    err = est - oracle.log_prob(x)
    assert err.abs().max() < 0.25 and err.mean().abs() < 0.08
    # second-order convergence: halving the steps grows the error by clearly more than 2x
    coarse = probability_flow_log_likelihood(oracle, x, karras_sigmas(32, 0.002, 80.0), divergence="exact")
    assert (coarse - oracle.log_prob(x)).abs().mean() > 2.5 * err.abs().mean()


def test_exact_divergence_on_a_mixture_of_fields():
    """A non-Gaussian law on a 2 x 3 event shape: the density is nonlinear in x, the ODE is curved."""
    g = torch.Generator().manual_seed(2)
    means = torch.randn(2, 6, generator=g, dtype=torch.float64) * 2
    mix = GaussianMixture(torch.tensor([0.3, 0.7]), means, torch.tensor([0.5, 1.0]), shape=(2, 3))
    x = mix.sample(32, generator=g, dtype=torch.float64)
    est = probability_flow_log_likelihood(mix, x, karras_sigmas(64, 0.002, 80.0))  # auto -> exact (d = 6)
    assert (est - mix.log_prob(x)).abs().max() < 0.25


def test_hutchinson_is_unbiased_and_batch_independent():
    oracle = _gaussian()
    x = oracle.sample(1, generator=torch.Generator().manual_seed(3), dtype=torch.float64).expand(200, -1)
    sigmas = karras_sigmas(48, 0.002, 80.0)
    exact = probability_flow_log_likelihood(oracle, x[:1], sigmas, divergence="exact")
    est = probability_flow_log_likelihood(
        oracle, x, sigmas, divergence="hutchinson", generator=seeded_generators(200)
    )
    assert est.std() > 0.1  # the probes do vary
    assert (est.mean() - exact).abs() < 4 * est.std() / 14 + 0.02
    # more probes, less variance
    est4 = probability_flow_log_likelihood(
        oracle, x[:60], sigmas, divergence="hutchinson", num_probes=4, generator=seeded_generators(60)
    )
    assert est4.std() < 0.7 * est.std()
    # per-sample generators: sample i's estimate does not depend on the batch
    again = probability_flow_log_likelihood(
        oracle, x[:3], sigmas, divergence="hutchinson", generator=seeded_generators(3)
    )
    torch.testing.assert_close(again, est[:3])


def test_bad_inputs():
    oracle = _gaussian()
    x = oracle.sample(2, dtype=torch.float64)
    with pytest.raises(ValueError, match="divergence must be one of"):
        probability_flow_log_likelihood(oracle, x, karras_sigmas(8), divergence="trace")
    with pytest.raises(ValueError, match="at least two positive sigmas"):
        probability_flow_log_likelihood(oracle, x, torch.tensor([1.0, 0.0]))
    with pytest.raises(ValueError, match="non-finite"):
        probability_flow_log_likelihood(oracle, x * float("nan"), karras_sigmas(8))
    with pytest.raises(ValueError, match="num_probes"):
        probability_flow_log_likelihood(oracle, x, karras_sigmas(8), num_probes=0)
