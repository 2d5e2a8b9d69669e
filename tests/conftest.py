import os

# One thread in every process the suite starts (notebook kernels, 2-process DDP runs): their tensors are small,
# and on a shared machine a second OpenMP thread per process only spins against other jobs (a notebook cell that
# takes seconds alone took over 300 s beside a training run). Set before any kernel or worker is spawned.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import pytest
import torch

from scidiff.oracles import GaussianMixture

SHAPES = [(1, 64), (1, 16, 16), (1, 8, 8, 8)]


def smooth_mixture(shape, weights=(0.3, 0.7), seed=0) -> GaussianMixture:
    """Two well-separated components with correlated (smooth) covariances on ``shape``."""
    g = torch.Generator().manual_seed(seed)
    d = 1
    for s in shape:
        d *= s
    idx = torch.arange(d, dtype=torch.float64)
    # Squared-exponential covariance on the flattened index plus a nugget: realistic, well conditioned.
    base = torch.exp(-((idx[:, None] - idx[None]) ** 2) / (2 * 3.0**2)) * 0.5 + 0.05 * torch.eye(d, dtype=torch.float64)
    direction = torch.randn(d, generator=g, dtype=torch.float64)
    direction = direction / direction.norm() * 6.0
    means = torch.stack([direction, -direction])
    covs = torch.stack([base, 0.5 * base])
    return GaussianMixture(torch.tensor(weights), means, covs, shape=shape)


@pytest.fixture(autouse=True)
def _threads():
    # One thread: the test tensors are small, and thousands of tiny ops only contend with a second thread.
    torch.set_num_threads(1)
    yield


POISSON_N = 10  # grid of the `poisson` fixture of the PDE tests


@pytest.fixture(scope="session")
def poisson():
    """Gaussian fitted to 2000 generated Poisson pairs (a, u) in normalised units, and a held-out truth."""
    import numpy as np

    from scidiff.oracles import Gaussian
    from scidiff.pde import make_dataset
    from scidiff.pde.diffusionpde import ChannelAffine, SparseObservation, random_mask

    torch.set_num_threads(1)
    ds = make_dataset("poisson", 2001, POISSON_N, seed=0, workers=1, progress=False)
    x = torch.tensor(np.stack([ds.a.values, ds.u.values], 1), dtype=torch.float64)
    train, truth = x[:2000], x[2000:]
    std, mean = train.std(dim=(0, 2, 3)), train.mean(dim=(0, 2, 3))
    aff = ChannelAffine(1 / std, -mean / std)
    z = aff.to_normalised(train).reshape(2000, -1)
    # A small nugget: prior samples then violate the PDE a little, so the PDE term has something to do.
    cov = torch.cov(z.T) + 1e-3 * torch.eye(z.shape[1], dtype=torch.float64)
    prior = Gaussian(z.mean(0), cov, shape=(2, POISSON_N, POISSON_N))
    mask = random_mask((POISSON_N, POISSON_N), fraction=0.3, generator=torch.Generator().manual_seed(1))
    obs = SparseObservation(truth[0, 0], mask, channel=0, transform=aff.to_physical)
    return prior, aff, truth, mask, obs
