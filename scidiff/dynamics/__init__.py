"""Dynamical systems: integrators, trajectory datasets, event-conditioned sampling, event probabilities, assimilation.

``scidiff.dynamics.events`` implements Finzi et al. (ICML 2023); ``scidiff.dynamics.assimilation`` answers sparse
observations of a trajectory with a trajectory prior (SDA-style Gaussian observation score through DPS).
"""

from ..diffusion import sample_predictor_corrector  # the Langevin-corrected sampler, kept importable here
from .assimilation import assimilate, trajectory_observations
from .composition import WindowComposedDenoiser
from .datasets import NAMES, make_trajectory_dataset, trajectories
from .events import (
    EventConditionedDenoiser,
    guidance_calibration,
    event_log_probability,
    linear_event,
    sample_event,
    sample_event_smc,
    pool_event_smc,
    event_mala_move,
    threshold_event,
)
from .splitting import autocorrelation_time, batch_means_time, event_probability_splitting, sample_event_splitting
from .systems import (
    SYSTEMS,
    System,
    fitzhugh_nagumo_rhs,
    get_system,
    integrate,
    lorenz63_rhs,
    lorenz96_rhs,
    rk4_step,
    simulate,
)

__all__ = [
    "EventConditionedDenoiser",
    "WindowComposedDenoiser",
    "NAMES",
    "SYSTEMS",
    "System",
    "assimilate",
    "event_log_probability",
    "event_probability_splitting",
    "fitzhugh_nagumo_rhs",
    "get_system",
    "guidance_calibration",
    "integrate",
    "linear_event",
    "lorenz63_rhs",
    "lorenz96_rhs",
    "make_trajectory_dataset",
    "rk4_step",
    "sample_event",
    "sample_event_smc",
    "sample_event_splitting",
    "autocorrelation_time",
    "batch_means_time",
    "pool_event_smc",
    "event_mala_move",
    "sample_predictor_corrector",
    "simulate",
    "threshold_event",
    "trajectories",
    "trajectory_observations",
]
