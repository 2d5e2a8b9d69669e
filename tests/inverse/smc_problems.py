"""Small linear-Gaussian problems on the Gaussian-mixture oracle, with their exact posteriors (shared by the SMC tests)."""

import torch

from scidiff.likelihoods import LinearGaussianLikelihood
from scidiff.oracles import GaussianMixture


def two_mode_prior() -> GaussianMixture:
    """A 2D bimodal prior of unit scale: the posterior keeps both modes for a measurement of ``x1 + x2/2``."""
    means = torch.tensor([[-1.0, 0.5], [1.0, -0.25]])
    covs = torch.tensor([[[0.3, 0.1], [0.1, 0.2]], [[0.25, -0.05], [-0.05, 0.3]]])
    return GaussianMixture(torch.tensor([0.4, 0.6]), means, covs)


def linear_problem(seed: int, sigma_y: float = 0.5, prior: GaussianMixture | None = None):
    """Draw ``x ~ prior`` and ``y = M x + sigma_y n``; return ``(prior, likelihood, exact posterior, x)``."""
    prior = prior or two_mode_prior()
    g = torch.Generator().manual_seed(seed)
    matrix = torch.tensor([[1.0, 0.5]], dtype=torch.float64)[:, : prior.dim]
    x = prior.sample(1, g, dtype=torch.float64)
    y = x.reshape(1, -1) @ matrix.T + sigma_y * torch.randn(1, 1, generator=g, dtype=torch.float64)
    lik = LinearGaussianLikelihood.from_matrix(matrix, y, sigma_y, prior.shape)
    return prior, lik, prior.posterior(matrix, y, sigma_y), x


def posterior_errors(post, exact: GaussianMixture) -> torch.Tensor:
    """``[|mean error|, |covariance error|_F, total-variation error of the mode weights]`` of a weighted Posterior."""
    w, xs = post.weights, post.samples.double().reshape(post.samples.shape[0], -1)
    mean = w @ xs
    cov = (w[:, None] * (xs - mean)).T @ (xs - mean)
    modes = w @ exact.responsibilities(post.samples.double())
    return torch.stack(
        [(mean - exact.mean()).norm(), (cov - exact.covariance()).norm(), 0.5 * (modes - exact.weights).abs().sum()]
    )
