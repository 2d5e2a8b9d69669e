"""GPU-path options tested on CPU: autocast with float32 state, torch.compile, and no host syncs where promised."""

import pytest
import torch

from scidiff.diffusion import karras_sigmas, sample, seeded_generators
from scidiff.kernels.cg import conjugate_gradient
from scidiff.priors import DiffusionPrior


def tiny_prior():
    torch.manual_seed(0)
    prior = DiffusionPrior([1, 8, 8], network_kwargs={"base_channels": 8, "channel_mults": [1, 2]}, ema_decay=0)
    for p in prior.parameters():  # non-zero output layers: the network's output matters
        p.data.add_(0.05 * torch.randn_like(p))
    return prior.eval()


def test_bf16_autocast_keeps_float32_state_and_stays_close():
    prior = tiny_prior()
    sigmas = karras_sigmas(6, 0.01, 10.0)
    full = sample(prior, (3, 1, 8, 8), sigmas, generator=seeded_generators(3), progress=False)
    prior.set_runtime("bf16")
    x = torch.randn(3, 1, 8, 8)
    assert prior(x, 1.0).dtype == torch.float32
    low = sample(prior, (3, 1, 8, 8), sigmas, generator=seeded_generators(3), progress=False)
    assert low.dtype == torch.float32
    err = (low - full).norm() / full.norm()
    assert 0 < err < 0.05, err  # bf16 matmuls change the result a little, not a lot
    prior.set_runtime(None)
    torch.testing.assert_close(sample(prior, (3, 1, 8, 8), sigmas, generator=seeded_generators(3), progress=False), full)
    with pytest.raises(ValueError, match="precision must be one of"):
        prior.set_runtime("int8")


def test_compiled_network_gives_the_same_denoiser():
    prior = tiny_prior()
    x, sigma = torch.randn(2, 1, 8, 8), torch.tensor([0.5, 2.0])
    ref = prior(x, sigma)
    prior.set_runtime(compile={"backend": "eager"})  # the graph capture path without a C compiler
    torch.testing.assert_close(prior(x, sigma), ref)


def test_cg_checks_convergence_every_few_iterations_with_the_same_answer():
    g = torch.Generator().manual_seed(0)
    m = torch.randn(4, 6, 6, generator=g, dtype=torch.float64)
    spd = m @ m.transpose(1, 2) + 0.1 * torch.eye(6, dtype=torch.float64)
    spd[0] = torch.eye(6, dtype=torch.float64)  # converges at once; must stay put while the others iterate
    b = torch.randn(4, 6, generator=g, dtype=torch.float64)
    apply = lambda v: (spd @ v[..., None])[..., 0]  # noqa: E731
    exact = torch.linalg.solve(spd, b)
    every = conjugate_gradient(apply, b, max_iter=60, tol=1e-10, check_every=1)
    sparse = conjugate_gradient(apply, b, max_iter=60, tol=1e-10, check_every=8)
    torch.testing.assert_close(every, sparse, rtol=0, atol=0)
    torch.testing.assert_close(sparse, exact, rtol=1e-7, atol=1e-9)


def test_sigma_checks_stay_on_the_host():
    prior = tiny_prior()
    with pytest.raises(ValueError, match="finite and non-negative"):
        prior(torch.randn(2, 1, 8, 8), torch.tensor([1.0, -1.0]))
    # a device tensor is not read back: nothing to check here without a GPU, but a meta tensor proves no read
    from scidiff.diffusion._utils import as_sigma_batch

    x = torch.empty(2, 3, device="meta")
    assert as_sigma_batch(torch.empty(2, device="meta"), x).device.type == "meta"
