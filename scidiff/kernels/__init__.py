"""Batched numerical kernels (torch only): conjugate gradients, particle operations."""

from .cg import conjugate_gradient
from .particles import (
    RESAMPLING_SCHEMES,
    chunked,
    ess,
    gather_particles,
    joint_generator,
    normalize_log_weights,
    normalized_weights,
    resample,
    resample_if,
)

__all__ = [
    "RESAMPLING_SCHEMES",
    "chunked",
    "conjugate_gradient",
    "ess",
    "gather_particles",
    "joint_generator",
    "normalize_log_weights",
    "normalized_weights",
    "resample",
    "resample_if",
]
