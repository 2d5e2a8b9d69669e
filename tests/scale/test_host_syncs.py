"""No host-device sync per step in the samplers' loops, counted without a GPU (see host_syncs.py).

The sampler state lives on the meta device, standing in for an accelerator; only reads of it count. Each
sampler runs twice on a tiny oracle problem, with a schedule of 4 and of 8 steps; the syncs of the denoiser
itself are not counted (the oracle validates its input; a network does not on a device). One-time syncs
(validating the start, building the result) are allowed; the count must not grow with the number of steps.
"""


import pytest
import torch

from scidiff.diffusion import karras_sigmas, sample, seeded_generators
from scidiff.inverse import dps, red_diff
from scidiff.kernels.cg import conjugate_gradient
from scidiff.likelihoods import LinearGaussianLikelihood
from scidiff.oracles import GaussianMixture
from scidiff.pde.diffusionpde import PDEResidual, SparseObservation, diffusionpde_likelihood, sample_diffusionpde

from host_syncs import SyncCounter, syncs, to_device

SHAPE = (1, 4, 4)


def mixture():
    g = torch.Generator().manual_seed(0)
    means = torch.randn(2, 16, generator=g, dtype=torch.float64) * 2
    root = torch.randn(2, 16, 16, generator=g, dtype=torch.float64) / 4
    covs = root @ root.transpose(1, 2) + 0.1 * torch.eye(16, dtype=torch.float64)
    return to_device(GaussianMixture(torch.tensor([0.4, 0.6]), means, covs, shape=SHAPE), "meta")


def linear_likelihood():
    g = torch.Generator().manual_seed(1)
    matrix = torch.randn(6, 16, generator=g, dtype=torch.float64)
    y = torch.randn(1, 6, generator=g, dtype=torch.float64)
    return LinearGaussianLikelihood.from_matrix(matrix.to("meta"), y.to("meta"), 0.1, SHAPE)


def pde_likelihood(sigmas):
    mask = torch.zeros(4, 4, dtype=torch.bool)
    mask[::2, ::2] = True
    obs = to_device(SparseObservation(torch.randn(4, 4, generator=torch.Generator().manual_seed(2)), mask), "meta")
    smooth = PDEResidual(lambda s: s[:, 0, 1:] - s[:, 0, :-1])  # a stand-in residual: finite differences
    return diffusionpde_likelihood([(obs, 1.0)], smooth, 0.5, sigmas)


SAMPLERS = {
    "euler": lambda d, s, g: sample(d, (3, *SHAPE), s, sampler="euler", device="meta", progress=False),
    "heun+churn": lambda d, s, g: sample(d, (3, *SHAPE), s, sampler="heun", s_churn=2.0, generator=g, device="meta", progress=False),
    "ddim(eta=1)": lambda d, s, g: sample(d, (3, *SHAPE), s, sampler="ddim", eta=1.0, generator=g, device="meta", progress=False),
    "euler_maruyama": lambda d, s, g: sample(d, (3, *SHAPE), s, sampler="euler_maruyama", generator=g,
                                             device="meta", progress=False),
    "dps": lambda d, s, g: dps(d, linear_likelihood(), (3, *SHAPE), s, generator=g, device="meta", progress=False),
    "dps(annealed)": lambda d, s, g: dps(d, linear_likelihood(), (3, *SHAPE), s, guidance="annealed", generator=g,
                                         device="meta", progress=False),
    "red_diff": lambda d, s, g: red_diff(d, linear_likelihood(), (3, *SHAPE), s, generator=g, device="meta", progress=False),
}


def count(run_sampler, steps, generator):
    sigmas = karras_sigmas(steps, 0.02, 20.0)
    oracle = mixture()

    def run(counter):
        run_sampler(counter.quiet(oracle), sigmas, generator)

    return syncs(run)


@pytest.mark.parametrize("per_sample", [False, True], ids=["one generator", "per-sample generators"])
@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_no_sync_per_step(name, per_sample):
    gens = (lambda: seeded_generators(3)) if per_sample else (lambda: torch.Generator().manual_seed(0))
    short, long = count(SAMPLERS[name], 4, gens()), count(SAMPLERS[name], 8, gens())
    assert len(long) == len(short), f"{name}: {len(long) - len(short)} more syncs for 4 more steps: {long}"


def test_diffusionpde_guidance_has_no_sync_per_step():
    def run(steps):
        sigmas = karras_sigmas(steps, 0.02, 20.0)
        lik = pde_likelihood(sigmas)
        return syncs(lambda c: sample_diffusionpde(c.quiet(mixture()), lik, (3, *SHAPE), sigmas,
                                                   generator=seeded_generators(3), device="meta", progress=False))

    short, long = run(4), run(8)
    assert len(long) == len(short), f"{len(long) - len(short)} more syncs for 4 more steps: {long}"


def test_cg_polls_every_eighth_iteration():
    g = torch.Generator().manual_seed(0)
    m = torch.randn(3, 40, 40, generator=g, dtype=torch.float64)
    spd = m @ m.transpose(1, 2) + 1e-3 * torch.eye(40, dtype=torch.float64)  # ill-conditioned: 64 iterations
    b = torch.randn(3, 40, generator=g, dtype=torch.float64)
    apply = lambda v: (spd @ v[..., None])[..., 0]  # noqa: E731
    # on the CPU with real values (a meta tensor cannot say whether CG has converged): every read counts
    sparse = syncs(lambda c: conjugate_gradient(apply, b, max_iter=64, tol=1e-30), device=None)
    every = syncs(lambda c: conjugate_gradient(apply, b, max_iter=64, tol=1e-30, check_every=1), device=None)
    assert 64 / 8 <= len(sparse) <= 64 / 8 + 2, sparse
    assert len(every) >= 64  # the counter sees them: polling every iteration syncs every iteration


def test_counter_sees_each_kind_of_host_read():
    x = torch.randn(5)
    with SyncCounter(device=None) as c:
        x.sum().item(), bool(x[0] > 0), float(x[1]), int(x[2] > 0), x.tolist(), x.numpy()
        x[x > 0], x.nonzero(), torch.equal(x, x)
        _ = x + 1  # not a sync
    assert [op for op, _ in c.events] == ["_local_scalar_dense"] * 4 + ["tolist", "numpy", "index", "nonzero",
                                                                          "equal"]


def test_a_network_prior_on_the_device_adds_no_sync():
    """The whole path, network included: a DiffusionPrior (UNet) skips its CPU-only input checks on a device."""
    from test_runtime import tiny_prior

    prior = tiny_prior().to("meta")
    for steps in (4, 8):
        events = syncs(lambda c: sample(prior, (2, 1, 8, 8), karras_sigmas(steps, 0.02, 20.0),
                                        generator=seeded_generators(2), device="meta", progress=False))
        assert len(events) == 1 and "diffusion/samplers.py" in events[0][1], events  # the check of x_T
