"""Posterior samplers for inverse problems, one file each, written against Denoiser + Likelihood."""

from .posterior import Posterior

__all__ = ["Posterior"]
