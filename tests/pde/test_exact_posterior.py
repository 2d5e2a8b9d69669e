"""The exact Darcy coefficient posterior against rejection sampling from the data's own law."""

import numpy as np
import pytest

from scidiff.pde.exact import darcy_coefficient_posterior, grf_covariance_columns
from scidiff.pde.grf import grf_neumann

RES = 8


@pytest.fixture(scope="module")
def prior_draws():
    return grf_neumann(200_000, RES, generator=np.random.default_rng(1)).reshape(200_000, -1)


def test_covariance_columns_match_the_generator(prior_draws):
    nodes = np.array([0, 9, 27, 63])
    emp = prior_draws.T @ prior_draws[:, nodes] / len(prior_draws)
    assert np.abs(emp - grf_covariance_columns(nodes, RES)).max() < 0.01 * np.abs(emp).max()


@pytest.mark.parametrize("nodes, high", [([3, 20, 45], [20, 45]), ([18, 20, 34, 36], [18, 36])])
def test_posterior_marginals_match_rejection_sampling(prior_draws, nodes, high):
    """Second case: four nodes two apart with a checkerboard of signs, strongly correlated, where a poorly
    mixing Gibbs chain would show."""
    nodes = np.array(nodes)
    mask = np.zeros((RES, RES), bool)
    mask.flat[nodes] = True
    a_obs = np.full((RES, RES), 3.0)
    a_obs.flat[high] = 12.0
    keep = ((prior_draws[:, nodes] >= 0) == (a_obs.flat[nodes] == 12.0)).all(1)
    assert keep.sum() > 2_000
    p_rejection = (prior_draws[keep] >= 0).mean(0)
    draws = darcy_coefficient_posterior(a_obs, mask, 20_000, sweeps=60, generator=np.random.default_rng(2))
    p_exact = (draws.reshape(len(draws), -1) == 12.0).mean(0)
    assert np.all(draws.reshape(len(draws), -1)[:, nodes] == a_obs.flat[nodes])
    assert np.abs(p_exact - p_rejection).max() < 0.03
    # not the prior: the posterior moves the marginals next to the observations
    assert np.abs(p_exact - 0.5).max() > 0.2


def test_posterior_is_reproducible_and_checks_its_input():
    a_obs = np.full((RES, RES), 12.0)
    mask = np.zeros((RES, RES), bool)
    mask[2, 3] = True
    one = darcy_coefficient_posterior(a_obs, mask, 5, sweeps=5, generator=np.random.default_rng(7))
    assert np.array_equal(one, darcy_coefficient_posterior(a_obs, mask, 5, sweeps=5, generator=np.random.default_rng(7)))
    with pytest.raises(ValueError, match="observes no node"):
        darcy_coefficient_posterior(a_obs, np.zeros_like(mask), 2)
    with pytest.raises(ValueError, match="a_high"):
        darcy_coefficient_posterior(np.full((RES, RES), 5.0), mask, 2)
    with pytest.raises(ValueError, match="square field"):
        darcy_coefficient_posterior(a_obs[:, :4], mask[:, :4], 2)
