"""Posterior samplers for inverse problems, one file each, written against Denoiser + Likelihood."""

from .afdps import afdps
from .classical import admm_tv, fbp
from .dds import dds
from .dps import dps
from .ensemble import posterior_ensemble
from .latent_dps import latent_dps
from .mbir import diffusion_mbir
from .mcgdiff import mcgdiff
from .posterior import Posterior
from .red_diff import red_diff
from .resample import resample, resample_pixel, stochastic_resample
from .tds import tds, twisting_likelihood

__all__ = [
    "Posterior", "admm_tv", "afdps", "dds", "diffusion_mbir", "dps", "fbp", "from_deepinv", "latent_dps", "mcgdiff",
    "posterior_ensemble", "red_diff", "resample", "resample_pixel", "stochastic_resample", "tds", "to_deepinv", "twisting_likelihood",
]


def __getattr__(name):
    # deepinv is only imported when the interop adapters are asked for
    if name in ("to_deepinv", "from_deepinv"):
        from . import interop

        return getattr(interop, name)

    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
