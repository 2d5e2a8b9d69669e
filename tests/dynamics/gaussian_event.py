"""A Gaussian prior with a linear event a . x > b: P(E), the truncated conditional law (shared by the tests)."""

import math

import torch
from scipy import stats

from scidiff.oracles import Gaussian

D = 4


def _problem(p_event, seed=0):
    g = torch.Generator().manual_seed(seed)
    L = torch.randn(D, D, generator=g, dtype=torch.float64)
    cov = L @ L.T / D + 0.3 * torch.eye(D, dtype=torch.float64)
    mean = torch.randn(D, generator=g, dtype=torch.float64)
    a = torch.randn(D, generator=g, dtype=torch.float64)
    mu, sd = float(a @ mean), float((a @ cov @ a).sqrt())
    b = mu + sd * stats.norm.ppf(1 - p_event)
    return Gaussian(mean, cov), a, b, mu, sd, mean, cov


def _truncated_moments(a, b, mu, sd, mean, cov):
    """Mean and covariance of N(mean, cov) given a . x > b (regression of x on u = a . x)."""
    lo = (b - mu) / sd
    u = stats.truncnorm(lo, math.inf, loc=mu, scale=sd)
    beta = cov @ a / sd**2
    m = mean + beta * (u.mean() - mu)
    c = cov - torch.outer(beta, beta) * (sd**2 - u.var())
    return m, c, u
