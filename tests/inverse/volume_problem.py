"""A small CT problem whose prior is known exactly: every axial slice is a Gaussian random field.

Slice ``k`` is ``cos(t_k) g1 + sin(t_k) g2`` with ``g1, g2`` independent draws of the GRF and ``t_k`` rising
smoothly along z, so each slice is exactly distributed as the prior the oracle denoiser knows, while
neighbouring slices are correlated (what the z-TV of DiffusionMBIR/DDS exploits).
"""

from functools import lru_cache

import torch

from scidiff.data.synthetic import grf_covariance
from scidiff.likelihoods.volume import SliceTomography
from scidiff.oracles import GaussianMixture

W, D = 16, 8


def grf_slice_prior(alpha: float = 2.5) -> GaussianMixture:
    return GaussianMixture.gaussian(torch.zeros(W * W, dtype=torch.float64), grf_covariance(W, alpha=alpha, tau=3.0), shape=(1, W, W))


@lru_cache(maxsize=2)
def grf_volume_problem(n_views: int = 4, seed: int = 0):
    prior = grf_slice_prior()
    g = prior.sample(2, generator=torch.Generator().manual_seed(seed))
    t = torch.linspace(0, torch.pi / 2, D)[:, None, None, None]
    x = (torch.cos(t) * g[0] + torch.sin(t) * g[1]).permute(1, 0, 2, 3)[None]  # (1, 1, D, W, W)
    op = SliceTomography(n_views, W)
    return prior, op, x, op.A(x)


def mse(a, b) -> float:
    return float((a - b).pow(2).mean())


@lru_cache(maxsize=2)
def best_admm_tv_mse(n_views: int = 4, seed: int = 0) -> float:
    """ADMM-TV's error with lam chosen on the truth (an optimistic baseline)."""
    from scidiff.inverse import admm_tv

    _, op, x, y = grf_volume_problem(n_views, seed)
    return min(mse(admm_tv(op, y, lam=lam), x) for lam in (3e-4, 1e-3, 3e-3))
