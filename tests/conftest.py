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
