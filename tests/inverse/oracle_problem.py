"""A linear-Gaussian inverse problem on a Gaussian-mixture prior: the exact posterior is known in closed form."""

import torch

from conftest import smooth_mixture
from scidiff.likelihoods import LinearGaussianLikelihood


class OracleProblem:
    """Observe ``m`` random entries of ``x`` (an inpainting mask) with noise ``sigma_y``."""

    def __init__(self, shape, m=6, sigma_y=0.1, seed=1):
        self.shape = tuple(shape)
        self.prior = smooth_mixture(self.shape)
        d = self.prior.dim
        g = torch.Generator().manual_seed(seed)
        self.matrix = torch.zeros(m, d, dtype=torch.float64)
        self.matrix[torch.arange(m), torch.randperm(d, generator=g)[:m]] = 1.0
        self.x_true = self.prior.sample(1, torch.Generator().manual_seed(seed + 2), dtype=torch.float64)
        noise = torch.randn(1, m, generator=g, dtype=torch.float64)
        self.y = self.x_true.reshape(1, -1) @ self.matrix.T + sigma_y * noise
        self.sigma_y = sigma_y
        self.likelihood = LinearGaussianLikelihood.from_matrix(self.matrix, self.y, sigma_y, self.shape)
        self.posterior = self.prior.posterior(self.matrix, self.y, sigma_y)

    @property
    def mean(self):
        return self.posterior.mean()

    @property
    def std(self):
        return self.posterior.covariance().diagonal().sqrt()

    def mode_component(self):
        """Mean and precision of the dominant posterior component (its mean is that component's mode)."""
        k = int(self.posterior.weights.argmax())
        return self.posterior.means[k], torch.linalg.inv(self.posterior.covs[k])

    def mahalanobis_to_mode(self, x):
        mode, precision = self.mode_component()
        v = x.reshape(x.shape[0], -1).double() - mode
        return ((v @ precision) * v).sum(1).sqrt()
