"""Posterior samplers for inverse problems, one file each, written against Denoiser + Likelihood."""

from .afdps import afdps
from .posterior import Posterior
from .tds import tds, twisting_likelihood

__all__ = ["Posterior", "afdps", "tds", "twisting_likelihood"]
