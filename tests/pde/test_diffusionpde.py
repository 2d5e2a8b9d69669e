"""DiffusionPDE sampler against an exact Gaussian prior of a linear PDE (Poisson), whose posterior given
point observations is known in closed form."""

import pytest
import torch

from scidiff.diffusion import karras_sigmas, randn, sample_heun, seeded_generators
from scidiff.pde.diffusionpde import (
    ChannelAffine,
    PDEResidual,
    SparseObservation,
    diffusionpde_likelihood,
    joint_residual,
    random_mask,
    sample_diffusionpde,
    step_weight,
)

N = 10  # the grid of the `poisson` fixture (tests/conftest.py)
STEPS = 60



def _rel(aff, x, truth, c):
    p = aff.to_physical(x)[:, c]
    return ((p - truth[:, c]).flatten(1).norm(dim=1) / truth[:, c].norm()).mean().item()


def _run(prior, lik, steps=STEPS, n=6, seed=0):
    gen = torch.Generator().manual_seed(seed)
    sig = karras_sigmas(steps)
    return sample_diffusionpde(prior, lik, (n, 2, N, N), sig, generator=gen, progress=False, dtype=torch.float64)


def test_observation_guidance_approaches_the_exact_posterior(poisson):
    prior, aff, truth, mask, obs = poisson
    sig = karras_sigmas(STEPS)
    guided = _run(prior, diffusionpde_likelihood([(obs, 30.0)], None, 0.0, sig)).samples
    unguided = _run(prior, 0.0 * obs).samples
    # Exact posterior mean for noiseless point observations of a (forward problem: a observed, u wanted).
    idx = torch.nonzero(mask.flatten()).flatten()
    A = torch.zeros(len(idx), 2 * N * N, dtype=torch.float64)
    A[torch.arange(len(idx)), idx] = 1.0
    y = aff.to_normalised(truth)[0, 0].flatten()[idx]
    exact = prior.posterior(A, y, 1e-3).mean().reshape(1, 2, N, N)
    e_exact = _rel(aff, exact, truth, 1)
    e_guided = _rel(aff, guided.mean(0, keepdim=True), truth, 1)
    e_prior = _rel(aff, unguided, truth, 1)
    assert e_guided < 1.3 * e_exact, (e_guided, e_exact)
    assert _rel(aff, guided, truth, 1) < 0.3 * e_prior
    # The observed points are (nearly) matched.
    assert obs.energy(guided).mean() < 0.1 * obs.energy(unguided).mean()


def test_inverse_guidance_recovers_the_coefficient(poisson):
    """Observe u, infer a. The weight is set in normalised units (divided by u's physical scale)."""
    prior, aff, truth, mask, _ = poisson
    obs_u = SparseObservation(truth[0, 1], mask, channel=1, transform=aff.to_physical)
    zeta_u = 10.0 / float(1 / aff.scale[1])
    guided = _run(prior, diffusionpde_likelihood([(obs_u, zeta_u)], None, 0.0, karras_sigmas(STEPS))).samples
    idx = N * N + torch.nonzero(mask.flatten()).flatten()
    A = torch.zeros(len(idx), 2 * N * N, dtype=torch.float64)
    A[torch.arange(len(idx)), idx] = 1.0
    exact = prior.posterior(A, aff.to_normalised(truth).flatten()[idx], 1e-3).mean().reshape(1, 2, N, N)
    e_guided = _rel(aff, guided.mean(0, keepdim=True), truth, 0)
    assert e_guided < 1.4 * _rel(aff, exact, truth, 0)
    assert _rel(aff, guided, truth, 0) < 0.6 * _rel(aff, _run(prior, 0.0 * obs_u).samples, truth, 0)


def test_pde_guidance_reduces_the_residual(poisson):
    prior, aff, truth, mask, obs = poisson
    sig = karras_sigmas(STEPS)
    pde = PDEResidual(joint_residual("poisson"), aff.to_physical)
    res = lambda x: pde.energy(x).mean().item()  # noqa: E731
    without = _run(prior, diffusionpde_likelihood([(obs, 30.0)], pde, 0.0, sig)).samples
    with_pde = _run(prior, diffusionpde_likelihood([(obs, 30.0)], pde, 1.0, sig)).samples
    assert res(with_pde) < 0.3 * res(without), (res(with_pde), res(without))
    assert _rel(aff, with_pde, truth, 1) < 1.05 * _rel(aff, without, truth, 1)
    assert res(aff.to_normalised(truth)) < 1e-3 * res(without)


def test_zero_guidance_is_the_edm_heun_sampler(poisson):
    prior = poisson[0]
    sig = karras_sigmas(12)
    post = sample_diffusionpde(
        prior, 0.0 * poisson[4], (3, 2, N, N), sig, generator=torch.Generator().manual_seed(5), progress=False
    )
    x0 = randn((3, 2, N, N), torch.Generator().manual_seed(5)) * float(sig[0])
    ref = sample_heun(prior, x0, sig, progress=False)
    assert torch.allclose(post.samples, ref, atol=1e-5)
    assert post.info["nfe"] == 2 * 12 - 1 and post.info["method"] == "diffusionpde"


def test_per_sample_seeds_do_not_depend_on_batch_size(poisson):
    prior, obs = poisson[0], poisson[4]
    sig = karras_sigmas(6)
    lik = diffusionpde_likelihood([(obs, 3.0)], None, 0.0, sig)
    big = sample_diffusionpde(prior, lik, (4, 2, N, N), sig, generator=seeded_generators([1, 2, 3, 4]), progress=False)
    small = sample_diffusionpde(prior, lik, (2, 2, N, N), sig, generator=seeded_generators([1, 2]), progress=False)
    assert torch.allclose(big.samples[:2], small.samples, atol=1e-5)


def test_step_schedule_matches_the_paper():
    sig = karras_sigmas(10)  # N = 10 steps: i <= 8 early, i = 9 late
    w_obs = step_weight(sig, 5.0, early=1.0, late=0.1)
    w_pde = step_weight(sig, 100.0, early=0.0, late=1.0)
    got = [(float(w_obs(torch.tensor([s]))), float(w_pde(torch.tensor([s])))) for s in sig[:-1]]
    assert got[:9] == [(5.0, 0.0)] * 9 and got[9] == pytest.approx((0.5, 100.0))
    obs = SparseObservation(torch.zeros(4, 4), torch.eye(4, dtype=torch.bool))
    pde = PDEResidual(lambda s: s[:, 0, 1:-1, 1:-1])
    lik = diffusionpde_likelihood([(obs, 5.0)], pde, 100.0, sig)
    x = torch.ones(1, 1, 4, 4)
    early, late = lik.energy(x, torch.tensor([float(sig[0])])), lik.energy(x, torch.tensor([float(sig[9])]))
    assert early.item() == pytest.approx(5.0 * 2.0)  # ||ones on the diagonal|| = 2
    assert late.item() == pytest.approx(0.5 * 2.0 + 100.0 * 2.0 / 4)


def test_channel_affine_round_trip_and_errors():
    aff = ChannelAffine([0.2, 115.0], [-1.5, -0.9])  # DiffusionPDE's Darcy normalisation
    x = torch.randn(2, 2, 5, 5)
    assert torch.allclose(aff.to_physical(aff.to_normalised(x)), x, atol=1e-5)
    with pytest.raises(ValueError, match="channels"):
        aff.to_physical(torch.zeros(2, 3, 5, 5))
    with pytest.raises(ValueError, match="non-zero"):
        ChannelAffine([0.0], [0.0])


def test_bad_observations_raise():
    with pytest.raises(ValueError, match="outside the grid"):
        SparseObservation.from_points(torch.tensor([[0, 1], [4, 2]]), torch.tensor([1.0, 2.0]), (4, 4))
    with pytest.raises(ValueError, match="outside the grid"):
        SparseObservation.from_points(torch.tensor([[-1, 1]]), torch.tensor([1.0]), (4, 4))
    with pytest.raises(ValueError, match="NaN"):
        SparseObservation.from_points(torch.tensor([[0, 1]]), torch.tensor([float("nan")]), (4, 4))
    with pytest.raises(ValueError, match="integer"):
        SparseObservation.from_points(torch.tensor([[0.5, 1.0]]), torch.tensor([1.0]), (4, 4))
    with pytest.raises(ValueError, match="observes nothing"):
        SparseObservation(torch.zeros(4, 4), torch.zeros(4, 4, dtype=torch.bool))
    values = torch.zeros(4, 4)
    values[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        SparseObservation(values, torch.ones(4, 4, dtype=torch.bool))
    # NaN off the mask is fine (unobserved).
    mask = torch.zeros(4, 4, dtype=torch.bool)
    mask[1, 1] = True
    assert SparseObservation(values, mask).energy(torch.zeros(1, 1, 4, 4)).item() == 0.0
    with pytest.raises(TypeError, match="boolean"):
        SparseObservation(values, mask.float())
    with pytest.raises(ValueError, match="channel"):
        SparseObservation(torch.zeros(4, 4), mask, channel=2).energy(torch.zeros(1, 2, 4, 4))
    with pytest.raises(ValueError, match="nothing to guide"):
        diffusionpde_likelihood([], None, 0.0, karras_sigmas(4))
    with pytest.raises(ValueError, match="unknown PDE"):
        joint_residual("kdv")
    with pytest.raises(ValueError, match="dt"):
        joint_residual("navier_stokes")
    with pytest.raises(ValueError, match="exactly one"):
        random_mask((4, 4))
    with pytest.raises(ValueError, match="n_points"):
        random_mask((4, 4), 17)


def test_random_mask_counts_and_reproducibility():
    m = random_mask((128, 128), 500, generator=torch.Generator().manual_seed(0))
    assert m.sum() == 500 and m.dtype == torch.bool
    assert torch.equal(m, random_mask((128, 128), 500, generator=torch.Generator().manual_seed(0)))
    assert random_mask((10, 10), fraction=0.03).sum() == 3


def test_stacked_observations_score_each_item_against_its_own_set():
    n = 5
    masks = [random_mask((n, n), 4, generator=torch.Generator().manual_seed(s)) for s in (0, 1)]
    values = [torch.randn(n, n, generator=torch.Generator().manual_seed(s), dtype=torch.float64) for s in (2, 3)]
    single = [SparseObservation(v, m, channel=1) for v, m in zip(values, masks)]
    stacked = SparseObservation.stack(single, repeats=3)
    x = torch.randn(6, 2, n, n, dtype=torch.float64)
    expected = torch.cat([single[0].energy(x[:3]), single[1].energy(x[3:])])
    assert torch.allclose(stacked.energy(x), expected)
    with pytest.raises(ValueError, match="stacked observation sets"):
        stacked.energy(x[:4])
    with pytest.raises(ValueError, match="share the channel"):
        SparseObservation.stack([single[0], SparseObservation(values[0], masks[0], channel=0)])


def test_a_diverging_run_names_the_first_non_finite_step():
    from scidiff.diffusion import karras_sigmas
    from scidiff.oracles import Gaussian
    from scidiff.pde.diffusionpde import sample_diffusionpde

    class Exploding:  # a guidance term whose gradient is NaN on the last step
        def __init__(self):
            self.calls = 0

        def energy(self, x0, sigma):
            self.calls += 1
            return x0.flatten(1).sum(1) * (float("nan") if self.calls == 6 else 0.0)

    prior = Gaussian(torch.zeros(4), torch.eye(4), shape=(1, 2, 2))
    with pytest.raises(ValueError, match="non-finite .* at step 5 of 6"):
        sample_diffusionpde(prior, Exploding(), (2, 1, 2, 2), karras_sigmas(6, 0.02, 20.0), progress=False,
                            generator=torch.Generator().manual_seed(0))
