"""Event probabilities by subset simulation in the latent space of a deterministic diffusion sampler.

A deterministic sampler (Heun, Euler or DDIM with ``eta = 0``) is a map ``x = T(z)`` from standard normal latents
``z`` (the start ``x_T = sigma_max z``) to samples of the prior, so the prior's event probability is a Gaussian
probability in latent space,

    P(E) = P_{z ~ N(0, I)}( C(T(z)) > 0 ).

Subset simulation (Au & Beck, Probabilistic Engineering Mechanics 16, 2001) writes a rare ``P(E)`` as a product of
conditional probabilities over nested, adaptively chosen levels ``L_1 < L_2 < ... < 0``,

    P(E) = P(C > L_1) prod_k P(C > L_{k+1} | C > L_k),

each level chosen as the ``(1 - p0)`` quantile of the current population, so that every factor is about ``p0``
and is estimated from ``n`` samples. The samples of ``{C > L_k}`` are grown from the ``p0 n`` seeds above the
level by Markov chains whose kernel is the preconditioned Crank-Nicolson proposal ``z' = sqrt(1 - beta^2) z +
beta xi`` (reversible with respect to ``N(0, I)``; Cotter, Roberts, Stuart & White, Statistical Science 2013),
rejected when ``C(T(z')) <= L_k``: a reversible kernel restricted by rejection keeps the restricted law invariant.
Its use inside subset simulation is that of Papaioannou, Betz, Zwirglmaier & Straub (Probabilistic Engineering
Mechanics 41, 2015), whose adaptive rule for ``beta`` (towards an acceptance rate of about 0.44) is used between
levels.

Unlike ``log p(x) - log p(x | E)`` (:func:`~scidiff.dynamics.event_log_probability`), nothing here integrates the
event-conditioned probability-flow ODE or needs the network's gradient: each evaluation is one unconditional
sampler run. The cost is ``n + (levels) (1 - p0) n`` sampler runs, against about ``1 / (P(E) delta^2)`` for plain
Monte Carlo from the prior at a relative error ``delta``: for ``P(E) = 1e-2`` the two are comparable, below that
subset simulation wins. What is estimated is the probability under the *sampler's* law (the prior as sampled), the
same law that rejection sampling from the prior draws.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from ..diffusion._utils import check_finite
from ..diffusion.random import Generator, randn
from ..diffusion.samplers import SAMPLERS
from .events import EventFn

DETERMINISTIC = ("heun", "euler", "ddim")


def _latent_map(denoiser, event, sigmas, transform, sampler, batch_size, sampler_kwargs):
    """``z -> (x, C(x))`` through the deterministic sampler, in chunks (the result does not depend on the chunking)."""
    fn = SAMPLERS[sampler]
    sigma_max = float(torch.as_tensor(sigmas)[0])

    def run(z: Tensor) -> tuple[Tensor, Tensor]:
        xs, cs = [], []
        with torch.no_grad():
            for chunk in z.split(batch_size):
                x = fn(denoiser, chunk * sigma_max, sigmas, progress=False, **sampler_kwargs)
                c = event(transform(x) if transform is not None else x)
                if c.shape != (chunk.shape[0],):
                    raise ValueError(f"the event function must return one value per batch item, shape "
                                     f"({chunk.shape[0]},); got {tuple(c.shape)}")
                check_finite(c, "event values C(T(z))")
                xs.append(x)
                cs.append(c.to(torch.float64))
        return torch.cat(xs), torch.cat(cs)

    return run


def _level_cov(indicator: Tensor, p: float) -> float:
    """Au & Beck's squared coefficient of variation of a level's fraction ``p`` from ``(chains, length)`` indicators.

    ``delta^2 = (1 - p) / (N p) (1 + gamma)``, ``gamma = 2 sum_tau (1 - tau / length) rho(tau)`` with ``rho`` the
    lag-``tau`` autocorrelation of the indicators along the chains (Au & Beck 2001, Eqs. 27-29). ``gamma = 0`` for
    independent samples (one chain step).
    """
    chains, length = indicator.shape
    n = chains * length
    if p <= 0.0:
        return math.inf
    ind = indicator.to(torch.float64)
    var = p * (1 - p)
    gamma = 0.0
    if var > 0:
        for tau in range(1, length):
            r = float((ind[:, :-tau] * ind[:, tau:]).mean()) - p * p
            gamma += 2 * (1 - tau * chains / n) * r / var
    return (1 - p) / (n * p) * (1 + max(gamma, 0.0))


def event_probability_splitting(
    denoiser,
    event: EventFn,
    shape: Sequence[int],
    sigmas: Tensor,
    *,
    transform: Callable[[Tensor], Tensor] | None = None,
    level_fraction: float = 0.1,
    beta: float = 0.6,
    max_levels: int = 20,
    sampler: str = "heun",
    batch_size: int | None = None,
    generator: Generator = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float32,
    progress: bool = False,
    **sampler_kwargs,
) -> dict:
    """Estimate ``P(C(x) > 0)`` under a diffusion prior by subset simulation with pCN moves in latent space.

    Args:
        denoiser, event, transform: as in :func:`~scidiff.dynamics.sample_event` (``C`` is evaluated on
            ``transform(x)``).
        shape: ``(n, *event_shape)``; ``n`` samples per level.
        sigmas: the deterministic sampler's schedule (``sigmas[0]`` scales the latent).
        level_fraction: ``p0``, the conditional probability of each intermediate level (Au & Beck recommend 0.1;
            ``p0 n`` must divide ``n``).
        beta: initial pCN step (``0 < beta <= 1``; 1 proposes independent latents), adapted between levels.
        max_levels: refuse to go deeper (``P(E) < p0^max_levels`` or an event the sampler never reaches).
        sampler: ``"heun"``, ``"euler"`` or ``"ddim"`` (deterministic: ``x`` must be a function of ``z``).
        batch_size: sampler runs per network batch (default: all at once); does not change the result.
        generator: a ``torch.Generator`` (or per-sample generators of length ``n``) for the latents and moves.

    Returns:
        ``{"prob", "log_prob", "cov", "levels", "fractions", "acceptance", "betas", "num_evaluations",
        "samples", "latents"}``: the estimate, its log, Au & Beck's coefficient of variation (levels treated as
        independent, chain correlation included), the intermediate thresholds, the fraction kept at each level,
        the pCN acceptance rate and step of each level, the sampler runs used, and the final population's members
        inside the event (MCMC samples of ``p(x | E)`` under the sampler's law, correlated within chains) with
        their latents.
    """
    n, event_shape = int(shape[0]), tuple(int(s) for s in shape[1:])
    if not 0.0 < level_fraction < 1.0:
        raise ValueError(f"level_fraction must be in (0, 1), got {level_fraction}")
    n_seeds = int(round(level_fraction * n))
    if n_seeds < 1 or n % n_seeds or n_seeds == n:
        raise ValueError(f"level_fraction * n must be a whole divisor of n smaller than n (the seeds per level); "
                         f"got level_fraction={level_fraction}, n={n}")
    if not 0.0 < beta <= 1.0:
        raise ValueError(f"beta (the pCN step) must be in (0, 1], got {beta}")
    if sampler not in DETERMINISTIC or sampler_kwargs.get("s_churn", 0) or sampler_kwargs.get("eta", 0):
        raise ValueError(f"subset simulation needs a deterministic sampler, one of {DETERMINISTIC} without churn "
                         f"or eta; got {sampler!r} with {sampler_kwargs}")
    if max_levels < 1:
        raise ValueError(f"max_levels must be >= 1, got {max_levels}")
    length = n // n_seeds
    run = _latent_map(denoiser, event, sigmas, transform, sampler, batch_size or n, sampler_kwargs)
    per_item = generator is not None and not isinstance(generator, torch.Generator)
    seed_gens = None

    z = randn((n, *event_shape), generator, device=device, dtype=dtype)
    x, c = run(z)
    log_p, cov2, evaluations = 0.0, 0.0, n
    levels, fractions, acceptance, betas = [], [], [], []
    indicator_shape = (n, 1)  # level 0: independent draws
    from tqdm.auto import tqdm

    bar = tqdm(total=max_levels, desc="subset simulation", disable=not progress)
    for _ in range(max_levels + 1):
        inside = int((c > 0).sum())
        if inside >= n_seeds:  # the event itself is no rarer than a level: finish with its fraction
            p = inside / n
            log_p += math.log(p)
            cov2 += _level_cov((c > 0).reshape(indicator_shape), p)
            fractions.append(p)
            break
        if len(levels) == max_levels:
            raise RuntimeError(f"subset simulation did not reach the event in {max_levels} levels "
                               f"(P(E) < {level_fraction}^{max_levels}, or the sampler never enters it); "
                               f"highest C reached: {float(c.max()):.4g}")
        order = torch.argsort(c, descending=True)
        level = 0.5 * float(c[order[n_seeds - 1]] + c[order[n_seeds]])
        p = n_seeds / n
        log_p += math.log(p)
        cov2 += _level_cov((c > level).reshape(indicator_shape), p)
        levels.append(level)
        fractions.append(p)
        seeds = order[:n_seeds]
        if per_item and seed_gens is None:
            seed_gens = list(generator)[:n_seeds]  # one stream per chain from here on
        zc, xc, cc = z[seeds], x[seeds], c[seeds]
        chain_z, chain_x, chain_c, accepted = [zc], [xc], [cc], 0
        for _step in range(length - 1):
            xi = randn(zc.shape, seed_gens if per_item else generator, device=zc.device, dtype=zc.dtype)
            proposal = math.sqrt(1 - beta**2) * zc + beta * xi
            xp, cp = run(proposal)
            keep = cp > level
            accepted += int(keep.sum())
            mask = keep.reshape(-1, *([1] * len(event_shape)))
            zc, xc, cc = torch.where(mask, proposal, zc), torch.where(mask, xp, xc), torch.where(keep, cp, cc)
            chain_z.append(zc)
            chain_x.append(xc)
            chain_c.append(cc)
        evaluations += n - n_seeds
        rate = accepted / (n - n_seeds)
        acceptance.append(rate)
        betas.append(beta)
        # (chains, length) order, so that indicators of the next level read along each chain
        z, x, c = (torch.stack(v, 1).flatten(0, 1) for v in (chain_z, chain_x, chain_c))
        indicator_shape = (n_seeds, length)
        beta = min(1.0, max(0.05, beta * math.exp(rate - 0.44)))  # Papaioannou et al. 2015: aim at ~0.44
        bar.update(1)
    bar.close()
    inside = c > 0
    return {"prob": math.exp(log_p), "log_prob": log_p, "cov": math.sqrt(cov2), "levels": levels,
            "fractions": fractions, "acceptance": acceptance, "betas": betas, "num_evaluations": evaluations,
            "samples": x[inside], "latents": z[inside]}
