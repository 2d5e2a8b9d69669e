"""Twisted SMC after a weight collapse, on a closed form: plain, tempered twist, MALA rejuvenation, both; fewer
resamplings at small sigma (a lower ESS threshold there, or a floor on the twist's ``s``); independent runs pooled by
their evidence (``pool_event_smc``).

A Gaussian prior (``scidiff.oracles.Gaussian``, d = 4) with a linear event ``a . x > b`` at P(E) = 0.1 %: the
conditional law of ``a . x`` is a truncated normal. The twist is switched on late (``sigma_max = 0.5`` on a 100-level
reverse-SDE chain), so that the weights collapse at once. Per seed: the KS distance of the ``N`` resampled draws'
``a . x`` to the truncated normal, the lineages (distinct first-level ancestors), the minimum ESS, the resamplings and
the SMC evidence over P(E). ``s_floor`` is in units of the standard deviation of ``a . x``; the pooled rows run
``R`` independent samplers of ``N / R`` particles each (the same cost) and pool them. Run: ``OMP_NUM_THREADS=1 python benchmarks/event_smc_gaussian.py`` (about 20 s).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch
from scipy import stats

from scidiff.diffusion import karras_sigmas
from scidiff.dynamics import linear_event, pool_event_smc, sample_event_smc

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "dynamics"))
from gaussian_event import D, _problem, _truncated_moments  # noqa: E402  (the tests' closed form)

CONFIGS = {
    "plain": dict(),
    "twist tempered over 5 levels": dict(twist_levels=5),
    "10 MALA moves after each resampling": dict(rejuvenate=10),
    "both": dict(twist_levels=5, rejuvenate=10),
    "ESS threshold 0.05 below sigma = 0.3": dict(late_threshold=0.05),
    "s floor 0.3 sd": dict(s_floor=0.3),
    "4 runs pooled": dict(runs=4),
    "4 runs pooled, tempered, moves": dict(runs=4, twist_levels=5, rejuvenate=10),
}


def run_config(oracle, event, n, sigmas, seed, options, sd):
    """One configuration: ``runs`` independent samplers of ``n / runs`` particles, pooled by their evidence."""
    options = dict(options)
    runs = options.pop("runs", 1)
    if "s_floor" in options:
        options["s_floor"] *= sd
    g = torch.Generator().manual_seed(seed)
    outs = [sample_event_smc(oracle, event, (n // runs, D), sigmas, sigma_max=0.5, dtype=torch.float64,
                             generator=g, **options) for _ in range(runs)]
    pooled = pool_event_smc(outs, generator=g, num_samples=n) if runs > 1 else outs[0]
    ess = [min(o["ess"]) for o in outs]
    return pooled, min(ess), sum(o["resampled"] for o in outs), outs[0]["acceptance"]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--particles", type=int, default=500)
    p.add_argument("--seeds", type=int, default=4)
    p.add_argument("--p-event", type=float, default=0.001)
    a = p.parse_args(argv)
    oracle, direction, b, mu, sd, mean, cov = _problem(a.p_event)
    *_, u_law = _truncated_moments(direction, b, mu, sd, mean, cov)
    sigmas = karras_sigmas(100, 0.002, 80.0)
    print(f"P(E) = {a.p_event}, {a.particles} particles, 100 levels, twist from sigma = 0.5; one-sample KS critical "
          f"value {1.358 / math.sqrt(a.particles):.3f}")
    print("| configuration | KS per seed | lineages | min ESS | resamplings | evidence / P(E) | acceptance |")
    print("|---|---|---|---|---|---|---|")
    for name, options in CONFIGS.items():
        rows = []
        for seed in range(a.seeds):
            out, min_ess, resampled, acceptance = run_config(oracle, linear_event(direction, b), a.particles, sigmas,
                                                             seed, options, sd)
            ks = stats.kstest((out["samples"] @ direction).numpy(), u_law.cdf).statistic
            rows.append((ks, out["lineages"], min_ess, resampled, math.exp(out["log_evidence"]) / a.p_event,
                         acceptance))
        col = lambda i, f: " / ".join(f.format(r[i]) for r in rows)  # noqa: E731
        print(f"| {name} | {col(0, '{:.3f}')} | {col(1, '{}')} | {col(2, '{:.0f}')} | {col(3, '{}')} "
              f"| {col(4, '{:.2f}')} | {col(5, '{:.2f}')} |")


if __name__ == "__main__":
    main()
