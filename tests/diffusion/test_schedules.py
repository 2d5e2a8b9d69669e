import pytest
import torch

from scidiff.diffusion import (
    alpha_bar_from_sigma,
    ddpm_alpha_bars,
    ddpm_sigmas,
    karras_sigmas,
    sigma_from_alpha_bar,
    vp_sigma,
    vp_t,
)


def test_karras_endpoints_and_order():
    s = karras_sigmas(18, 0.002, 80.0)
    assert s.shape == (19,)
    assert s[0] == pytest.approx(80.0) and s[-2] == pytest.approx(0.002) and s[-1] == 0
    assert (s[1:] < s[:-1]).all()


def test_karras_rejects_bad_range():
    with pytest.raises(ValueError, match="sigma_min"):
        karras_sigmas(10, 1.0, 0.5)


def test_vp_roundtrips():
    t = torch.linspace(1e-3, 1, 50, dtype=torch.float64)
    assert torch.allclose(vp_t(vp_sigma(t)), t, atol=1e-10)
    sig = torch.logspace(-3, 2, 20, dtype=torch.float64)
    assert torch.allclose(sigma_from_alpha_bar(alpha_bar_from_sigma(sig)), sig, rtol=1e-10)


def test_ddpm_sigmas_match_alpha_bars():
    s = ddpm_sigmas(10)
    ab = ddpm_alpha_bars()
    assert s.shape == (11,) and s[-1] == 0
    # first entry is timestep 900 (descending), last non-zero is timestep 0
    assert s[0] == pytest.approx(float(sigma_from_alpha_bar(ab[900])))
    assert s[-2] == pytest.approx(float(sigma_from_alpha_bar(ab[0])))
