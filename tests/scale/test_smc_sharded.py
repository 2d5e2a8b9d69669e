"""Sharded SMC: particles split across 2 gloo processes, global resampling, same posterior as one process."""

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from scidiff.diffusion import karras_sigmas, seeded_generators
from scidiff.inverse import afdps, tds
from scidiff.kernels.particles import ParticleGenerators, sharded_resample_if
from scidiff.likelihoods import LinearGaussianLikelihood
from scidiff.oracles import GaussianMixture

K, WORLD = 8, 2
SAMPLERS = {"afdps": (afdps, {"ess_threshold": 0.9}), "tds": (tds, {})}


def problem():
    means = torch.tensor([[-1.0, 0.5], [1.0, -0.25]])
    covs = torch.tensor([[[0.3, 0.1], [0.1, 0.2]], [[0.25, -0.05], [-0.05, 0.3]]])
    prior = GaussianMixture(torch.tensor([0.4, 0.6]), means, covs)
    y = torch.tensor([[0.3]], dtype=torch.float64)
    return prior, LinearGaussianLikelihood.from_matrix(torch.tensor([[1.0, 0.5]]), y, 0.3, prior.shape)


def run(name, seeds, group=None):
    prior, lik = problem()
    fn, kwargs = SAMPLERS[name]
    gens = ParticleGenerators(seeded_generators(seeds), torch.Generator().manual_seed(99), group)
    return fn(prior, lik, (len(seeds), *prior.shape), karras_sigmas(12, 0.01, 10.0), generator=gens, progress=False,
              dtype=torch.float64, **kwargs)


def _worker(rank, path, out):
    dist.init_process_group("gloo", init_method=f"file://{path}", rank=rank, world_size=WORLD)
    torch.set_num_threads(1)
    n = K // WORLD
    results = {}
    for name in SAMPLERS:
        post = run(name, range(rank * n, (rank + 1) * n), dist.group.WORLD)
        results[name] = (post.samples, post.log_weights, post.info["num_resampled"])
    lw = torch.tensor([0.0, -1.0, -2.0, -30.0]) + rank  # shares of one system of 8: the draw is global
    results["resample"] = sharded_resample_if(lw, 2.0, generator=torch.Generator().manual_seed(5))
    torch.save(results, f"{out}.{rank}")
    dist.destroy_process_group()


def test_sharded_smc_matches_unsharded(tmp_path):
    mp.spawn(_worker, args=(str(tmp_path / "rdzv"), str(tmp_path / "out")), nprocs=WORLD, join=True)
    shards = [torch.load(tmp_path / f"out.{r}", weights_only=True) for r in range(WORLD)]
    for name in SAMPLERS:
        whole = run(name, range(K))
        assert whole.info["num_resampled"] > 0  # the comparison goes through global resampling
        x = torch.cat([s[name][0] for s in shards])
        lw = torch.cat([s[name][1] for s in shards])
        torch.testing.assert_close(x, whole.samples, rtol=1e-9, atol=1e-12, msg=name)
        torch.testing.assert_close(lw, whole.log_weights, rtol=1e-9, atol=1e-12, msg=name)
        assert {s[name][2] for s in shards} == {whole.info["num_resampled"]}
    # the ancestors of the sharded draw are the slices of the draw on the gathered weights
    from scidiff.kernels.particles import resample_if

    lw_all = torch.cat([torch.tensor([0.0, -1.0, -2.0, -30.0]) + r for r in range(WORLD)])
    ancestors, new_lw, _ = resample_if(lw_all, 2.0, generator=torch.Generator().manual_seed(5))
    assert torch.equal(torch.cat([s["resample"][0] for s in shards]), ancestors)
    torch.testing.assert_close(torch.cat([s["resample"][1] for s in shards]), new_lw)


def test_particle_generators_give_the_unsharded_draws():
    # without a group, ParticleGenerators only separates the resampling stream from the particles' streams
    a, b = run("afdps", range(K)), run("afdps", range(K))
    torch.testing.assert_close(a.samples, b.samples)
    with pytest.raises(ValueError, match="one particle system"):
        sharded_resample_if(torch.zeros(2, 3))
