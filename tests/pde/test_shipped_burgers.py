"""The shipped Burgers prior reconstructs a held-out space-time field from 5 sensors better than interpolation."""

import numpy as np
import torch

from scidiff.diffusion import seeded_generators
from scidiff.pde import make_dataset
from scidiff.pde.diffusionpde import SparseObservation, diffusionpde_likelihood, sample_diffusionpde
from scidiff.pde.problem import prior_affine, prior_sigmas, rel_l2
from scidiff.priors import DiffusionPrior


def test_burgers32_beats_interpolating_five_sensors():
    prior = DiffusionPrior.from_name_or_path("burgers32").eval().requires_grad_(False)
    assert prior.shape == (1, 32, 32)
    aff = prior_affine(prior)
    fields = make_dataset("burgers", 3, 32, seed=7, workers=1, progress=False).u.values  # not the training seed 0
    mask = np.zeros((32, 32), bool)
    mask[:, ::7] = True  # 5 sensor positions in x, observed at every time
    cols, xs = np.flatnonzero(mask[0]), np.arange(32)
    sigmas = prior_sigmas(prior, 30)
    ours, interpolated = [], []
    for u in fields:
        obs = SparseObservation(torch.tensor(u), torch.as_tensor(mask), channel=0, transform=aff.to_physical)
        # weight 10 in normalised units, as chosen on validation fields (docs/pde.md)
        lik = diffusionpde_likelihood([(obs, 10 * float(aff.scale[0]))], None, 0.0, sigmas)
        post = sample_diffusionpde(prior, lik, (2, 1, 32, 32), sigmas, dtype=torch.float32, progress=False,
                                   generator=seeded_generators(range(2)))
        ours.append(rel_l2(aff.to_physical(post.samples.double()).mean(0)[0].numpy(), u))
        interpolated.append(rel_l2(np.stack([np.interp(xs, cols, row[cols], period=32) for row in u]), u))
    # measured 0.35 against 0.49; on the benchmark's 6 test fields (60 steps, 4 samples) 0.33 against 0.41
    assert np.mean(ours) < 0.9 * np.mean(interpolated)
