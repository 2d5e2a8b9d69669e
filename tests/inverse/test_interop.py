import pytest
import torch

dinv = pytest.importorskip("deepinv")

from conftest import smooth_mixture  # noqa: E402
from scidiff.diffusion import ddpm_sigmas, seeded_generators  # noqa: E402
from scidiff.inverse import dps, from_deepinv, to_deepinv  # noqa: E402
from scidiff.likelihoods import LinearGaussianLikelihood, from_physics  # noqa: E402
from scidiff.oracles import GaussianMixture  # noqa: E402

SHAPE = (1, 4, 4)
LO, HI = -4.0, 4.0


def _unit_mixture(gm):
    """The same prior expressed in deepinv's [0, 1] units: x01 = (x - lo) / (hi - lo)."""
    scale = HI - LO
    return GaussianMixture(gm.weights, (gm.means - LO) / scale, gm.covs / scale**2, shape=gm.shape)


def test_wrapped_oracle_is_the_exact_denoiser_in_deepinv_units():
    gm = smooth_mixture(SHAPE)
    den = to_deepinv(gm, (LO, HI))
    assert isinstance(den, dinv.models.Denoiser)
    x = torch.rand(3, *SHAPE, dtype=torch.float64)
    for sigma in (0.05, torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64)):
        assert torch.allclose(den(x, sigma), _unit_mixture(gm)(x, sigma), atol=1e-12)
    back = from_deepinv(den, (LO, HI))
    z = torch.randn(3, *SHAPE, dtype=torch.float64)
    assert torch.allclose(back(z, torch.full((3,), 0.7, dtype=torch.float64)), gm(z, 0.7), atol=1e-12)


def _deepinv_problem(n):
    gm01 = _unit_mixture(smooth_mixture(SHAPE))
    g = torch.Generator().manual_seed(1)
    mask = (torch.rand(1, *SHAPE, generator=g) < 0.4).float()
    sigma_y = 0.1 / (HI - LO)
    physics = dinv.physics.Inpainting(img_size=SHAPE, mask=mask, noise_model=dinv.physics.GaussianNoise(sigma_y))
    x_true = gm01.sample(1, torch.Generator().manual_seed(3))
    y = physics.A(x_true) + sigma_y * torch.randn(x_true.shape, generator=g)
    observed = mask.reshape(-1).nonzero().squeeze(1)
    exact = gm01.posterior(torch.eye(16, dtype=torch.float64)[observed], y.reshape(-1)[observed], sigma_y)
    return physics, y.expand(n, *SHAPE).clone(), exact, observed


def test_deepinv_samplers_run_a_scidiff_prior():
    """deepinv's DPS with the wrapped exact oracle lands on the closed-form posterior mean (measured ~0.02)."""
    n = 64
    physics, y, exact, observed = _deepinv_problem(n)
    den = to_deepinv(smooth_mixture(SHAPE), (LO, HI))
    out = dinv.sampling.DPS(den, num_steps=100, weight=100.0, dtype=torch.float64,
                           rng=torch.Generator().manual_seed(0))(y, physics)
    err = (out.reshape(n, -1).double().mean(0) - exact.mean()).norm() / exact.mean().norm()
    assert err < 0.06, err
    # DiffPIR and DDRM (inpainting is decomposable) run on it and honour the observed pixels
    torch.manual_seed(0)
    for sampler in (dinv.sampling.DiffPIR(den, dinv.optim.data_fidelity.L2(), sigma=physics.noise_model.sigma.item()),
                    dinv.sampling.DDRM(den)):
        out = sampler(y, physics).reshape(n, -1)
        misfit = (out[:, observed] - y.reshape(n, -1)[:, observed]).abs().mean()
        assert out.shape == (n, 16) and misfit < 0.05, (type(sampler).__name__, misfit)


def test_scidiff_dps_runs_a_deepinv_denoiser():
    """deepinv's closed-form MMSE denoiser of an empirical (Dirac-mixture) prior is exact, with its own VJP, so
    scidiff DPS with it must give the samples DPS gives with scidiff's own oracle for the same atoms."""
    g = torch.Generator().manual_seed(0)
    atoms01 = torch.rand(5, *SHAPE, generator=g, dtype=torch.float64)
    prior = from_deepinv(dinv.models.MMSE(atoms01, device=torch.device("cpu"), dtype=torch.float64), (LO, HI))
    oracle = GaussianMixture(torch.ones(5), LO + (HI - LO) * atoms01, torch.zeros(5), shape=SHAPE)
    physics = dinv.physics.Inpainting(img_size=SHAPE, mask=0.5, rng=torch.Generator().manual_seed(2))
    physics = physics.to(torch.float64)
    y = physics.A(oracle.means[2].reshape(1, *SHAPE)) + 0.05 * torch.randn(1, *SHAPE, generator=g, dtype=torch.float64)
    lik = from_physics(physics, y, 0.05)
    assert isinstance(lik, LinearGaussianLikelihood)
    kw = dict(zeta=0.3, dtype=torch.float64, progress=False)
    ours = dps(oracle, lik, (4, *SHAPE), ddpm_sigmas(30), generator=seeded_generators(4), **kw)
    theirs = dps(prior, lik, (4, *SHAPE), ddpm_sigmas(30), generator=seeded_generators(4), **kw)
    assert torch.allclose(theirs.samples, ours.samples, atol=1e-6)
    # and the answer is the observed atom (the exact posterior puts ~all mass on it)
    assert torch.allclose(theirs.samples, oracle.means[2].reshape(1, *SHAPE).expand(4, *SHAPE), atol=0.05)


def test_errors():
    with pytest.raises(ValueError, match="hi > lo"):
        to_deepinv(smooth_mixture(SHAPE), (1.0, 0.0))
    with pytest.raises(TypeError, match="pair"):
        from_deepinv(dinv.models.MMSE(torch.rand(2, *SHAPE)), 1.0)
    with pytest.raises(TypeError, match="callable"):
        from_deepinv(3.0, (0.0, 1.0))


def test_deepinv_is_imported_only_by_the_adapters():
    import pathlib
    import subprocess
    import sys

    root = pathlib.Path(__file__).resolve().parents[2]
    code = ("import sys, scidiff.inverse, scidiff.likelihoods; assert 'deepinv' not in sys.modules; "
            "scidiff.inverse.to_deepinv; assert 'deepinv' in sys.modules")
    subprocess.run([sys.executable, "-c", code], cwd=root, check=True)
