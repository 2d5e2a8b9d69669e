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
    _ess,
    _normalize,
    all_gather_cat,
    gather_particles,
    gather_sharded,
    guard_log_weights,
    joint_generator,
    resample_if,
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
    """ESS history, ESS-triggered resampling, divergence guard and the collapse warning for one particle system.

    Nothing here waits for the host inside the sampling loop: the ESS, the resampling decision, the count of
    resampling steps and the first step at which a particle diverged stay on the device and are read once, in
    :meth:`finish`. Ancestors are therefore drawn at every step (from the joint generator) and kept only where the
    ESS is below threshold, or where a particle diverged (a diverged particle has weight zero and is replaced by a
    live one, also when ``ess_threshold = 0``).
    """

    def __init__(self, num_particles: int, threshold: float, scheme: str, warn_fraction: float, method: str):
        if not threshold >= 0:
            raise ValueError(f"ess_threshold must be >= 0 (0 never resamples), got {threshold}")
        self.n, self.threshold, self.scheme = num_particles, threshold, scheme
        self.warn_fraction = warn_fraction
        self.method = method
        self.ess_history: list[float] = []
        self._ess: list[Tensor] = []
        self._resampled: Tensor | None = None  # device counters, read in finish()
        self._dead: Tensor | None = None
        self._first_dead: Tensor | None = None

    @property
    def warn_level(self) -> float:
        return max(1.5, self.warn_fraction * self.n) if self.n > 1 else 0.0

    def step(self, log_w: Tensor, states: Sequence[Tensor | None], step: int, generator: Generator):
        """Record the ESS of ``log_w``; resample ``states`` (each ``(N, ...)``) where it is below threshold.

        Particles with a non-finite log-weight or state get weight zero (:func:`guard_log_weights`) and are
        resampled away. A :class:`~scidiff.kernels.particles.ParticleGenerators` with a process group makes the
        step global over the particles of every rank (sharded SMC).
        """
        group = getattr(generator, "group", None) if isinstance(generator, ParticleGenerators) else None
        # the particles themselves (the first state): anything derived from a diverged particle is caught through
        # it or through its log-weight one step later
        alive = _finite_rows(states[:1], log_w.shape[0])
        if alive is None:
            alive = torch.ones(log_w.shape, dtype=torch.bool, device=log_w.device)
        if group is not None:
            return self._sharded_step(log_w, alive, states, step, generator, group)
        log_w, dead = self._guard(log_w, alive, step)
        ancestors, new_lw, did = resample_if(log_w, self.threshold, self.scheme, generator=joint_generator(generator),
                                             force=dead.any())
        self._count(did)
        states = [None if s is None else gather_particles(s, ancestors) for s in states]
        # without resampling the weights go on as they were (normalised only when resampling is on)
        return (new_lw if self.threshold > 0 else torch.where(did, new_lw, log_w)), states

    def _sharded_step(self, log_w: Tensor, alive: Tensor, states, step: int, generator, group):
        world = torch.distributed.get_world_size(group)
        self.n = log_w.shape[0] * world  # the warning level counts the particles of every rank
        lw_all, dead = self._guard(all_gather_cat(log_w.double(), group), all_gather_cat(alive, group), step)
        rank, n = torch.distributed.get_rank(group), log_w.shape[0]
        mine = slice(rank * n, (rank + 1) * n)
        # every rank draws the same ancestors for the whole system (the resampling generator is seeded alike)
        ancestors, new_lw, did = resample_if(lw_all, self.threshold, self.scheme, generator=generator.resampling,
                                             force=dead.any())
        self._count(did)
        states = [None if s is None else gather_sharded(s, ancestors[mine], group) for s in states]
        return (new_lw if self.threshold > 0 else torch.where(did, new_lw, lw_all))[mine], states

    def _guard(self, log_w: Tensor, alive: Tensor, step: int) -> tuple[Tensor, Tensor]:
        """Finite log-weights (diverged particles get weight zero); record the ESS and the divergence, on device."""
        log_w, dead = guard_log_weights(log_w, alive)
        self._ess.append(_ess(_normalize(log_w)))
        num_dead = dead.sum()
        self._dead = num_dead if self._dead is None else self._dead + num_dead
        first = self._first_dead if self._first_dead is not None else torch.full_like(num_dead, -1)
        self._first_dead = torch.where((first < 0) & (num_dead > 0), torch.full_like(first, step), first)
        return log_w, dead

    def _count(self, did: Tensor) -> None:
        did = did.long()
        self._resampled = did if self._resampled is None else self._resampled + did

    def record(self, log_w: Tensor, step: int, samples: Tensor | None = None) -> Tensor:
        """Guard and record the final log-weights (ESS appended to the history); return them, finite."""
        log_w, _ = self._guard(log_w, _finite_rows([samples], log_w.shape[0]), step)
        return log_w

    def finish(self, samples: Tensor) -> dict:
        """Read the device-side records (one sync), warn on an ESS collapse or diverged particles, check ``samples``."""
        history = torch.stack(self._ess).tolist() if self._ess else []
        self.ess_history = history
        num_dead = int(self._dead) if self._dead is not None else 0
        first_dead = int(self._first_dead) if self._first_dead is not None else -1
        if not bool(torch.isfinite(samples).all()):
            raise FloatingPointError(
                f"{self.method}: the particles diverged (non-finite values, first at step {first_dead}) and no live "
                "particle was left to replace them. The likelihood is too stiff for this step size: rescale the "
                "operator / sigma_y, use more steps or float64" + (", or afdps" if self.method == "tds" else "")
            )
        if num_dead:
            warnings.warn(
                f"{self.method}: {num_dead} particle(s) diverged (a non-finite state or log-weight), first at step "
                f"{first_dead}; they were given weight zero and replaced by resampling. The likelihood is stiff for "
                "this step size: rescale the operator / sigma_y or use more steps.",
                RuntimeWarning,
                stacklevel=3,
            )
        collapsed_at = next((i for i, v in enumerate(history) if v < self.warn_level), None)
        if collapsed_at is not None:
            warnings.warn(
                f"{self.method}: the effective sample size collapsed to below {self.warn_level:.3g} of {self.n} "
                f"particles at step {collapsed_at}; the weighted posterior rests on very few particles. "
                "Use more steps, more particles, or check the scale of the operator and sigma_y.",
                RuntimeWarning,
                stacklevel=3,
            )
        resampled = int(self._resampled) if self._resampled is not None else 0
        return {"num_resampled": resampled, "min_ess": min(history, default=float(self.n)), "num_diverged": num_dead}


def _finite_rows(states: Sequence[Tensor | None], n: int) -> Tensor | None:
    """``(n,)`` bool: particles whose every state entry is finite (``None`` if there is no state to check)."""
    alive = None
    for s in states:
        if s is not None:
            ok = torch.isfinite(s.reshape(n, -1)).all(1)
            alive = ok if alive is None else alive & ok
    return alive
