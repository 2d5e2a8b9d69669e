import pytest
import torch
from scipy import stats

from scidiff.bridges import Box, reflected_euler_maruyama
from scidiff.diffusion import seeded_generators

M, S = 0.8, 0.3
TRUNC = stats.truncnorm((0 - M) / S, (1 - M) / S, loc=M, scale=S)


def _langevin(boundary, n=8000, seed=0):
    # dX = grad log N(M, S^2) dt + sqrt(2) dW on [0, 1]: reflected, its stationary law is the truncated Gaussian.
    g = torch.Generator().manual_seed(seed)
    x0 = torch.rand(n, 1, generator=g, dtype=torch.float64)
    return reflected_euler_maruyama(lambda x, t: -(x - M) / S**2, x0, Box(0.0, 1.0), diffusion=2**0.5,
                                    t1=1.5, n_steps=1000, boundary=boundary, generator=g, progress=False)


def test_reflected_langevin_matches_truncated_gaussian_and_clamping_does_not():
    x = _langevin("reflect")
    assert ((x >= 0) & (x <= 1)).all()
    assert stats.kstest(x[:, 0].numpy(), TRUNC.cdf).pvalue > 0.05
    clamped = _langevin("clamp")
    # Projection puts an atom on the boundary (about 4% of the mass at x = 1).
    assert (clamped == 1.0).float().mean() > 0.02
    assert stats.kstest(clamped[:, 0].numpy(), TRUNC.cdf).pvalue < 1e-6


def test_per_sample_generators_make_paths_batch_independent():
    box = Box(torch.zeros(2), torch.ones(2))
    x = torch.full((4, 2), 0.5)
    kw = dict(diffusion=0.7, n_steps=20, progress=False)
    full = reflected_euler_maruyama(None, x, box, generator=seeded_generators([0, 1, 2, 3]), **kw)
    part = reflected_euler_maruyama(None, x[2:], box, generator=seeded_generators([2, 3]), **kw)
    torch.testing.assert_close(full[2:], part)


def test_backward_time_and_callback():
    seen = []
    out = reflected_euler_maruyama(lambda x, t: torch.ones_like(x), torch.zeros(3, 1), None, diffusion=0.0,
                                   t0=1.0, t1=0.0, n_steps=10, progress=False, callback=lambda d: seen.append(d["t"]))
    torch.testing.assert_close(out, -torch.ones(3, 1))  # drift 1 integrated over dt = -1
    assert len(seen) == 10 and abs(seen[-1]) < 1e-12


def test_bad_inputs_raise():
    box = Box(0.0, 1.0)
    with pytest.raises(ValueError, match="outside"):
        reflected_euler_maruyama(None, torch.full((2, 1), 3.0), box, progress=False)
    with pytest.raises(ValueError, match="boundary"):
        reflected_euler_maruyama(None, torch.full((2, 1), 0.5), box, boundary="wrap", progress=False)
    with pytest.raises(ValueError, match="non-finite"):
        reflected_euler_maruyama(None, torch.full((2, 1), float("nan")), box, progress=False)
    with pytest.raises(ValueError, match="n_steps"):
        reflected_euler_maruyama(None, torch.full((2, 1), 0.5), box, n_steps=0, progress=False)
    with pytest.raises(ValueError, match="monotone"):
        reflected_euler_maruyama(None, torch.full((2, 1), 0.5), box, times=torch.tensor([0.0, 0.5, 0.2]), progress=False)
