import pytest
import torch
from torch import nn

from scidiff.diffusion import EDMPrecond, edm_loss, edm_scalings
from scidiff.oracles import Gaussian


class Zero(nn.Module):
    def forward(self, x, c_noise):
        assert c_noise.shape == (x.shape[0],)
        return torch.zeros_like(x)


def test_scalings_limits():
    c_skip, c_out, c_in, _ = edm_scalings(torch.tensor([1e-6, 1e6]), 0.5)
    assert c_skip[0] == pytest.approx(1.0) and c_skip[1] == pytest.approx(0.0, abs=1e-9)
    assert c_out[1] == pytest.approx(0.5, rel=1e-6)
    assert c_in[0] == pytest.approx(2.0, rel=1e-6)


def test_precond_with_zero_net_is_the_gaussian_denoiser():
    # F = 0 gives D = c_skip x = sigma_d^2/(sigma^2 + sigma_d^2) x: exact for N(0, sigma_d^2).
    sd = 0.7
    den = EDMPrecond(Zero(), sigma_data=sd)
    oracle = Gaussian(torch.zeros(5), torch.tensor(sd**2), shape=(5,))
    x = torch.randn(4, 5)
    sigma = torch.tensor([0.1, 1.0, 3.0, 10.0])
    assert torch.allclose(den(x, sigma), oracle(x, sigma), atol=1e-6)


def test_precond_rejects_bad_sigma_shape():
    den = EDMPrecond(Zero())
    with pytest.raises(ValueError, match="sigma must be a scalar or have shape"):
        den(torch.randn(3, 2), torch.ones(3, 1))


def test_edm_loss_is_zero_mean_for_exact_denoiser_and_per_item():
    sd = 0.5
    oracle = Gaussian(torch.zeros(8), torch.tensor(sd**2), shape=(8,))
    g = torch.Generator().manual_seed(0)
    x0 = oracle.sample(4096, g)
    loss_exact = edm_loss(oracle, x0, sigma_data=sd, generator=g)
    loss_bad = edm_loss(lambda x, s: x * 0, x0, sigma_data=sd, generator=g)
    assert loss_exact.shape == (4096,)
    # The exact denoiser attains the Bayes risk: with EDM weighting that is 1 per dim for N(0, sd^2)... of c_out-normalised error.
    assert loss_exact.mean() < loss_bad.mean()
    assert loss_exact.mean() == pytest.approx(1.0, rel=0.05)
