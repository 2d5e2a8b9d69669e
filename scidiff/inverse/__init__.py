"""Posterior samplers for inverse problems, one file each, written against Denoiser + Likelihood."""

from .dps import dps
from .posterior import Posterior
from .red_diff import red_diff

__all__ = ["Posterior", "dps", "red_diff"]
