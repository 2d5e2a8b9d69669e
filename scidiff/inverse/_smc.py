"""Pieces shared by the SMC posterior samplers (AFDPS, TDS): argument checks and resampling bookkeeping."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
from torch import Tensor

from ..diffusion._utils import host_sigmas
from ..diffusion.random import Generator
from ..kernels.particles import (
    RESAMPLING_SCHEMES,
    ParticleGenerators,
    ess,
    gather_particles,
    gather_sharded,
    joint_generator,
    resample_if,
    sharded_resample_if,
)
from ..likelihoods.base import Likelihood


def check_smc_args(likelihood, shape: Sequence[int], sigmas, scheme: str) -> tuple[tuple[int, ...], list[float]]:
    """Validate the common sampler arguments; return the shape tuple and the schedule as Python floats."""
    if not isinstance(likelihood, Likelihood):
        raise TypeError(f"likelihood must be a scidiff Likelihood, got {type(likelihood).__name__}")
    shape = tuple(int(s) for s in shape)
    if len(shape) < 2 or shape[0] < 1:
        raise ValueError(f"shape must be (num_particles, *event_shape) with num_particles >= 1; got {shape}")
    if scheme not in RESAMPLING_SCHEMES:
        raise ValueError(f"unknown resampling scheme {scheme!r}; choose from {RESAMPLING_SCHEMES}")
    s = host_sigmas(sigmas)
    if s[-1] != 0.0:
        raise ValueError("sigmas must end with 0 (the clean signal); use append_zero or karras_sigmas")
    _probe(likelihood, shape[1:])
    return shape, s


def _probe(likelihood, event_shape: tuple[int, ...]) -> None:
    """Evaluate the likelihood once on zeros so a shape mismatch fails here, with a clear message."""
    y = getattr(likelihood, "y", None)
    like = y if isinstance(y, Tensor) else torch.empty(0)
    x = torch.zeros(1, *event_shape, dtype=like.dtype, device=like.device)
    try:
        likelihood.energy(x)
    except (RuntimeError, ValueError) as err:
        raise ValueError(f"the likelihood cannot be evaluated on particles of event shape {event_shape}: {err}") from err


class ParticleBook:
    """ESS history, ESS-triggered resampling and the collapse warning for one particle system."""

    def __init__(self, num_particles: int, threshold: float, scheme: str, warn_fraction: float, method: str):
        if not threshold >= 0:
            raise ValueError(f"ess_threshold must be >= 0 (0 never resamples), got {threshold}")
        self.n, self.threshold, self.scheme = num_particles, threshold, scheme
        self.warn_fraction = warn_fraction
        self.warn_level = max(1.5, warn_fraction * num_particles) if num_particles > 1 else 0.0
        self.method = method
        self.ess_history: list[float] = []
        self.num_resampled = 0
        self.collapsed_at: int | None = None

    def step(self, log_w: Tensor, states: Sequence[Tensor], step: int, generator: Generator):
        """Record the ESS of ``log_w``; resample ``states`` (each ``(N, ...)``) if it is below threshold.

        A :class:`~scidiff.kernels.particles.ParticleGenerators` with a process group makes the step global
        over the particles of every rank (sharded SMC).
        """
        group = getattr(generator, "group", None) if isinstance(generator, ParticleGenerators) else None
        if group is not None:
            return self._sharded_step(log_w, states, step, generator, group)
        self._watch(self.record(log_w, step), step)
        if self.threshold <= 0:
            return log_w, list(states)
        ancestors, log_w, did = resample_if(log_w, self.threshold, self.scheme, generator=joint_generator(generator))
        if bool(did):
            self.num_resampled += 1
            states = [None if s is None else gather_particles(s, ancestors) for s in states]
        return log_w, list(states)

    def _sharded_step(self, log_w: Tensor, states: Sequence[Tensor], step: int, generator, group):
        threshold = self.threshold if self.threshold > 0 else 0.0
        ancestors, new_lw, did, value = sharded_resample_if(log_w, threshold, self.scheme,
                                                            generator=generator.resampling, group=group)
        if step == 0 or not self.ess_history:  # the warning level counts the particles of every rank
            self.n = log_w.shape[0] * torch.distributed.get_world_size(group)
            self.warn_level = max(1.5, self.warn_fraction * self.n) if self.n > 1 else 0.0
        self._check_finite(log_w, step)
        self.ess_history.append(float(value))
        self._watch(float(value), step)
        if self.threshold <= 0:
            return log_w, list(states)
        if bool(did):
            self.num_resampled += 1
            states = [None if s is None else gather_sharded(s, ancestors, group) for s in states]
        return new_lw, list(states)

    def record(self, log_w: Tensor, step: int) -> float:
        """Append the ESS of ``log_w`` to the history and return it."""
        self._check_finite(log_w, step)
        value = float(ess(log_w))
        self.ess_history.append(value)
        return value

    def _check_finite(self, log_w: Tensor, step: int) -> None:
        """A NaN weight (``inf - inf`` of overflowed energies) is reported as the divergence it is."""
        if torch.isnan(log_w).any():
            raise FloatingPointError(
                f"{self.method}: {int(torch.isnan(log_w).sum())} particle log-weight(s) became NaN at step {step}: the "
                "particles diverged (energies overflowed). The likelihood is too stiff for this step size: rescale "
                "the operator / sigma_y, use more steps or float64" + (", or afdps" if self.method == "tds" else "")
            )

    def _watch(self, value: float, step: int) -> None:
        if value < self.warn_level and self.collapsed_at is None:
            self.collapsed_at = step

    def finish(self) -> dict:
        if self.collapsed_at is not None:
            warnings.warn(
                f"{self.method}: the effective sample size collapsed to below {self.warn_level:.3g} of {self.n} "
                f"particles at step {self.collapsed_at}; the weighted posterior rests on very few particles. "
                "Use more steps, more particles, or check the scale of the operator and sigma_y.",
                RuntimeWarning,
                stacklevel=3,
            )
        return {"num_resampled": self.num_resampled, "min_ess": min(self.ess_history, default=float(self.n))}
