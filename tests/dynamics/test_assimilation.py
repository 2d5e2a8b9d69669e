"""Assimilation of sparse observations of a trajectory against the exact Gaussian posterior."""

import pytest
import torch

from scidiff.diffusion import karras_sigmas
from scidiff.dynamics import assimilate, trajectory_observations
from scidiff.oracles import Gaussian

V, T = 2, 16


def _prior():
    t = torch.arange(T, dtype=torch.float64)
    k = torch.exp(-((t[:, None] - t[None]) ** 2) / (2 * 3.0**2))
    cross = torch.tensor([[1.0, 0.6], [0.6, 1.0]], dtype=torch.float64)
    cov = torch.kron(cross, k) + 1e-3 * torch.eye(V * T, dtype=torch.float64)
    return Gaussian(torch.zeros(V * T, dtype=torch.float64), cov, shape=(V, T)), t


def test_observation_operator_reads_and_its_adjoint_is_exact():
    _, t = _prior()
    lik = trajectory_observations([0, 1, 1], [2.0, 5.5, 15.0], torch.zeros(3), 0.1, t, V)
    x = torch.randn(3, V, T, dtype=torch.float64)
    ax = lik.A(x)
    torch.testing.assert_close(ax[:, 0, 0], x[:, 0, 2])
    torch.testing.assert_close(ax[:, 0, 1], 0.5 * (x[:, 1, 5] + x[:, 1, 6]))
    torch.testing.assert_close(ax[:, 0, 2], x[:, 1, 15])
    r = torch.randn_like(ax)
    torch.testing.assert_close((ax * r).sum(), (x * lik.A_adjoint(r)).sum())


def test_posterior_mean_and_spread_against_the_exact_posterior():
    oracle, t = _prior()
    mean, std = torch.tensor([2.0, -1.0]), torch.tensor([3.0, 0.5])
    g = torch.Generator().manual_seed(1)
    truth = mean[:, None] + std[:, None] * oracle.sample(1, generator=g, dtype=torch.float64)[0]
    obs_t = torch.arange(0, T, 4.0)
    y = truth[0, obs_t.long()] + 0.1 * torch.randn(len(obs_t), generator=g, dtype=torch.float64)
    lik = trajectory_observations(torch.zeros_like(obs_t), obs_t, y, 0.1, t, V)
    post = assimilate(oracle, lik, (256, V, T), karras_sigmas(100, 0.002, 80.0), mean=mean, std=std, generator=g)
    # exact posterior of the standardised state: A reads std_0 * x[0, t]
    A = torch.zeros(len(obs_t), V * T, dtype=torch.float64)
    A[torch.arange(len(obs_t)), obs_t.long()] = std[0].double()
    exact = oracle.posterior(A, y - mean[0], 0.1)
    exact_mean = mean[:, None] + std[:, None] * exact.mean().reshape(V, T)
    exact_std = std[:, None] * exact.covariance().diagonal().sqrt().reshape(V, T)
    z = (post.mean() - exact_mean).abs() / exact_std
    assert z.max() < 0.6 and z.mean() < 0.25
    ratio = post.std() / exact_std
    assert 0.75 < ratio.mean() < 1.2 and ratio.min() > 0.45
    ds = post.to_xarray(dims=("variable", "time"), coords={"time": t.numpy()})
    assert ds["x_mean"].dims == ("variable", "time")


def test_bad_inputs():
    _, t = _prior()
    with pytest.raises(ValueError, match="same length"):
        trajectory_observations([0, 1], [1.0], torch.zeros(2), 0.1, t, V)
    with pytest.raises(ValueError, match="integers in"):
        trajectory_observations([2], [1.0], torch.zeros(1), 0.1, t, V)
    with pytest.raises(ValueError, match="outside the grid"):
        trajectory_observations([0], [40.0], torch.zeros(1), 0.1, t, V)
