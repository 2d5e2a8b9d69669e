"""Likelihoods (data terms) for posterior sampling. Core: torch only; deepinv adapters import deepinv lazily."""

from .base import (
    GaussianLikelihood,
    Likelihood,
    LinearGaussianLikelihood,
    MissingCapability,
    SumLikelihood,
    WeightedLikelihood,
)
from .nonlinear import SaturatingSensor
from .physics import SVD, from_physics
from .sensors import PointSensors
from .units import in_model_units

__all__ = [
    "SVD",
    "GaussianLikelihood",
    "Likelihood",
    "LinearGaussianLikelihood",
    "MissingCapability",
    "PointSensors",
    "SaturatingSensor",
    "SumLikelihood",
    "WeightedLikelihood",
    "from_physics",
    "in_model_units",
]
