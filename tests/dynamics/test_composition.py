"""Window composition (SDA) against a Gaussian Markov chain, whose long-trajectory law is known in closed form.

The chain is stationary, ``x_t = phi x_{t-1} + sqrt(1 - phi^2) e_t`` with innovations correlated across two
variables (covariance ``cross (x) phi^|i-j|``): a window oracle of length ``W`` is exact for every window, and the
oracle over the whole length ``L`` is the reference.
"""

import pytest
import torch

from scidiff.diffusion import karras_sigmas, sample
from scidiff.dynamics import WindowComposedDenoiser, assimilate, trajectory_observations
from scidiff.oracles import Gaussian

PHI, W = 0.8, 8
CROSS = torch.tensor([[1.0, 0.6], [0.6, 1.0]], dtype=torch.float64)


def _chain(length, variables=2):
    t = torch.arange(length, dtype=torch.float64)
    cov = PHI ** (t[:, None] - t[None]).abs()
    if variables == 2:
        cov = torch.kron(CROSS, cov)
    return Gaussian(torch.zeros(variables * length, dtype=torch.float64), cov, shape=(variables, length))


def test_composed_denoiser_is_exact_as_sigma_goes_to_zero():
    full, window = _chain(32), _chain(W)
    g = torch.Generator().manual_seed(0)
    x0 = full.sample(32, generator=g, dtype=torch.float64)
    x = x0 + 0.05 * torch.randn(x0.shape, generator=g, dtype=torch.float64)
    exact = full(x, 0.05)

    def rel_err(stride):
        return float((WindowComposedDenoiser(window, W, stride)(x, 0.05) - exact).norm() / (exact - x).norm())

    assert rel_err(2) < 0.01  # the Markov blanket is inside every state's window
    assert rel_err(W) > 0.2  # windows side by side: states at their edges miss a neighbour


def test_composed_samples_keep_the_chain_correlation_across_windows():
    comp = WindowComposedDenoiser(_chain(W, 1), W, 2)
    x = sample(comp, (2000, 1, 32), karras_sigmas(32, 0.002, 80.0), generator=torch.Generator().manual_seed(1),
               dtype=torch.float64, progress=False)[:, 0]
    cov = x.T @ x / len(x)
    assert (cov.diagonal() - 1).abs().max() < 0.1
    lag1 = torch.diagonal(cov, 1)
    # at every position (window edges included; the worst, 0.1 low, sits where neighbours read different
    # windows -- an approximation at sigma > 0, sampling noise is 0.01) and on average
    assert (lag1 - PHI).abs().max() < 0.13 and abs(float(lag1.mean()) - PHI) < 0.04
    # inside the context ((W - stride) / 2 = 3 steps) the correlations are the chain's; from its edge on they decay
    # faster (measured: 0.44 against 0.51 at lag 3, 0.20 against 0.33 at lag 5)
    lags = torch.stack([torch.diagonal(cov, k).mean() for k in range(3)])
    assert (lags - PHI ** torch.arange(3.0, dtype=torch.float64)).abs().max() < 0.05
    side = WindowComposedDenoiser(_chain(W, 1), W, W)
    xs = sample(side, (500, 1, 32), karras_sigmas(16, 0.002, 80.0), generator=torch.Generator().manual_seed(1),
                dtype=torch.float64, progress=False)[:, 0]
    assert float((xs[:, W - 1] * xs[:, W]).mean()).__abs__() < 0.15  # independent windows: no correlation


def test_assimilation_of_a_long_trajectory_matches_the_full_prior():
    length = 48
    full, window = _chain(length), _chain(W)
    g = torch.Generator().manual_seed(3)
    truth = full.sample(1, generator=g, dtype=torch.float64)[0]
    t = torch.arange(length, dtype=torch.float64)
    obs_t = torch.arange(2, length, 6.0)
    y = truth[0, obs_t.long()] + 0.2 * torch.randn(len(obs_t), generator=g, dtype=torch.float64)
    lik = trajectory_observations(torch.zeros_like(obs_t), obs_t, y, 0.2, t, 2)
    A = torch.zeros(len(obs_t), 2 * length, dtype=torch.float64)
    A[torch.arange(len(obs_t)), obs_t.long()] = 1.0
    exact_std = full.posterior(A, y, 0.2).covariance().diagonal().sqrt().reshape(2, length)

    def run(denoiser):
        return assimilate(denoiser, lik, (256, 2, length), karras_sigmas(48, 0.002, 80.0),
                          generator=torch.Generator().manual_seed(4))

    # same sampler and noise for all three: the difference is the prior's score alone
    ref, comp, side = run(full), run(WindowComposedDenoiser(window, W, 2)), run(WindowComposedDenoiser(window, W, W))
    gap = ((comp.mean() - ref.mean()).abs() / exact_std).max()
    assert gap < 0.25
    assert ((comp.std() / ref.std()) - 1).abs().max() < 0.15
    assert ((side.mean() - ref.mean()).abs() / exact_std).max() > 3 * gap


def test_bad_inputs():
    window = _chain(W, 1)
    with pytest.raises(ValueError, match="stride <= window"):
        WindowComposedDenoiser(window, W, W + 1)
    comp = WindowComposedDenoiser(window, W)
    with pytest.raises(ValueError, match="shorter than the window"):
        comp(torch.zeros(1, 1, W - 2, dtype=torch.float64), 1.0)
    with pytest.raises(ValueError, match=r"\(B, variables, time\)"):
        comp(torch.zeros(1, 16, dtype=torch.float64), 1.0)
    with pytest.raises(ValueError, match="no conditioning"):
        comp(torch.zeros(1, 1, 16, dtype=torch.float64), 1.0, label=torch.zeros(1))
