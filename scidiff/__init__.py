"""scidiff: diffusion priors put to work on science.

``import scidiff`` is light (torch only). Subpackages that need heavy packages import them themselves:
``scidiff.priors`` / ``scidiff.data`` (Lightning, xarray), ``scidiff.graphs`` (PyG, RDKit).
"""

__version__ = "0.1.0"

from . import diffusion, inverse, kernels, likelihoods, oracles  # noqa: E402
from .diffusion import karras_sigmas, sample, seeded_generators  # noqa: E402
from .inverse import Posterior  # noqa: E402
from .oracles import Gaussian, GaussianMixture  # noqa: E402

__all__ = [
    "Gaussian",
    "GaussianMixture",
    "Posterior",
    "diffusion",
    "inverse",
    "karras_sigmas",
    "kernels",
    "likelihoods",
    "oracles",
    "sample",
    "seeded_generators",
]
