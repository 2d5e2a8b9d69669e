"""Constrained Schrodinger bridges: bounded domains, reflected SDEs, reflected diffusion priors, bridges.

Torch only at import time; POT is imported where an OT plan or a Sinkhorn divergence is computed, and
Lightning only by :mod:`scidiff.bridges.lightning` (reachable lazily as ``scidiff.bridges.BridgeMatchingModule``).
"""

from .domains import Ball, Box, Domain, Polytope, SDFDomain, Simplex, flower, make_domain, regular_polygon
from .gaussian import gaussian_sb_cross_covariance, gaussian_sb_drift, gaussian_sb_marginal
from .matching import BridgeNet, TimeMLP, bridge_matching_loss, entropic_ot_plan, sample_bridge, sample_coupling, train_bridge
from .prior import ReflectedDiffusionPrior, reflected_empirical_score, reflected_heat_kernel_log_prob, reflected_heat_kernel_score
from .problems import run_problem, sinkhorn_divergence
from .sde import apply_boundary, reflected_euler_maruyama


def __getattr__(name: str):
    if name == "BridgeMatchingModule":
        from .lightning import BridgeMatchingModule

        return BridgeMatchingModule
    raise AttributeError(f"module 'scidiff.bridges' has no attribute {name!r}")
