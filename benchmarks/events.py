"""Event sampling and event probabilities on the Lorenz-63 trajectory prior, against Monte Carlo truth.

Truth: many trajectories from the simulator itself (``scidiff.dynamics.simulate``), giving the event frequency and
the event-conditioned law. For each event ``max_t x(t) > threshold`` (thresholds at the simulator's 50 % and 99 %
quantiles: a common and a rare event) the table compares

* ``event``: the event-conditioned sampler (Finzi et al. 2023, ``scidiff.dynamics.sample_event``), and its
  probability-flow estimate of ``log P(E) = log p(x) - log p(x | E)``;
* ``subset simulation``: ``scidiff.dynamics.event_probability_splitting`` -- P(E) as a product of level
  probabilities with pCN moves in the latent space of the deterministic Heun sampler (no conditional ODE); its final
  population inside the event is a second set of conditional samples (MCMC, correlated within chains);
* ``rejection``: the peer -- unconditional samples of the same prior, kept when they fall in the event, drawn for
  the same wall time as the event sampler (its P(E) estimate is the accepted fraction), and again for the wall
  time of subset simulation (plain Monte Carlo from the prior at equal compute, the peer of its P(E)).

Conditional statistics (errors against the simulator's conditional law): KS distance of the event statistic
``max_t x``, RMS error of the conditional mean trajectory of x, y, z and of the conditional std (both divided by
the simulator's marginal std). Prints a Markdown table; asserts nothing.

Run: ``OMP_NUM_THREADS=1 python benchmarks/events.py`` (the shipped prior) or ``--prior path.safetensors``.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch
from scipy import stats

from scidiff.diffusion import karras_sigmas, sample, seeded_generators
from scidiff.dynamics import (
    event_log_probability,
    event_probability_splitting,
    sample_event,
    simulate,
    threshold_event,
)
from scidiff.priors import DiffusionPrior


def monte_carlo(n: int, steps: int, seed: int) -> torch.Tensor:
    """``(n, variables, time)`` trajectories from the simulator, in physical units."""
    return simulate("lorenz63", n, steps, generator=torch.Generator().manual_seed(seed)).transpose(1, 2).float()


def conditional_errors(x: torch.Tensor, truth: torch.Tensor, scale: torch.Tensor) -> dict:
    """KS distance of ``max_t x`` and RMS errors of the conditional mean/std trajectories (in marginal stds)."""
    if len(x) < 2:
        return {"ks": float("nan"), "mean_err": float("nan"), "std_err": float("nan")}
    ks = stats.ks_2samp(x[:, 0].amax(1).numpy(), truth[:, 0].amax(1).numpy()).statistic
    s = scale[:, None]
    mean_err = (((x.mean(0) - truth.mean(0)) / s) ** 2).mean().sqrt()
    std_err = (((x.std(0) - truth.std(0)) / s) ** 2).mean().sqrt()
    return {"ks": float(ks), "mean_err": float(mean_err), "std_err": float(std_err)}


def rejection(prior, event, budget_s: float, batch: int, sigmas, seed: int) -> tuple[torch.Tensor, int, float]:
    """Unconditional prior samples for ``budget_s`` seconds: the accepted ones, the number drawn, the wall time."""
    kept, drawn, start, i = [], 0, time.perf_counter(), 0
    while time.perf_counter() - start < budget_s:
        gens = seeded_generators(range(seed + i * batch, seed + (i + 1) * batch))
        with torch.no_grad():
            x = prior.denormalize(sample(prior, (batch, *prior.shape), sigmas, generator=gens, progress=False))
        kept.append(x[event(x) > 0])
        drawn, i = drawn + batch, i + 1
    return torch.cat(kept), drawn, time.perf_counter() - start


def run(prior, *, n_event: int, steps: int, n_mc: int, n_like: int, like_steps: int, probes: int, seed: int,
        sigma_start: float = 1.0, n_split: int = 500, quantiles=(0.5, 0.99)) -> list:
    shape = prior.shape
    mc = monte_carlo(n_mc, shape[-1], seed)
    scale = mc.std((0, 2))
    sigmas = karras_sigmas(steps, prior.hparams.sigma_min, prior.hparams.sigma_max)
    like_sigmas = karras_sigmas(like_steps, prior.hparams.sigma_min, prior.hparams.sigma_max)
    rows = []
    for q in quantiles:
        label = f"{'common' if q <= 0.5 else 'rare'} ({100 * (1 - q):g} %)"
        threshold = float(torch.quantile(mc[:, 0].amax(1), q))
        event = threshold_event(0, threshold)
        inside = event(mc) > 0
        p_mc, truth = float(inside.float().mean()), mc[inside]

        start = time.perf_counter()
        x_norm = sample_event(prior, event, (n_event, *shape), sigmas, transform=prior.denormalize,
                              generator=seeded_generators(range(seed, seed + n_event)), progress=False)
        wall_event = time.perf_counter() - start
        x_event = prior.denormalize(x_norm).detach()
        start = time.perf_counter()
        opts = dict(transform=prior.denormalize, divergence="hutchinson", num_probes=probes)
        x_like = x_norm[:n_like].detach()
        est = event_log_probability(prior, event, x_like, like_sigmas, generator=seeded_generators(n_like), **opts)
        wall_like = time.perf_counter() - start
        est_noised = event_log_probability(prior, event, x_like, like_sigmas, sigma_start=sigma_start,
                                           generator=seeded_generators(n_like), **opts)
        # the peer gets the time of the sampler and of the paper's likelihood estimate together
        acc, drawn, wall_rej = rejection(prior, event, wall_event + wall_like, n_event, sigmas, seed + 10**6)

        start = time.perf_counter()
        split = event_probability_splitting(prior, event, (n_split, *shape), sigmas, transform=prior.denormalize,
                                            generator=torch.Generator().manual_seed(seed + 7))
        wall_split = time.perf_counter() - start
        x_split = prior.denormalize(split["samples"])
        mc_kept, mc_drawn, wall_mc = rejection(prior, event, wall_split, n_event, sigmas, seed + 2 * 10**6)

        in_event = float((event(x_event) > 0).float().mean())
        p_rej = len(acc) / drawn
        estimates = {"PF-ODE mean": math.exp(est["log_prob"]), "PF-ODE median": math.exp(est["median"]),
                     f"sigma_start={sigma_start:g} mean": math.exp(est_noised["log_prob"]),
                     f"sigma_start={sigma_start:g} median": math.exp(est_noised["median"])}
        e_ev = conditional_errors(x_event[event(x_event) > 0], truth, scale)
        e_rej = conditional_errors(acc, truth, scale)
        rows.append({"event": label, "threshold": threshold, "p_mc": p_mc, "method": "event sampler",
                     "estimates": estimates, "n": n_event, "share": in_event, "errors": e_ev,
                     "wall": wall_event + wall_like})
        rows.append({"event": label, "threshold": threshold, "p_mc": p_mc, "method": "rejection from prior",
                     "estimates": {"accepted fraction": p_rej}, "n": len(acc), "share": 1.0, "errors": e_rej,
                     "wall": wall_rej})
        levels = f"{len(split['levels'])} levels, {split['num_evaluations']} runs, c.o.v. {split['cov']:.2f}"
        rows.append({"event": label, "threshold": threshold, "p_mc": p_mc, "method": "subset simulation",
                     "estimates": {levels: split["prob"]}, "n": len(x_split),
                     "share": 1.0, "errors": conditional_errors(x_split, truth, scale), "wall": wall_split})
        rows.append({"event": label, "threshold": threshold, "p_mc": p_mc, "method": "rejection, wall of subset sim.",
                     "estimates": {f"accepted fraction ({mc_drawn} runs)": len(mc_kept) / mc_drawn},
                     "n": len(mc_kept), "share": 1.0, "errors": conditional_errors(mc_kept, truth, scale),
                     "wall": wall_mc})
    return rows


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--prior", default=None, help="a .safetensors/.ckpt prior (default: the shipped lorenz63)")
    p.add_argument("--n-event", type=int, default=256, help="event-conditioned samples per event")
    p.add_argument("--steps", type=int, default=32, help="Heun steps of both samplers")
    p.add_argument("--n-mc", type=int, default=50_000, help="simulator trajectories for the truth")
    p.add_argument("--n-like", type=int, default=32, help="event samples used for the P(E) estimate")
    p.add_argument("--like-steps", type=int, default=24, help="Heun steps of the probability-flow likelihood")
    p.add_argument("--probes", type=int, default=2, help="Hutchinson probes per evaluation")
    p.add_argument("--sigma-start", type=float, default=1.0, help="noise level of the second P(E) estimator")
    p.add_argument("--n-split", type=int, default=500, help="samples per level of subset simulation")
    p.add_argument("--quantiles", type=float, nargs="+", default=[0.5, 0.99],
                   help="simulator quantiles of max_t x used as thresholds (0.99: a 1 %% event)")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    prior = DiffusionPrior.pretrained("lorenz63") if a.prior is None else DiffusionPrior.load(a.prior)
    prior.eval()
    rows = run(prior, n_event=a.n_event, steps=a.steps, n_mc=a.n_mc, n_like=a.n_like, like_steps=a.like_steps,
               probes=a.probes, seed=a.seed, sigma_start=a.sigma_start, n_split=a.n_split, quantiles=a.quantiles)
    print(f"Lorenz-63 prior {tuple(prior.shape)}; truth from {a.n_mc} simulator trajectories; Heun {a.steps} steps; "
          f"P(E) from {a.n_like} event samples, {a.like_steps} likelihood steps, {a.probes} Hutchinson probes; "
          f"subset simulation with {a.n_split} samples per level")
    print()
    print("| event | threshold | P(E) MC | method | samples in E | share in E | KS(max x) | mean err | std err | wall s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        e = r["errors"]
        print(f"| {r['event']} | {r['threshold']:.2f} | {r['p_mc']:.4f} | {r['method']} | {r['n']} | {r['share']:.3f} "
              f"| {e['ks']:.3f} | {e['mean_err']:.3f} | {e['std_err']:.3f} | {r['wall']:.1f} |")
    print()
    print("| event | P(E) MC | estimator | P(E) est. | est. / MC |")
    print("|---|---|---|---|---|")
    for r in rows:
        for name, value in r["estimates"].items():
            ratio = value / r["p_mc"] if r["p_mc"] > 0 else float("nan")
            print(f"| {r['event']} | {r['p_mc']:.4f} | {r['method']}: {name} | {value:.4g} | {ratio:.3g} |")

if __name__ == "__main__":
    main()
