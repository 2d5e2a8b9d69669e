"""PDEs for DiffusionPDE-style problems: reference solvers (numpy/scipy), differentiable residuals (torch),
Gaussian random fields, dataset generation and the guided sampler.

Solvers take and return numpy arrays with an optional leading batch axis; residuals take torch tensors
``(B, ...)`` and use the physical grid spacing.
"""

from .burgers import burgers_residual, solve_burgers
from .elliptic import (
    darcy_residual,
    helmholtz_residual,
    laplacian_power,
    poisson_residual,
    solve_darcy,
    solve_helmholtz,
    solve_poisson,
)
from .grf import grf_neumann, grf_periodic, threshold
from .datasets import NAMES as DATASETS
from .datasets import joint_pair, make_dataset
from .navier_stokes import enstrophy_and_energy, ns_forcing, ns_residual, solve_navier_stokes

__all__ = [name for name in dir() if not name.startswith("_")]
