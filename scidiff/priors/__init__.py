"""Trainable priors (Lightning) and their networks. Importing this subpackage imports pytorch_lightning."""

from .networks import MLP, NETWORKS, UNet, build_network, register_network
from .prior import DiffusionPrior

__all__ = ["MLP", "NETWORKS", "UNet", "DiffusionPrior", "build_network", "register_network"]
