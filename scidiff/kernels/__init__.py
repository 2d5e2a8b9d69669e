"""Batched numerical kernels (torch only): conjugate gradients, particle operations."""

from .cg import conjugate_gradient

__all__ = ["conjugate_gradient"]
