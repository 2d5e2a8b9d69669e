import pytest
import torch
from scipy import stats

from scidiff.bridges import Ball, Box
from scidiff.bridges.prior import (
    ReflectedDiffusionPrior,
    reflected_empirical_score,
    reflected_heat_kernel_log_prob,
    reflected_heat_kernel_score,
)


@pytest.mark.parametrize("sigma", [0.005, 0.1, 0.6, 4.0])
def test_heat_kernel_score_is_the_gradient_of_a_normalised_density(sigma):
    box = Box(torch.full((1,), -1.0), torch.full((1,), 2.0))
    g = torch.Generator().manual_seed(0)
    x = -1 + 3 * torch.rand(40, 1, generator=g, dtype=torch.float64)
    x0 = -1 + 3 * torch.rand(40, 1, generator=g, dtype=torch.float64)
    s = torch.full((40,), sigma, dtype=torch.float64)
    h = 1e-6
    fd = (reflected_heat_kernel_log_prob(x + h, x0, s, box) - reflected_heat_kernel_log_prob(x - h, x0, s, box)) / (2 * h)
    torch.testing.assert_close(reflected_heat_kernel_score(x, x0, s, box), fd, atol=1e-4 / sigma, rtol=1e-5)
    grid = torch.linspace(-1, 2, 30001, dtype=torch.float64)[:, None]
    dens = reflected_heat_kernel_log_prob(grid, torch.full_like(grid, 0.4), torch.full((30001,), sigma, dtype=torch.float64), box).exp()
    assert abs(float(torch.trapezoid(dens[:, 0], grid[:, 0])) - 1.0) < 1e-3


def test_heat_kernel_matches_cosine_series():
    # Neumann eigen-expansion on [0, 1]: p = 1 + 2 sum_n exp(-n^2 pi^2 sigma^2 / 2) cos(n pi x) cos(n pi x0).
    box, sigma = Box(0.0, 1.0), 0.3
    x = torch.linspace(0, 1, 11, dtype=torch.float64)[:, None]
    x0 = torch.full_like(x, 0.2)
    n = torch.arange(1, 40, dtype=torch.float64)
    series = 1 + 2 * (torch.exp(-(n**2) * torch.pi**2 * sigma**2 / 2) * torch.cos(n * torch.pi * x) * torch.cos(n * torch.pi * 0.2)).sum(-1)
    ours = reflected_heat_kernel_log_prob(x, x0, torch.full((11,), sigma, dtype=torch.float64), box).exp()[:, 0]
    torch.testing.assert_close(ours, series, atol=1e-10, rtol=0)


def test_reverse_reflected_sde_with_exact_score_recovers_data_law():
    m, s = 0.8, 0.3
    ref = stats.truncnorm((0 - m) / s, (1 - m) / s, loc=m, scale=s)
    data = torch.tensor(ref.rvs(60, random_state=0))[:, None]
    box = Box(0.0, 1.0)
    prior = ReflectedDiffusionPrior(box, sigma_min=0.02, sigma_max=2.0)
    score = lambda x, t: reflected_empirical_score(x, data, prior.sigma(t), box)  # noqa: E731
    x = prior.sample(300, n_steps=100, generator=torch.Generator().manual_seed(1), progress=False,
                     score_fn=score, dtype=torch.float64)
    assert ((x >= 0) & (x <= 1)).all()
    assert stats.kstest(x[:, 0].numpy(), ref.cdf).pvalue > 0.01


def test_trained_prior_samples_inside_and_learns_the_mean():
    g = torch.Generator().manual_seed(0)
    box = Box(torch.zeros(2), torch.ones(2))
    data = torch.stack([0.85 + 0.1 * torch.rand(3000, generator=g), 0.1 * torch.rand(3000, generator=g)], 1)
    prior = ReflectedDiffusionPrior(box, sigma_max=2.0, hidden=64)
    losses = prior.fit(data, n_iter=250, batch_size=256, generator=g, progress=False)
    assert sum(losses[-50:]) < sum(losses[:50])
    x = prior.sample(500, n_steps=100, generator=g, progress=False)
    assert box.contains(x).all()
    assert (x.mean(0) - data.mean(0)).abs().max() < 0.1


def test_bad_inputs_raise():
    with pytest.raises(TypeError, match="Box"):
        ReflectedDiffusionPrior(Ball(torch.zeros(2), 1.0))
    with pytest.raises(ValueError, match="sigma_min"):
        ReflectedDiffusionPrior(Box(0.0, 1.0), sigma_min=1.0, sigma_max=0.5)
    prior = ReflectedDiffusionPrior(Box(torch.zeros(2), torch.ones(2)))
    with pytest.raises(ValueError, match="outside"):
        prior.fit(torch.full((5, 2), 2.0), n_iter=1, progress=False)
