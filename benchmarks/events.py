"""Event sampling and event probabilities on the Lorenz-63 (or FitzHugh-Nagumo) trajectory prior, against Monte
Carlo truth.

Truth: many trajectories from the simulator itself (``scidiff.dynamics.simulate``): the event frequency and the
event-conditioned law. Events are ``max_t x(t) > threshold`` with thresholds at the simulator's quantiles of
``max_t x`` (default 50 %, 99 % and 99.9 %: a common, a rare and a very rare event). Three tables:

1. **The prior's tail.** A pool of unconditional prior samples (deterministic Heun): the prior's own P(E) (plain
   Monte Carlo, binomial standard error), the KS distance of its ``max_t x`` to the simulator's, and the KS distance
   of its conditional law (rejection from the pool) to the simulator's conditional law. Subset simulation
   (``scidiff.dynamics.event_probability_splitting``) gives the prior's P(E) where the pool holds too few events.
   This separates the prior's error from the samplers'.
2. **Event samplers** (``scidiff.dynamics.sample_event``, Finzi et al. 2023 guidance ``log Phi(C(x0_hat)/s)``):
   ``heun`` (the probability-flow ODE, the previous default), ``euler_maruyama`` (the reverse SDE) and ``pc`` (reverse
   SDE + one Langevin corrector per level, Song et al. 2021), and ``*_cut`` (guidance only at and below
   ``--sigma-cut``, where table 4 shows the approximation beating the constant P(E)), and ``smc_cut``
   (``scidiff.dynamics.sample_event_smc``: twisted SMC, Wu et al. 2023, with the same approximation as twist; its
   KS critical value uses the final effective sample size; ``smc_fine_cut``: a 96-level base chain;
   ``--smc-particles``: one run per particle count; each run also reports how many distinct first-level particles
   the final ones descend from, ``lineages``, and its estimate of the chain's P(E) goes to table 3;
   ``smc_move_cut``: five MALA moves after each resampling at sigma >= 0.3; ``smc_late_cut``: an ESS threshold of
   0.1 instead of 0.5 below sigma = 0.3; ``smc_floor_cut``: the twist's ``s`` floored at 0.5; ``smc_pool_cut``:
   four runs of a quarter of the particles pooled by their evidence, ``pool_event_smc``). KS of
   ``max_t x`` against the simulator's conditional law and against the prior's own conditional law
   (subset-simulation samples), the share of samples inside the event, RMS errors of the conditional mean and std
   trajectories (in marginal stds). Peers: rejection from the prior at equal wall time (the first pool samples that
   the sampler's wall time buys at the pool's rate), and subset simulation's final population (MCMC samples of the
   prior's conditional law).
3. **P(E) estimates** against the simulator: subset simulation, the pool's Monte Carlo fraction, rejection at the
   wall time of subset simulation, and (``--pf-ode``) the paper's ``log p(x) - log p(x | E)`` identity.
4. (``--n-calibration N``) **The guidance approximation on data** (``scidiff.dynamics.guidance_calibration``): on
   N noised simulator windows per level, the mean of ``Phi(C(x0_hat)/s)``, which the exact ``P(E | x_sigma)``
   keeps equal to P(E) at every level (law of total probability), and the log score against the constant P(E).

Tolerances (stated, not asserted): a KS distance passes when below the two-sample 5 % critical value
``1.358 sqrt((n + m) / (n m))`` (n samples against m simulator trajectories; for MCMC samples the effective n is
smaller, so the value is optimistic); P(E) passes within a factor of 3 (rare events) or 10 % (the 50 % event).

Run: ``OMP_NUM_THREADS=1 python benchmarks/events.py`` (the shipped prior) or ``--prior path.safetensors``;
``--system fitzhugh_nagumo`` for the FitzHugh-Nagumo prior (events on ``max_t v1``; the simulator is slower, so
``--n-mc 10000``).
"""

from __future__ import annotations

import argparse
import math
import time
from functools import partial
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from scipy import stats

from scidiff._files import atomic_path

from scidiff.diffusion import karras_sigmas, sample, seeded_generators
from scidiff.dynamics import (
    event_log_probability,
    event_probability_splitting,
    guidance_calibration,
    sample_event,
    sample_event_smc,
    sample_event_splitting,
    pool_event_smc,
    get_system,
    simulate,
    threshold_event,
)
from scidiff.dynamics.evaluation import ks_critical
from scidiff.priors import DiffusionPrior

SHIPPED = {"lorenz63": "lorenz63", "fitzhugh_nagumo": "fhn"}  # system -> shipped prior

SAMPLER_OPTIONS = {
    "heun": dict(sampler="heun"),
    "euler_maruyama": dict(sampler="euler_maruyama"),
    "pc": dict(sampler="pc", corrector_steps=1, snr=0.16),
    # guidance only at and below --sigma-cut (where the approximation beats the constant P(E) in log score)
    "heun_cut": dict(sampler="heun"),
    "pc_cut": dict(sampler="pc", corrector_steps=1, snr=0.16),
    # twisted SMC (sample_event_smc): the weights correct the approximation; twist only at and below --sigma-cut
    "smc_cut": dict(),
    # the same with a finer reverse-SDE base chain (96 levels instead of --steps): the chain's own discretisation
    # error, which the weights do not correct, shrinks
    "smc_fine_cut": dict(levels=96),
    # the same chain with five MALA moves after each resampling at sigma >= 0.3 (resample-move): the copies that
    # resampling makes move apart (sample_event_smc, event_mala_move). The trapezoid energy differences of a trained
    # network are approximate: steps tuned to 90 % acceptance (at MALA's 57 % the tuned steps grow to ~5 sigma^2),
    # and no moves below sigma = 0.3 (moves at every level collapse the later weights on this prior, docs/events.md)
    "smc_move_cut": dict(rejuvenate=5, target_acceptance=0.9, langevin_step=0.05, move_sigma_min=0.3),
    # fewer resamplings at small sigma, where the twist's weight swings come from the denoiser's error: an ESS
    # threshold of 0.1 below sigma = 0.3 (0.5 above), or a floor of 0.5 (units of x) on the twist's s
    "smc_late_cut": dict(late_threshold=0.1, late_sigma=0.3),
    "smc_floor_cut": dict(s_floor=0.5),
    "smc_floor1_cut": dict(s_floor=1.0),
    # four independent runs of a quarter of the particles each, pooled by their evidence (pool_event_smc)
    "smc_pool_cut": dict(runs=4),
    "smc_pool_late_cut": dict(runs=4, late_threshold=0.1, late_sigma=0.3),
}


def monte_carlo(n: int, steps: int, seed: int, burn_in: int | None = None, cache: str | None = None,
                system: str = "lorenz63") -> torch.Tensor:
    """``(n, variables, time)`` trajectories from the simulator, in physical units.

    With ``cache`` (a folder) they are kept in a safetensors file named by ``(system, n, steps, seed, burn_in)`` and
    read back on the next run: 200 000 Lorenz-63 windows after the 3 000-step burn-in take about 5 minutes of one
    thread, 10 000 FitzHugh-Nagumo windows after 16 000 steps about 2 minutes.
    """
    burn = get_system(system).burn_in if burn_in is None else int(burn_in)
    path = None if cache is None else Path(cache) / f"{system}_mc_n{n}_t{steps}_seed{seed}_burn{burn}.safetensors"
    if path is not None and path.exists():
        return load_file(path)["x"]
    x = simulate(system, n, steps, burn_in=burn, generator=torch.Generator().manual_seed(seed))
    x = x.transpose(1, 2).float().contiguous()
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            save_file({"x": x}, str(tmp))
    return x


def pooled_splitting(prior, event, shape, sigmas, *, runs: int, n_level: int, chains: int | None = None,
                     generator: torch.Generator | None = None, **kwargs) -> dict:
    """``runs`` independent calls of ``sample_event_splitting`` with ``1 / runs`` of the samples, the samples per
    level and the chains each (the same compute as one call), pooled by their P(E) as ``pool_event_smc`` pools
    twisted-SMC runs: run ``r``'s samples share its weight ``P_r(E) / sum P(E)``, and P(E) is the mean.

    Measured, not an option of the library: on the stage-6 prior at 0.1 % it spreads the peak positions (one run
    keeps its last level's) but passes 1 of 2 runs and its P(E) falls to 0.23-0.34x (docs/events.md).

    The ESS of a weighted mean of a scalar: run ``r`` (share ``w_r``, ``n_r`` samples, autocorrelation time
    ``tau_r``) adds ``w_r^2 tau_r / n_r`` to its variance, so ``ESS = 1 / sum_r w_r^2 tau_r / n_r``.
    """
    n = int(shape[0])
    if runs < 1 or n % runs or n_level % runs or (chains is not None and chains % runs):
        raise ValueError(f"runs must divide the samples, n_level and chains; got {runs}, {n}, {n_level}, {chains}")
    parts = [sample_event_splitting(prior, event, (n // runs, *shape[1:]), sigmas, n_level=n_level // runs,
                                    chains=None if chains is None else chains // runs, generator=generator, **kwargs)
             for _ in range(runs)]
    sizes = [len(r["samples"]) for r in parts]
    pooled = pool_event_smc(
        [{"particles": r["samples"], "log_weights": torch.full((k,), -math.log(k), dtype=torch.float64),
          "log_evidence": r["log_prob"], "lineages": r["chains"]} for r, k in zip(parts, sizes)],
        generator=generator, num_samples=n)
    share = pooled["run_weights"]
    ess = 1.0 / sum(w * w * r["tau"] / k for w, r, k in zip(share, parts, sizes))
    prob = math.exp(pooled["log_evidence"])
    return {"samples": pooled["samples"], "prob": prob, "log_prob": pooled["log_evidence"],
            "cov": math.sqrt(sum((r["cov"] * r["prob"]) ** 2 for r in parts)) / (runs * prob), "ess": ess,
            "tau": n / ess, "run_weights": share, "acceptance": sum(r["acceptance"] for r in parts) / runs,
            "num_evaluations": sum(r["num_evaluations"] for r in parts), "runs": parts}


def conditional_errors(x: torch.Tensor, truth: torch.Tensor, scale: torch.Tensor) -> dict:
    """KS distance of ``max_t x`` (and its 5 % critical value) and RMS errors of conditional mean/std trajectories."""
    if len(x) < 2:
        return {"ks": float("nan"), "crit": float("nan"), "mean_err": float("nan"), "std_err": float("nan")}
    ks = stats.ks_2samp(x[:, 0].amax(1).numpy(), truth[:, 0].amax(1).numpy()).statistic
    s = scale[:, None]
    mean_err = (((x.mean(0) - truth.mean(0)) / s) ** 2).mean().sqrt()
    std_err = (((x.std(0) - truth.std(0)) / s) ** 2).mean().sqrt()
    return {"ks": float(ks), "crit": ks_critical(len(x), len(truth)), "mean_err": float(mean_err),
            "std_err": float(std_err)}


def ks_max(x: torch.Tensor, ref: torch.Tensor) -> float:
    return float(stats.ks_2samp(x[:, 0].amax(1).numpy(), ref[:, 0].amax(1).numpy()).statistic) if len(x) > 1 and len(
        ref) > 1 else float("nan")


def prior_pool(prior, n: int, sigmas, seed: int, batch: int = 256) -> tuple[torch.Tensor, float]:
    """``n`` unconditional prior samples in physical units and the wall time they took."""
    start, xs = time.perf_counter(), []
    for lo in range(0, n, batch):
        gens = seeded_generators(range(seed + lo, seed + min(n, lo + batch)))
        with torch.no_grad():
            xs.append(prior.denormalize(sample(prior, (len(gens), *prior.shape), sigmas, generator=gens,
                                               progress=False)))
    return torch.cat(xs), time.perf_counter() - start


def entry_trace(prior, event, sigmas, trace: list):
    """A sampler callback: after each step, the share of samples whose Tweedie mean ``D(x, sigma')`` (the prior's,
    unguided) lies in the event -- where along the noise levels the samples enter the event."""
    s = [float(v) for v in sigmas]

    def callback(info: dict) -> None:
        sigma = s[info["i"] + 1]
        x = info["x"]
        with torch.no_grad():
            x0 = prior(x, sigma) if sigma > 0 else x
            trace.append((sigma, float((event(prior.denormalize(x0)) > 0).float().mean())))

    return callback


def run(prior, *, quantiles, n_event: int, steps: int, n_mc: int, n_pool: int, n_split: int, samplers, seed: int,
        smc_particles=(), sigma_cut: float = 2.0, pf_ode: bool = False, burn_in: int | None = None,
        truth_cache: str | None = None, split_samples: int = 0, split_thin: int = 5, split_burn: int = 10,
        split_chains: int | None = None, split_target: float = 0.44, split_runs: int = 1,
        save_samples: str | None = None, n_like: int = 16, like_steps: int = 12, probes: int = 2, n_calibration: int = 0,
        calibration_sigmas=(10.0, 3.0, 1.0, 0.3, 0.05), system: str = "lorenz63") -> dict:
    shape = prior.shape
    mc = monte_carlo(n_mc, shape[-1], seed, burn_in, truth_cache, system)
    scale = mc.std((0, 2))
    sigmas = karras_sigmas(steps, prior.hparams.sigma_min, prior.hparams.sigma_max)
    pool, wall_pool = prior_pool(prior, n_pool, sigmas, seed + 10**6)
    rate = n_pool / wall_pool
    out = {"tail": [], "samplers": [], "estimates": [], "calibration": [], "traces": [], "ks_uncond": ks_max(pool, mc), "n_pool": n_pool,
           "rate": rate, "n_mc": n_mc}
    for q in quantiles:
        label = f"{100 * (1 - q):.3g} %"
        threshold = float(torch.quantile(mc[:, 0].amax(1), q))
        event = threshold_event(0, threshold)
        inside = event(mc) > 0
        p_mc, truth = float(inside.float().mean()), mc[inside]
        in_pool = pool[event(pool) > 0]
        p_pool = len(in_pool) / n_pool
        if n_calibration:
            rows = guidance_calibration(prior, event, prior.normalize(mc[:n_calibration]), calibration_sigmas,
                                        transform=prior.denormalize, generator=torch.Generator().manual_seed(seed))
            out["calibration"] += [dict(r, event=label) for r in rows]

        start = time.perf_counter()
        if n_split and split_samples:  # the population moved on by thinned pCN chains inside E
            sampler = sample_event_splitting if split_runs == 1 else partial(pooled_splitting, runs=split_runs)
            split = sampler(prior, event, (split_samples, *shape), sigmas, transform=prior.denormalize,
                            n_level=n_split, chains=split_chains, thin=split_thin, burn=split_burn,
                            target_acceptance=split_target, generator=torch.Generator().manual_seed(seed + 7))
        elif n_split:
            split = event_probability_splitting(prior, event, (n_split, *shape), sigmas, transform=prior.denormalize,
                                                generator=torch.Generator().manual_seed(seed + 7))
        else:  # skipped: the prior's conditional law falls back to rejection from the pool
            split = {"prob": p_pool, "cov": float("nan"), "samples": prior.normalize(in_pool), "num_evaluations": 0}
        wall_split = time.perf_counter() - start
        x_split = prior.denormalize(split["samples"])
        if save_samples:  # for later analysis: the conditional samples and the simulator's conditional windows
            path = Path(save_samples) / f"split_seed{seed}_q{q}.safetensors"
            path.parent.mkdir(parents=True, exist_ok=True)
            save_file({"samples": x_split.contiguous(), "truth": truth.contiguous()}, str(path))
        out["tail"].append({"event": label, "threshold": threshold, "p_mc": p_mc, "m": len(truth), "p_pool": p_pool,
                            "n_pool_e": len(in_pool), "ks_pool": ks_max(in_pool, truth),
                            "crit_pool": ks_critical(len(in_pool), len(truth)), "p_split": split["prob"],
                            "cov_split": split["cov"], "ks_split": ks_max(x_split, truth)})
        rows = out["samplers"]
        # one run per particle count for the SMC samplers
        runs = [(name, n) for name in samplers
                for n in ((smc_particles or [n_event]) if name.startswith("smc") else [n_event])]
        for name, n_run in runs:
            start = time.perf_counter()
            options = dict(SAMPLER_OPTIONS[name], sigma_max=sigma_cut if name.endswith("_cut") else math.inf)
            levels, n_runs = options.pop("levels", None), options.pop("runs", 1)
            chain = sigmas if levels is None else karras_sigmas(levels, prior.hparams.sigma_min, prior.hparams.sigma_max)
            method = f"event sampler, {name}"
            if name.startswith("smc"):
                gen = torch.Generator().manual_seed(seed)
                runs_out = [sample_event_smc(prior, event, (n_run // n_runs, *shape), chain, transform=prior.denormalize,
                                             generator=gen, **options) for _ in range(n_runs)]
                smc = runs_out[0] if n_runs == 1 else dict(
                    pool_event_smc(runs_out, generator=gen, num_samples=n_run),
                    resampled=sum(r["resampled"] for r in runs_out), moves=0)
                if n_runs > 1:  # the ESS trace: the pooled final ESS after each run's own minimum
                    smc["ess"] = [min(min(r["ess"]) for r in runs_out), smc["ess"]]
                    method += f", {n_runs} runs pooled"
                x = smc["samples"]  # n_run draws from the weighted particles (repeats where weights are uneven)
                # the level where the ESS is lowest (ess[i] is after the step to chain[i + 1]; the last is at 0)
                worst = min(range(len(runs_out[0]["ess"])), key=runs_out[0]["ess"].__getitem__)
                method += (f", {n_run} particles, {len(chain) - 1} levels (final ESS {smc['ess'][-1]:.0f}, "
                           f"min {min(smc['ess']):.0f} (at sigma {float(chain[min(worst + 1, len(chain) - 1)]):.2g}), "
                           f"{smc['resampled']} resamplings, {smc['lineages']} lineages"
                           + (f", {smc['moves']} x {options['rejuvenate']} moves accepted at {smc['acceptance']:.2f}"
                              if smc["moves"] else "") + ")")
                out["estimates"].append({"event": label, "p_mc": p_mc, "value": math.exp(smc["log_evidence"]),
                                         "method": f"twisted SMC evidence ({n_run} particles, {len(chain) - 1} "
                                                   "levels; the reverse-SDE chain's P(E))"})
            else:
                trace = []
                x = sample_event(prior, event, (n_event, *shape), sigmas, transform=prior.denormalize,
                                 generator=seeded_generators(range(seed, seed + n_event)), progress=False,
                                 callback=entry_trace(prior, event, sigmas, trace), **options)
                out["traces"].append({"event": label, "method": name, "trace": trace})
            wall = time.perf_counter() - start
            x = prior.denormalize(x).detach()
            x_in = x[event(x) > 0]
            errors = conditional_errors(x_in, truth, scale)
            if name.startswith("smc"):  # repeated draws: the critical value of the final effective sample size
                errors["crit"] = ks_critical(int(smc["ess"][-1]), len(truth))
            rows.append({"event": label, "method": method, "n": len(x_in),
                         "share": len(x_in) / n_run, "errors": errors,
                         "ks_prior": ks_max(x_in, x_split), "wall": wall})
            eq = pool[: min(n_pool, int(rate * wall))]
            acc = eq[event(eq) > 0]
            rows.append({"event": label, "method": f"rejection, wall of {name}", "n": len(acc),
                         "share": 1.0, "errors": conditional_errors(acc, truth, scale),
                         "ks_prior": ks_max(acc, x_split), "wall": len(eq) / rate})
            if pf_ode and name == "heun":
                opts = dict(transform=prior.denormalize, divergence="hutchinson", num_probes=probes)
                like_sigmas = karras_sigmas(like_steps, prior.hparams.sigma_min, prior.hparams.sigma_max)
                x_like = prior.normalize(x_in[:n_like])
                est = event_log_probability(prior, event, x_like, like_sigmas, generator=seeded_generators(len(x_like)),
                                            **opts)
                out["estimates"].append({"event": label, "p_mc": p_mc, "method": "PF-ODE identity (median)",
                                         "value": math.exp(est["median"])})
        if n_split:
            errors, method = conditional_errors(x_split, truth, scale), "subset simulation population"
            if "ess" in split:  # thinned chains: the critical value of their effective sample size
                errors["crit"] = ks_critical(int(split["ess"]), len(truth))
                if "runs" in split:  # pooled: each run's tau and share; the KS of the runs' samples unweighted
                    parts = split["runs"]
                    flat = prior.denormalize(torch.cat([r["samples"] for r in parts]))
                    taus = "/".join(f"{r['tau']:.2f}" for r in parts)
                    shares = "/".join(f"{w:.2f}" for w in split["run_weights"])
                    pooled = (f"{len(parts)} runs pooled (run shares {shares}; tau {taus}; KS of the runs' samples "
                              f"unweighted {ks_max(flat, truth):.3f})")
                else:
                    pooled = f"tau lags {split['tau_lags']:.2f}, chain means {split['tau_means']:.2f}"
                method = (f"subset simulation + pCN chains ({n_split} per level; {len(x_split)} samples, "
                          f"thin {split_thin}, burn {split_burn}, target acceptance {split_target}; "
                          f"tau {split['tau']:.2f} "
                          f"({pooled}), ESS {split['ess']:.0f}, "
                          f"acceptance {split['acceptance']:.2f}, {split['num_evaluations']} runs)")
            rows.append({"event": label, "method": method, "n": len(x_split), "share": 1.0,
                         "errors": errors, "ks_prior": 0.0, "wall": wall_split})
            runs_eq = split["num_evaluations"]  # rejection at equal compute: as many prior sampler runs
            eq = pool[: min(n_pool, runs_eq)]
            acc = eq[event(eq) > 0]
            rows.append({"event": label, "method": f"rejection, {len(eq)} runs (subset simulation: {runs_eq}; "
                         f"expected in E at equal runs {runs_eq * p_pool:.0f})", "n": len(acc), "share": 1.0,
                         "errors": conditional_errors(acc, truth, scale), "ks_prior": ks_max(acc, x_split),
                         "wall": len(eq) / rate})
            eq = pool[: min(n_pool, int(rate * wall_split))]
            out["estimates"] += [
                {"event": label, "p_mc": p_mc, "method": f"subset simulation ({split['num_evaluations']} runs, "
                 f"c.o.v. {split['cov']:.2f})", "value": split["prob"], "wall": wall_split},
                {"event": label, "p_mc": p_mc, "method": f"prior Monte Carlo, equal wall ({len(eq)} runs)",
                 "value": float((event(eq) > 0).float().mean()), "wall": len(eq) / rate},
            ]
        out["estimates"].append({"event": label, "p_mc": p_mc, "method": f"prior Monte Carlo, whole pool ({n_pool} "
                                 "runs)", "value": p_pool, "wall": wall_pool})
    return out


def tolerance(p_mc: float) -> float:
    return 1.1 if p_mc > 0.2 else 3.0


def print_tables(out: dict) -> None:
    print(f"Unconditional KS(max_t x) of the pool ({out['n_pool']} samples) against {out['n_mc']} simulator "
          f"trajectories: {out['ks_uncond']:.3f} (5 % critical value {ks_critical(out['n_pool'], out['n_mc']):.3f}); "
          f"pool rate {out['rate']:.1f} samples/s")
    print()
    print("| event | threshold | P(E) sim | prior MC P(E) (in E) | / sim | subset sim. P(E) (c.o.v.) | / sim "
          "| KS prior cond. (rejection) | crit. 5 % | KS subset-sim. samples |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in out["tail"]:
        se = math.sqrt(max(r["p_pool"] * (1 - r["p_pool"]), 1e-12) / out["n_pool"])
        print(f"| {r['event']} | {r['threshold']:.2f} | {r['p_mc']:.4g} | {r['p_pool']:.4g} ± {se:.2g} "
              f"({r['n_pool_e']}) | {r['p_pool'] / r['p_mc']:.2f} | {r['p_split']:.3g} ({r['cov_split']:.2f}) "
              f"| {r['p_split'] / r['p_mc']:.2f} | {r['ks_pool']:.3f} | {r['crit_pool']:.3f} | {r['ks_split']:.3f} |")
    print()
    print("| event | method | samples in E | share in E | KS vs simulator | crit. 5 % | pass | KS vs prior's law "
          "| mean err | std err | wall s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in out["samplers"]:
        e = r["errors"]
        ok = "yes" if e["ks"] < e["crit"] else "no"
        print(f"| {r['event']} | {r['method']} | {r['n']} | {r['share']:.3f} | {e['ks']:.3f} | {e['crit']:.3f} | {ok} "
              f"| {r['ks_prior']:.3f} | {e['mean_err']:.3f} | {e['std_err']:.3f} | {r['wall']:.1f} |")
    print()
    print("| event | P(E) sim | estimator | P(E) est. | est. / sim | pass |")
    print("|---|---|---|---|---|---|")
    for r in out["estimates"]:
        ratio = r["value"] / r["p_mc"] if r["p_mc"] > 0 else float("nan")
        tol = tolerance(r["p_mc"])
        ok = "yes" if 1 / tol <= ratio <= tol else "no"
        print(f"| {r['event']} | {r['p_mc']:.4g} | {r['method']} | {r['value']:.4g} | {ratio:.3g} | {ok} |")


def print_traces(traces: list, levels=(3.0, 1.0, 0.3, 0.1, 0.03, 0.01, 0.0)) -> None:
    if not traces:
        return
    print()
    print("Share of samples whose unguided Tweedie mean D(x, sigma) is inside the event, after the step to sigma:")
    print()
    print("| event | sampler | " + " | ".join(f"sigma ~ {v:g}" for v in levels) + " |")
    print("|---|---|" + "---|" * len(levels))
    for t in traces:
        cells = []
        for v in levels:
            sig, share = min(t["trace"], key=lambda r: abs(math.log(r[0] + 1e-4) - math.log(v + 1e-4)))
            cells.append(f"{share:.2f} ({sig:.2g})")
        print(f"| {t['event']} | {t['method']} | " + " | ".join(cells) + " |")


def print_calibration(rows: list) -> None:
    if not rows:
        return
    print()
    print("| event | sigma | P(E) of the windows | mean Phi(C(x0_hat)/s) | ratio | mean Phi in E | mean Phi outside E "
          "| log score | log score of constant P(E) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        p = r["p_event"]
        const = p * math.log(p) + (1 - p) * math.log(1 - p)
        print(f"| {r['event']} | {r['sigma']:g} | {p:.4f} | {r['mean_phi']:.4f} | {r['mean_phi'] / p:.2f} "
              f"| {r['mean_phi_in']:.3f} | {r['mean_phi_out']:.4f} | {r['log_score']:.4f} | {const:.4f} |")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--system", default="lorenz63", choices=list(SHIPPED),
                   help="the simulator of the truth; events are on the first variable (x, v1)")
    p.add_argument("--prior", default=None,
                   help="a .safetensors/.ckpt prior (default: the shipped prior of --system)")
    p.add_argument("--n-event", type=int, default=128, help="event-conditioned samples per event and sampler")
    p.add_argument("--steps", type=int, default=24, help="noise levels of every sampler")
    p.add_argument("--n-mc", type=int, default=200_000, help="simulator trajectories for the truth")
    p.add_argument("--n-pool", type=int, default=2048, help="unconditional prior samples (prior MC, rejection)")
    p.add_argument("--n-split", type=int, default=300,
                   help="samples per level of subset simulation (0: skip it; the prior's conditional law is then the "
                        "rejection sample of the pool)")
    p.add_argument("--split-samples", type=int, default=0,
                   help="conditional samples from subset simulation's final population moved on by pCN chains "
                        "(sample_event_splitting; 0: the population itself)")
    p.add_argument("--split-thin", type=int, default=5, help="pCN moves between kept samples")
    p.add_argument("--split-burn", type=int, default=10, help="pCN moves before the first kept sample")
    p.add_argument("--split-chains", type=int, default=None, help="chains of the final stage (default: samples / 10)")
    p.add_argument("--split-target", type=float, default=0.44, help="pCN acceptance aimed at in the burn-in")
    p.add_argument("--split-runs", type=int, default=1,
                   help="independent subset-simulation runs pooled by their P(E) (each with 1/R of the samples, "
                        "levels and chains; pooled_splitting)")
    p.add_argument("--save-samples", default=None, help="folder for the subset-simulation samples (safetensors)")
    p.add_argument("--samplers", nargs="*", default=["heun", "pc", "heun_cut", "pc_cut"], choices=list(SAMPLER_OPTIONS))
    p.add_argument("--smc-particles", type=int, nargs="*", default=[],
                   help="particle counts of the smc samplers, one run each (default: --n-event)")
    p.add_argument("--sigma-cut", type=float, default=2.0, help="guidance only at and below this level (*_cut)")
    p.add_argument("--quantiles", type=float, nargs="+", default=[0.5, 0.99, 0.999],
                   help="simulator quantiles of max_t x used as thresholds (0.99: a 1 %% event)")
    p.add_argument("--pf-ode", action="store_true", help="also the paper's PF-ODE identity for P(E) (slow)")
    p.add_argument("--n-calibration", type=int, default=0,
                   help="simulator windows for the check of the Tweedie-probit approximation (0: skip)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--burn-in", type=int, default=None,
                   help="RK4 steps before the truth's first saved state (default: the system's; 1000 gives the law "
                        "the benchmarks used before the burn-in was lengthened)")
    p.add_argument("--truth-cache", default=None, help="folder that keeps the simulator truth between runs")
    p.add_argument("--truth-only", action="store_true", help="only simulate (and cache) the truth")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    prior = DiffusionPrior.pretrained(SHIPPED[a.system]) if a.prior is None else DiffusionPrior.load(a.prior)
    prior.eval()
    if a.truth_only:
        monte_carlo(a.n_mc, prior.shape[-1], a.seed, a.burn_in, a.truth_cache, a.system)
        return
    start = time.perf_counter()
    out = run(prior, quantiles=a.quantiles, n_event=a.n_event, steps=a.steps, n_mc=a.n_mc, n_pool=a.n_pool,
              n_split=a.n_split, samplers=a.samplers, seed=a.seed, smc_particles=a.smc_particles,
              sigma_cut=a.sigma_cut, pf_ode=a.pf_ode, n_calibration=a.n_calibration,
              burn_in=a.burn_in, truth_cache=a.truth_cache, system=a.system, split_samples=a.split_samples,
              split_thin=a.split_thin, split_burn=a.split_burn, split_chains=a.split_chains, split_target=a.split_target,
              split_runs=a.split_runs,
              save_samples=a.save_samples)
    print(f"{a.system} prior {tuple(prior.shape)} ({a.prior or 'shipped'}); truth from {a.n_mc} simulator "
          f"trajectories; {a.steps} noise levels; {a.n_event} event samples per sampler; subset simulation with "
          f"{a.n_split} samples per level; total {time.perf_counter() - start:.0f} s")
    print()
    print_tables(out)
    print_traces(out["traces"])
    print_calibration(out["calibration"])


if __name__ == "__main__":
    main()
