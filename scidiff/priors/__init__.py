"""Trainable priors (Lightning) and their networks. Importing this subpackage imports pytorch_lightning."""

from .autoencoder import Autoencoder
from .latent import LatentPrior
from .networks import MLP, NETWORKS, UNet, build_network, register_network
from .prior import DiffusionPrior, warmup_cosine

__all__ = ["Autoencoder", "LatentPrior", "MLP", "NETWORKS", "UNet", "DiffusionPrior", "build_network", "register_network",
           "warmup_cosine"]
