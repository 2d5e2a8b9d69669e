import pytest
import torch

from scidiff.diffusion import seeded_generators
from scidiff.inverse import dds, fbp

from volume_problem import best_admm_tv_mse, grf_volume_problem, mse


@pytest.fixture(scope="module")
def problem():
    return grf_volume_problem(n_views=4)


def test_dds_few_steps_with_oracle_prior(problem):
    prior, op, x, y = problem
    best_tv = best_admm_tv_mse()
    n = 6
    post = dds(prior, op, y.expand(n, -1, -1, -1, -1), n_steps=10, sigma_max=20.0, generator=seeded_generators(range(n)))
    assert post.info["nfe_per_slice"] == 10
    assert mse(post.mean(), x) < 0.9 * best_tv < mse(fbp(op, y), x)
    # the last step lands on a data-consistent volume: residual far below the FBP's
    res = float((op.A(post.samples) - y).norm() / y.norm())
    assert res < 0.05


def test_dds_seeded_per_volume(problem):
    prior, op, x, y = problem
    both = dds(prior, op, y.expand(2, -1, -1, -1, -1), n_steps=4, sigma_max=20.0, generator=seeded_generators([3, 4])).samples
    alone = dds(prior, op, y, n_steps=4, sigma_max=20.0, generator=seeded_generators([4])).samples
    torch.testing.assert_close(both[1:], alone, atol=1e-4, rtol=1e-4)


def test_errors(problem):
    prior, op, x, y = problem
    with pytest.raises(ValueError, match="eta"):
        dds(prior, op, y, n_steps=2, eta=1.5)
    with pytest.raises(ValueError, match="tv must be one of"):
        dds(prior, op, y, n_steps=2, tv="x")
