"""Likelihoods (data terms) for posterior sampling. Core: torch only; deepinv adapters import deepinv lazily."""

from .base import (
    GaussianLikelihood,
    Likelihood,
    LinearGaussianLikelihood,
    MissingCapability,
    SumLikelihood,
    WeightedLikelihood,
)

__all__ = [
    "GaussianLikelihood",
    "Likelihood",
    "LinearGaussianLikelihood",
    "MissingCapability",
    "SumLikelihood",
    "WeightedLikelihood",
]
