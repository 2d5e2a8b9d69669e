import math

import pytest
import torch

from conftest import SHAPES, smooth_mixture
from scidiff.diffusion import karras_sigmas, sample, seeded_generators

# (sampler, steps, extra kwargs): step counts where discretisation error is well below the tolerances.
CASES = [
    ("euler", 60, {}),
    ("heun", 24, {}),
    ("heun", 48, {"s_churn": 10.0}),
    ("ddim", 60, {"eta": 0.5}),
    ("ancestral", 100, {}),
    ("euler_maruyama", 150, {}),
]


def _cov_error(gm, x):
    """Relative Frobenius error of the dominant component's covariance, and the hard-assigned weights."""
    flat = x.reshape(x.shape[0], -1).double()
    assign = gm.responsibilities(x.double(), 0.0).argmax(1)
    cov = torch.cov(flat[assign == 1].T)
    return torch.linalg.norm(cov - gm.covs[1]) / torch.linalg.norm(gm.covs[1]), assign


def _check_against_target(gm, x):
    n = x.shape[0]
    err, assign = _cov_error(gm, x)
    w0 = (assign == 0).double().mean()
    assert abs(w0 - gm.weights[0]) < 4 * math.sqrt(0.3 * 0.7 / n) + 0.01, w0
    # Mean: the separation is 6, within-component std <= 0.75.
    assert (x.reshape(n, -1).double().mean(0) - gm.mean()).abs().max() < 0.3
    # Covariance: the finite-sample error of exact samples of the same size sets the bar.
    floor, _ = _cov_error(gm, gm.sample(n, torch.Generator().manual_seed(99)))
    assert err < 1.25 * floor + 0.02, (float(err), float(floor))


@pytest.mark.parametrize("shape", SHAPES, ids=["1d", "2d", "3d"])
@pytest.mark.parametrize("name,steps,kwargs", CASES, ids=[c[0] + "".join(f"-{k}" for k in c[2]) for c in CASES])
def test_sampler_reproduces_mixture(shape, name, steps, kwargs):
    gm = smooth_mixture(shape)
    n = 600 if len(shape) == 4 else 1500
    g = torch.Generator().manual_seed(1)
    sigmas = karras_sigmas(steps, 0.002, 80.0)
    x = sample(gm, (n, *shape), sigmas, sampler=name, generator=g, progress=False, **kwargs)
    assert x.shape == (n, *shape) and torch.isfinite(x).all()
    _check_against_target(gm, x)


@pytest.mark.parametrize("name", ["heun", "ddim", "ancestral", "euler_maruyama"])
def test_per_sample_seeds_do_not_depend_on_batch_size(name):
    gm = smooth_mixture((1, 8))
    sigmas = karras_sigmas(8)
    kw = {"s_churn": 5.0} if name == "heun" else {}
    big = sample(gm, (5, 1, 8), sigmas, sampler=name, generator=seeded_generators([3, 4, 5, 6, 7]), progress=False, **kw)
    small = sample(gm, (2, 1, 8), sigmas, sampler=name, generator=seeded_generators([3, 4]), progress=False, **kw)
    assert torch.allclose(big[:2], small, atol=1e-5)


def test_callback_sees_every_step_and_nothing_is_kept():
    gm = smooth_mixture((1, 8))
    seen = []
    sample(gm, (2, 1, 8), karras_sigmas(5), sampler="heun", progress=False, callback=lambda d: seen.append(sorted(d)))
    assert len(seen) == 5 and seen[0] == ["denoised", "i", "sigma", "sigma_hat", "x"]


def test_heun_nfe():
    gm = smooth_mixture((1, 8))
    calls = []

    def counting(x, sigma):
        calls.append(1)
        return gm(x, sigma)

    sample(counting, (2, 1, 8), karras_sigmas(10), sampler="heun", progress=False)
    assert len(calls) == 2 * 10 - 1


def test_bad_inputs():
    gm = smooth_mixture((1, 8))
    from scidiff.diffusion import sample_euler

    x = torch.randn(2, 1, 8)
    x[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        sample_euler(gm, x, karras_sigmas(3), progress=False)
    with pytest.raises(ValueError, match="strictly decreasing"):
        sample_euler(gm, torch.randn(2, 1, 8), torch.tensor([1.0, 2.0, 0.0]), progress=False)
    with pytest.raises(ValueError, match="unknown sampler"):
        sample(gm, (2, 1, 8), karras_sigmas(3), sampler="nope")
    with pytest.raises(ValueError, match="expected x of shape"):
        gm(torch.randn(2, 1, 9), 1.0)
