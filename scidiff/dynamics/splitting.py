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


def _pcn_step(run, z: Tensor, x: Tensor, c: Tensor, level: float, beta: float, generator):
    """One pCN move of every chain, restricted to ``{C > level}`` by rejection; returns the new state and the
    acceptance mask. pCN is reversible for ``N(0, I)``, so the restricted kernel keeps ``N(0, I)`` given
    ``C(T(z)) > level`` invariant (Au & Beck 2001; Papaioannou et al. 2015)."""
    xi = randn(z.shape, generator, device=z.device, dtype=z.dtype)
    proposal = math.sqrt(1 - beta**2) * z + beta * xi
    xp, cp = run(proposal)
    keep = cp > level
    mask = keep.reshape(-1, *([1] * (z.dim() - 1)))
    return torch.where(mask, proposal, z), torch.where(mask, xp, x), torch.where(keep, cp, c), keep


def _pcn_chains(run, z, x, c, level, beta, steps, generator):
    """``steps`` moves from each start: ``(chains, steps + 1, ...)`` latents, samples and event values (the starts
    first) and the number of accepted moves."""
    zs, xs, cs, accepted = [z], [x], [c], 0
    for _ in range(steps):
        z, x, c, keep = _pcn_step(run, z, x, c, level, beta, generator)
        accepted += int(keep.sum())
        zs.append(z)
        xs.append(x)
        cs.append(c)
    return torch.stack(zs, 1), torch.stack(xs, 1), torch.stack(cs, 1), accepted


def _adapt_beta(beta: float, rate: float, target: float = 0.44) -> float:
    """Papaioannou et al. (2015): scale the pCN step towards an acceptance rate of about ``target`` (0.44)."""
    return min(1.0, max(0.05, beta * math.exp(rate - target)))


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
        chain_z, chain_x, chain_c, accepted = _pcn_chains(run, z[seeds], x[seeds], c[seeds], level, beta,
                                                          length - 1, seed_gens if per_item else generator)
        evaluations += n - n_seeds
        rate = accepted / (n - n_seeds)
        acceptance.append(rate)
        betas.append(beta)
        # (chains, length) order, so that indicators of the next level read along each chain
        z, x, c = (v.flatten(0, 1) for v in (chain_z, chain_x, chain_c))
        indicator_shape = (n_seeds, length)
        beta = _adapt_beta(beta, rate)
        bar.update(1)
    bar.close()
    inside = c > 0
    return {"prob": math.exp(log_p), "log_prob": log_p, "cov": math.sqrt(cov2), "levels": levels,
            "fractions": fractions, "acceptance": acceptance, "betas": betas, "num_evaluations": evaluations,
            "samples": x[inside], "latents": z[inside], "event_values": c[inside], "next_beta": beta}


def autocorrelation_time(values: Tensor, lag: int = 1) -> float:
    """Integrated autocorrelation time, in units of ``lag`` steps, of a scalar along ``(chains, steps)`` chains.

    ``tau = 1 + 2 sum_k rho(k lag)``, with ``rho`` the autocorrelation about the pooled mean, averaged over chains,
    and the sum cut at the first non-positive term (the usual window for a positive, decaying ``rho``; Geyer 1992
    cuts pairs the same way). ``tau = 1`` for independent draws; ``chains * steps / tau`` draws are worth as much as
    that many independent ones (the effective sample size). A constant scalar gives ``inf``.
    """
    v = values.to(torch.float64)
    v = v - v.mean()
    var = float(v.square().mean())
    if var == 0.0:
        return math.inf
    tau = 1.0
    for k in range(lag, v.shape[1], lag):
        rho = float((v[:, :-k] * v[:, k:]).mean()) / var
        if rho <= 0.0:
            break
        tau += 2.0 * rho
    return tau


def batch_means_time(values: Tensor) -> float:
    """Autocorrelation time of a scalar from the spread of its chain means: ``steps Var(chain means) / Var``.

    The batch-means estimate (each chain one batch): independent draws give 1, chains that stay where they
    started give their length. It and :func:`autocorrelation_time` estimate the same quantity for long chains and
    scatter differently for short ones (the lag sum loses its long lags, the chain means their number), so the
    smaller effective sample size of the two is the safer one.
    """
    v = values.to(torch.float64)
    var = float(v.var(unbiased=False))
    if var == 0.0:
        return math.inf
    return max(1.0, v.shape[1] * float(v.mean(1).var(unbiased=False)) / var)


def sample_event_splitting(
    denoiser,
    event: EventFn,
    shape: Sequence[int],
    sigmas: Tensor,
    *,
    transform: Callable[[Tensor], Tensor] | None = None,
    n_level: int | None = None,
    chains: int | None = None,
    thin: int = 5,
    burn: int = 10,
    target_acceptance: float = 0.44,
    level_fraction: float = 0.1,
    beta: float = 0.6,
    max_levels: int = 20,
    sampler: str = "heun",
    batch_size: int | None = None,
    generator: torch.Generator | None = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float32,
    progress: bool = False,
    **sampler_kwargs,
) -> dict:
    """``shape[0]`` samples of the prior conditioned on ``C(x) > 0``, with ``P(E)``, by subset simulation in latent
    space followed by pCN chains restricted to the event.

    Subset simulation (:func:`event_probability_splitting`) ends with a population inside ``E`` whose latents are
    distributed as ``N(0, I)`` restricted to ``{C(T(z)) > 0}``: ``T`` of them is the prior (as sampled) conditioned
    on ``E``, with no approximation of the conditional score. That population is correlated (it grew from a few
    seeds), so ``chains`` of its members are moved on by the same restricted pCN kernel, which keeps that law
    invariant: ``burn`` moves (the step adapted towards 0.44 acceptance), then one sample every ``thin`` moves.
    Acceptance needs only the event indicator, never a density ratio, so nothing degenerates as ``C`` sharpens.

    Args:
        shape: ``(N, *event_shape)``: ``N`` samples returned (the last ones of a chain dropped when ``chains`` does
            not divide ``N``).
        n_level: samples per subset-simulation level (default ``N``).
        chains: chains of the final stage (default ``N // 10``, at most the population inside ``E``), started from
            members spread evenly over that population (distinct seeds of the last level where possible).
        thin, burn: moves between kept samples, and moves before the first. ``burn`` must also undo the
            population's correlation through shared ancestors, which no ESS here sees: on the Lorenz-63 prior 100
            moves (about five autocorrelation times) were needed where 20 were not (docs/events.md).
        target_acceptance: the acceptance rate the step is adapted to during ``burn`` (Papaioannou et al.'s 0.44;
            on the Lorenz-63 prior 0.2 mixes faster, docs/events.md).
        Others: as in :func:`event_probability_splitting`; ``generator`` is one ``torch.Generator`` (or ``None``).

    Returns:
        ``{"samples", "latents", "event_values", "prob", "log_prob", "cov", "tau", "tau_lags", "tau_means", "ess",
        "acceptance", "beta", "chains", "num_evaluations", "splitting"}``: ``N`` samples in the denoiser's units
        (step-major: the first ``chains`` are one per chain), their latents and ``C``; subset simulation's ``P(E)``
        and c.o.v.; the autocorrelation time of ``C`` between kept samples, ``tau``, the larger of ``tau_lags``
        (:func:`autocorrelation_time`) and ``tau_means`` (:func:`batch_means_time`), and the effective sample size
        ``N / tau`` (neither sees correlation between chains that share an ancestor, which ``burn`` moves reduce);
        the acceptance rate and step of the kept moves; the number of chains; the sampler runs of the whole call;
        the subset-simulation result.
    """
    n, event_shape = int(shape[0]), tuple(int(s) for s in shape[1:])
    if n < 1:
        raise ValueError(f"shape[0] (the samples wanted) must be >= 1, got {n}")
    if thin < 1 or burn < 0:
        raise ValueError(f"thin must be >= 1 and burn >= 0, got thin={thin}, burn={burn}")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError("sample_event_splitting takes one torch.Generator (or None), not per-sample generators")
    split = event_probability_splitting(
        denoiser, event, (n_level or n, *event_shape), sigmas, transform=transform, level_fraction=level_fraction,
        beta=beta, max_levels=max_levels, sampler=sampler, batch_size=batch_size, generator=generator, device=device,
        dtype=dtype, progress=progress, **sampler_kwargs)
    found = len(split["latents"])
    k = min(found, max(1, n // 10)) if chains is None else int(chains)
    if not 1 <= k <= found:
        raise ValueError(f"chains must be in [1, {found}] (the population inside the event), got {chains}")
    per_chain = -(-n // k)
    # evenly spaced over the population, which is in (seed chain, step) order: distinct seeds where possible
    start = torch.linspace(0, found - 1, k).round().long().to(split["latents"].device)
    z, x, c = split["latents"][start], split["samples"][start], split["event_values"][start]
    run = _latent_map(denoiser, event, sigmas, transform, sampler, batch_size or len(z), sampler_kwargs)
    from tqdm.auto import tqdm

    step = split["next_beta"]
    for _ in tqdm(range(burn), desc="burn-in", disable=not progress):
        z, x, c, keep = _pcn_step(run, z, x, c, 0.0, step, generator)
        step = _adapt_beta(step, float(keep.double().mean()), target_acceptance)
    zs, xs, cs, accepted = _pcn_chains(run, z, x, c, 0.0, step, thin * per_chain, generator)
    kept = slice(thin, None, thin)
    # the moves' own steps read at the thinning lag, and the spread of the chains' means; the larger is kept
    tau_lags, tau_means = autocorrelation_time(cs[:, 1:], lag=thin), batch_means_time(cs[:, kept])
    tau = max(tau_lags, tau_means)
    pick = lambda v: v[:, kept].transpose(0, 1).flatten(0, 1)[:n]  # noqa: E731 - step-major, then truncate
    return {"samples": pick(xs), "latents": pick(zs), "event_values": pick(cs), "prob": split["prob"],
            "log_prob": split["log_prob"], "cov": split["cov"], "tau": tau, "tau_lags": tau_lags, "tau_means": tau_means, "ess": n / tau,
            "acceptance": accepted / (k * thin * per_chain), "beta": step, "chains": k,
            "num_evaluations": split["num_evaluations"] + k * (burn + thin * per_chain), "splitting": split}
