"""Posterior samplers for inverse problems, one file each, written against Denoiser + Likelihood."""

from .dps import dps
from .posterior import Posterior
from .red_diff import red_diff

__all__ = ["Posterior", "dps", "from_deepinv", "red_diff", "to_deepinv"]


def __getattr__(name):
    # deepinv is only imported when the interop adapters are asked for
    if name in ("to_deepinv", "from_deepinv"):
        from . import interop

        return getattr(interop, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
