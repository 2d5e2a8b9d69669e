import pytest
import torch

from scidiff.diffusion import seeded_generators
from scidiff.inverse import diffusion_mbir, fbp

from volume_problem import best_admm_tv_mse, grf_volume_problem, mse


@pytest.fixture(scope="module")
def problem():
    return grf_volume_problem(n_views=4)


def test_mbir_with_oracle_prior_beats_admm_tv(problem):
    prior, op, x, y = problem
    best_tv = best_admm_tv_mse()
    n = 6  # posterior samples of the same measurement; their mean estimates E[x | y]
    post = diffusion_mbir(prior, op, y.expand(n, -1, -1, -1, -1), n_steps=60, sigma_max=20.0,
                          generator=seeded_generators(range(n)))
    assert post.samples.shape == (n, *x.shape[1:])
    assert mse(post.mean(), x) < 0.9 * best_tv < mse(fbp(op, y), x)
    assert post.info["nfe_per_slice"] == 2 * 60 - 1  # predictor + corrector, no corrector at sigma = 0


def test_mbir_seeded_per_volume(problem):
    prior, op, x, y = problem
    kw = dict(n_steps=5, sigma_max=20.0)
    both = diffusion_mbir(prior, op, y.expand(2, -1, -1, -1, -1), generator=seeded_generators([3, 4]), **kw).samples
    alone = diffusion_mbir(prior, op, y, generator=seeded_generators([4]), **kw).samples
    torch.testing.assert_close(both[1:], alone, atol=1e-4, rtol=1e-4)


def test_max_slices_does_not_change_the_result(problem):
    prior, op, x, y = problem
    kw = dict(n_steps=4, sigma_max=20.0)
    a = diffusion_mbir(prior, op, y, max_slices=3, generator=torch.Generator().manual_seed(0), **kw).samples
    b = diffusion_mbir(prior, op, y, max_slices=64, generator=torch.Generator().manual_seed(0), **kw).samples
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_errors(problem):
    prior, op, x, y = problem
    with pytest.raises(ValueError, match="max_slices"):
        diffusion_mbir(prior, op, y, n_steps=2, max_slices=0)
    with pytest.raises(ValueError, match="sigma_min < sigma_max"):
        diffusion_mbir(prior, op, y, n_steps=2, sigma_min=5.0, sigma_max=1.0)
