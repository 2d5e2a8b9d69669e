"""Batched particle operations for sequential Monte Carlo: log-weights, ESS, resampling, chunking.

Log-weights have shape ``(..., N)``: any number of leading batch dims (independent particle systems,
e.g. one per measurement) and ``N`` particles last. Every random draw takes ``generator=`` with the
conventions of :mod:`scidiff.diffusion.random`; a list of generators has one entry per particle
*system* (the flattened leading dims), since resampling is a joint operation on a system.

Resampling schemes follow Douc, Cappé & Moulines, "Comparison of resampling schemes for particle
filtering" (2005): all four are unbiased (expected offspring of particle ``i`` is ``N w_i``);
residual, stratified and systematic have lower variance than multinomial.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from ..diffusion.random import Generator, rand

RESAMPLING_SCHEMES = ("multinomial", "systematic", "stratified", "residual")


def _check_log_weights(log_weights: Tensor) -> Tensor:
    if not isinstance(log_weights, Tensor):
        raise TypeError(f"log_weights must be a tensor, got {type(log_weights).__name__}")
    if log_weights.ndim == 0 or log_weights.shape[-1] == 0:
        raise ValueError(f"log_weights must have shape (..., N) with N >= 1; got {tuple(log_weights.shape)}")
    if torch.isnan(log_weights).any():
        raise ValueError("log_weights contain NaN")
    if (log_weights == float("inf")).any():
        raise ValueError("log_weights contain +inf; an incremental weight overflowed")
    return log_weights


def normalize_log_weights(log_weights: Tensor) -> Tensor:
    """``log w_i - logsumexp_j log w_j`` over the last dim, computed in float64.

    Finite for any finite input (``-1e30`` and ``+700`` alike). Entries of ``-inf`` get weight zero; a
    system whose weights are all ``-inf`` carries no information and is given uniform weights.
    """
    return _normalize(_check_log_weights(log_weights))


def _normalize(log_weights: Tensor) -> Tensor:
    """:func:`normalize_log_weights` without the input checks (they cost a host sync): for sampling loops."""
    lw = log_weights.double()
    dead = torch.isneginf(lw).all(-1, keepdim=True)
    lw = torch.where(dead, torch.zeros_like(lw), lw)
    # shift by the max first: at |log w| ~ 1e30 the logsumexp itself would lose the log(N) term
    lw = lw - lw.max(-1, keepdim=True).values
    return lw - torch.logsumexp(lw, -1, keepdim=True)


def normalized_weights(log_weights: Tensor) -> Tensor:
    """Normalised weights ``(..., N)`` in float64 (sum to one over the last dim)."""
    return normalize_log_weights(log_weights).exp()


def ess(log_weights: Tensor) -> Tensor:
    """Effective sample size ``1 / sum_i w_i^2`` per system, shape ``(...)``, in ``[1, N]``."""
    return _ess(normalize_log_weights(log_weights))


def _ess(normalized: Tensor) -> Tensor:
    """ESS of log-weights that are already normalised."""
    return torch.exp(-torch.logsumexp(2 * normalized, -1))


def _uniforms(batch_shape, n: int, per_particle: bool, generator: Generator, device) -> Tensor:
    """Uniforms of shape ``(*batch, n)`` (or ``(*batch, 1)``) with one generator per flattened system."""
    b = math.prod(batch_shape)
    u = rand((b, n if per_particle else 1), generator, device=device, dtype=torch.float64)
    return u.reshape(*batch_shape, -1)


def _inverse_cdf(weights: Tensor, u: Tensor) -> Tensor:
    """Ancestor of each sorted-or-not uniform ``u`` in ``[0, 1)``: first ``i`` with ``cdf_i > u``.

    ``right=True`` makes zero-weight particles unreachable; the clamp guards round-off in ``cdf[-1]``.
    """
    cdf = weights.cumsum(-1)
    cdf = cdf / cdf[..., -1:]
    idx = torch.searchsorted(cdf.contiguous(), u.contiguous(), right=True)
    return idx.clamp_max(weights.shape[-1] - 1)


def resample(
    log_weights: Tensor, scheme: str = "systematic", *, generator: Generator = None, num_samples: int | None = None
) -> Tensor:
    """Ancestor indices ``(..., M)`` (``M = num_samples`` or ``N``) drawn from the normalised weights.

    ``multinomial``: i.i.d. draws. ``stratified``: one uniform per stratum ``[(j + u_j) / M]``.
    ``systematic``: one shared uniform ``[(j + u) / M]``. ``residual``: ``floor(M w_i)`` copies of each
    particle, the rest multinomial on the residual weights.
    """
    if scheme not in RESAMPLING_SCHEMES:
        raise ValueError(f"unknown resampling scheme {scheme!r}; choose from {RESAMPLING_SCHEMES}")
    m = log_weights.shape[-1] if num_samples is None else int(num_samples)
    if m < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    return _draw_ancestors(normalize_log_weights(log_weights).exp(), scheme, m, generator)


def _draw_ancestors(w: Tensor, scheme: str, m: int, generator: Generator) -> Tensor:
    """:func:`resample` from normalised weights ``w``, without input checks (no host sync)."""
    batch, device = w.shape[:-1], w.device
    grid = torch.arange(m, device=device, dtype=torch.float64)
    if scheme == "multinomial":
        return _inverse_cdf(w, _uniforms(batch, m, True, generator, device))
    if scheme == "stratified":
        return _inverse_cdf(w, (grid + _uniforms(batch, m, True, generator, device)) / m)
    if scheme == "systematic":
        return _inverse_cdf(w, (grid + _uniforms(batch, 1, False, generator, device)) / m)
    return _residual(w, m, grid, generator)


def _residual(w: Tensor, m: int, grid: Tensor, generator: Generator) -> Tensor:
    counts = torch.floor(m * w)
    cum = counts.cumsum(-1)  # slot j < cum[-1] goes to the particle whose copy block covers it
    deterministic = torch.searchsorted(cum.contiguous(), grid.expand(*w.shape[:-1], m).contiguous(), right=True)
    residual = (m * w - counts).clamp_min(0)
    has_rest = residual.sum(-1, keepdim=True) > 0
    residual = torch.where(has_rest, residual, torch.ones_like(residual))  # unused when nothing is left
    random = _inverse_cdf(residual, _uniforms(w.shape[:-1], m, True, generator, w.device))
    ancestors = torch.where(grid < cum[..., -1:], deterministic, random)
    return ancestors.clamp_max(w.shape[-1] - 1)


def resample_if(
    log_weights: Tensor,
    threshold: float = 0.5,
    scheme: str = "systematic",
    *,
    generator: Generator = None,
    force: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Resample the systems whose ``ESS / N < threshold`` (or where ``force``, a bool mask ``(...)``, is set).

    Returns ``(ancestors, new_log_weights, resampled)``: ancestors ``(..., N)`` (the identity for systems
    left alone), log-weights reset to zero where resampled and normalised elsewhere, and a bool mask
    ``(...)``. ``threshold = 0`` never resamples; ``threshold > 1`` always does.

    The decision stays on the device: ancestors are drawn for every system and kept only where resampled,
    so a sampling loop never waits for the host (the generator advances by one draw per call, whatever the
    decision). Input checks are the caller's (see :func:`guard_log_weights`).
    """
    if not threshold >= 0:
        raise ValueError(f"threshold must be >= 0, got {threshold}")
    if scheme not in RESAMPLING_SCHEMES:
        raise ValueError(f"unknown resampling scheme {scheme!r}; choose from {RESAMPLING_SCHEMES}")
    lw = _normalize(log_weights)
    n = lw.shape[-1]
    resampled = _ess(lw) < threshold * n
    if force is not None:
        resampled = resampled | force
    identity = torch.arange(n, device=lw.device).expand(lw.shape)
    drawn = _draw_ancestors(lw.exp(), scheme, n, generator)
    ancestors = torch.where(resampled[..., None], drawn, identity)
    new_lw = torch.where(resampled[..., None], torch.zeros_like(lw), lw)
    return ancestors, new_lw, resampled


# a log-weight this far below the best one has weight exactly zero in float64 (exp underflows below -745)
DEAD_LOG_WEIGHT_GAP = 1e4


def guard_log_weights(log_weights: Tensor, alive: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Finite log-weights for a sampling loop: ``(guarded, dead)``, with no host sync.

    A particle whose log-weight is NaN or +-inf (an overflowed energy, ``inf - inf``), or whose state is not
    finite (``alive`` False), has diverged: it gets the finite log-weight ``max - DEAD_LOG_WEIGHT_GAP`` of its
    system, i.e. weight zero, instead of poisoning the normalisation. ``dead`` is the bool mask ``(..., N)``
    of such particles. A system in which every particle died keeps uniform zero log-weights.
    """
    lw = log_weights.double()
    dead = ~torch.isfinite(lw)
    if alive is not None:
        dead = dead | ~alive
    best = torch.where(dead, torch.full_like(lw, -torch.inf), lw).max(-1, keepdim=True).values
    best = torch.where(torch.isfinite(best), best, torch.zeros_like(best))  # every particle dead
    return torch.where(dead, best - DEAD_LOG_WEIGHT_GAP, lw), dead


def gather_particles(x: Tensor, ancestors: Tensor) -> Tensor:
    """Select particles: ``x`` is ``(..., N, *event)`` with ancestors ``(..., N)`` over the same leading dims."""
    lead = ancestors.ndim
    if tuple(x.shape[:lead]) != tuple(ancestors.shape[:-1]) + (x.shape[lead - 1],):
        raise ValueError(f"ancestors of shape {tuple(ancestors.shape)} do not index particles of shape {tuple(x.shape)}")
    idx = ancestors.reshape(*ancestors.shape, *([1] * (x.ndim - lead))).expand(*ancestors.shape, *x.shape[lead:])
    return x.gather(lead - 1, idx)


def chunked(fn: Callable[..., Tensor | tuple], *tensors: Tensor, max_batch_size: int | None = None):
    """Apply ``fn`` to slices of at most ``max_batch_size`` along dim 0 and concatenate the outputs.

    ``fn`` returns a tensor or a tuple of tensors (each with the same leading dim as its inputs), so
    ``K`` particles of a large field fit in memory. ``None`` runs everything at once.
    """
    if not tensors:
        raise ValueError("chunked needs at least one tensor")
    n = tensors[0].shape[0]
    if any(t.shape[0] != n for t in tensors):
        raise ValueError(f"all tensors must share dim 0; got {[tuple(t.shape) for t in tensors]}")
    if max_batch_size is None or max_batch_size >= n:
        return fn(*tensors)
    if max_batch_size < 1:
        raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
    outs = [fn(*(t[i : i + max_batch_size] for t in tensors)) for i in range(0, n, max_batch_size)]
    if isinstance(outs[0], tuple):
        return tuple(torch.cat(parts) for parts in zip(*outs))
    return torch.cat(outs)


class ParticleGenerators(list):
    """Per-particle generators plus a separate generator for the joint draws (resampling) of the system.

    With ``group`` (a ``torch.distributed`` process group, or ``torch.distributed.group.WORLD``) the particle
    system is *sharded*: this rank holds an equal, contiguous share of the particles (rank ``r`` holds particles
    ``r n, ..., (r + 1) n - 1``) and their generators, and ``resampling`` must be seeded identically on every
    rank. Resampling is then global (:func:`sharded_resample_if`), and a sharded run gives the particles of the
    unsharded run with the same generators.
    """

    def __init__(self, particles, resampling: torch.Generator, group=None):
        super().__init__(particles)
        self.resampling, self.group = resampling, group


def joint_generator(generator: Generator) -> torch.Generator | None:
    """The generator for a joint draw over one particle system (the first one of a per-particle list)."""
    if isinstance(generator, ParticleGenerators):
        return generator.resampling
    if generator is None or isinstance(generator, torch.Generator):
        return generator
    generators = list(generator)
    if not generators:
        raise ValueError("got an empty list of generators")
    return generators[0]


def all_gather_cat(x: Tensor, group) -> Tensor:
    """Concatenate every rank's ``x`` (equal shapes) along dim 0, in rank order."""
    import torch.distributed as dist

    parts = [torch.empty_like(x) for _ in range(dist.get_world_size(group))]
    dist.all_gather(parts, x.contiguous(), group=group)
    return torch.cat(parts)


def sharded_resample_if(
    log_weights: Tensor, threshold: float = 0.5, scheme: str = "systematic", *, generator: Generator = None, group=None,
    force: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """:func:`resample_if` over a particle system sharded across the ranks of ``group``.

    ``log_weights`` is this rank's ``(n,)`` share. The log-weights are all-gathered, every rank draws the same
    ancestors (``generator`` seeded alike on every rank) and keeps the ones of its own slots. Returns
    ``(ancestors, new_log_weights, resampled, ess)``: ancestors ``(n,)`` index the *global* particle set, the new
    log-weights are this rank's share normalised over all particles, and the ESS is the global one.
    """
    import torch.distributed as dist

    if log_weights.ndim != 1:
        raise ValueError(f"sharded resampling takes one particle system of shape (n,); got {tuple(log_weights.shape)}")
    lw_all = all_gather_cat(log_weights.double(), group)
    ancestors, new_lw, did = resample_if(lw_all, threshold, scheme, generator=generator, force=force)
    n, rank = log_weights.shape[0], dist.get_rank(group)
    mine = slice(rank * n, (rank + 1) * n)
    return ancestors[mine], new_lw[mine], did, _ess(_normalize(lw_all))


def gather_sharded(x: Tensor, ancestors: Tensor, group) -> Tensor:
    """This rank's new particles ``x_all[ancestors]`` from the global ancestors of :func:`sharded_resample_if`.

    Every rank receives all particles (an all-gather, the simple exchange that works on every backend); memory
    is ``world_size`` times one shard for the duration of the call.
    """
    return all_gather_cat(x, group)[ancestors]
