"""The diffusion core: schedules, EDM preconditioning and loss, unconditional samplers. Torch only."""

from ._utils import append_dims, as_sigma_batch, check_finite, check_sigmas
from .precond import EDMPrecond, edm_loss, edm_scalings
from .random import rand, randn, randn_like, seeded_generators
from .samplers import (
    SAMPLERS,
    ddim_step,
    sample,
    sample_ancestral,
    sample_ddim,
    sample_euler,
    sample_euler_maruyama,
    sample_heun,
)
from .schedules import (
    alpha_bar_from_sigma,
    append_zero,
    ddpm_alpha_bars,
    ddpm_sigmas,
    edm_loss_weight,
    exponential_sigmas,
    karras_sigmas,
    sigma_from_alpha_bar,
    snr,
    vp_alpha_bar,
    vp_sigma,
    vp_t,
)

__all__ = [
    "EDMPrecond",
    "SAMPLERS",
    "alpha_bar_from_sigma",
    "append_dims",
    "append_zero",
    "as_sigma_batch",
    "check_finite",
    "check_sigmas",
    "ddim_step",
    "ddpm_alpha_bars",
    "ddpm_sigmas",
    "edm_loss",
    "edm_loss_weight",
    "edm_scalings",
    "exponential_sigmas",
    "karras_sigmas",
    "rand",
    "randn",
    "randn_like",
    "sample",
    "sample_ancestral",
    "sample_ddim",
    "sample_euler",
    "sample_euler_maruyama",
    "sample_heun",
    "seeded_generators",
    "sigma_from_alpha_bar",
    "snr",
    "vp_alpha_bar",
    "vp_sigma",
    "vp_t",
]
