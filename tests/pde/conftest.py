"""Shared fixtures of the PDE tests."""

import numpy as np
import pytest
import torch

from scidiff.oracles import Gaussian
from scidiff.pde import make_dataset
from scidiff.pde.diffusionpde import ChannelAffine, SparseObservation, random_mask

N = 10


@pytest.fixture(scope="session")
def poisson():
    """Gaussian fitted to 2000 generated Poisson pairs (a, u) in normalised units, and a held-out truth."""
    torch.set_num_threads(1)
    ds = make_dataset("poisson", 2001, N, seed=0, workers=1, progress=False)
    x = torch.tensor(np.stack([ds.a.values, ds.u.values], 1), dtype=torch.float64)
    train, truth = x[:2000], x[2000:]
    std, mean = train.std(dim=(0, 2, 3)), train.mean(dim=(0, 2, 3))
    aff = ChannelAffine(1 / std, -mean / std)
    z = aff.to_normalised(train).reshape(2000, -1)
    # A small nugget: prior samples then violate the PDE a little, so the PDE term has something to do.
    cov = torch.cov(z.T) + 1e-3 * torch.eye(z.shape[1], dtype=torch.float64)
    prior = Gaussian(z.mean(0), cov, shape=(2, N, N))
    mask = random_mask((N, N), fraction=0.3, generator=torch.Generator().manual_seed(1))
    obs = SparseObservation(truth[0, 0], mask, channel=0, transform=aff.to_physical)
    return prior, aff, truth, mask, obs
