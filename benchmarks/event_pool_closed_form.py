"""Pooled subset-simulation runs against one run at equal compute, on the closed form.

The Gaussian prior and linear event of ``tests/dynamics/gaussian_event.py`` (Heun, 24 steps): ``pooled_splitting``
of ``benchmarks/events.py`` (``--split-runs``; 4 runs of a quarter of the samples per level, chains and samples)
and one ``sample_event_splitting`` call, 400 samples, ``thin 5, burn 10``, six seeds. Printed per seed: the KS
distance of ``a.x`` to the exact truncated normal, its 5 % critical value at the effective sample size, their
ratio, the ESS and P(E) over the exact value.

Run: ``OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/event_pool_closed_form.py 200 400`` (samples per level;
about 1 minute on one thread of a shared 2-core CPU).
"""

import math
import runpy
import sys
from pathlib import Path

import torch
from scipy import stats

from scidiff.diffusion import karras_sigmas
from scidiff.dynamics import linear_event, sample_event_splitting

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "dynamics"))
from gaussian_event import D, _problem, _truncated_moments  # noqa: E402 - the closed form of the tests

pooled_splitting = runpy.run_path(str(ROOT / "benchmarks" / "events.py"))["pooled_splitting"]


def main(levels, p_event: float = 0.001, seeds: int = 6, runs: int = 4) -> None:
    torch.set_num_threads(1)
    sigmas = karras_sigmas(24, 0.002, 80.0)
    oracle, a, b, mu, sd, mean, cov = _problem(p_event)
    _, _, u_law = _truncated_moments(a, b, mu, sd, mean, cov)
    for n_level in levels:
        for r in (1, runs):
            for seed in range(seeds):
                kw = dict(n_level=n_level, thin=5, burn=10, dtype=torch.float64,
                          generator=torch.Generator().manual_seed(seed))
                out = (sample_event_splitting(oracle, linear_event(a, b), (400, D), sigmas, **kw) if r == 1 else
                       pooled_splitting(oracle, linear_event(a, b), (400, D), sigmas, runs=r, **kw))
                ks = stats.kstest((out["samples"] @ a).numpy(), u_law.cdf).statistic
                crit = 1.358 / math.sqrt(out["ess"])
                print(f"P(E) {p_event} n_level {n_level} runs {r} seed {seed}: KS {ks:.3f} crit {crit:.3f} "
                      f"ratio {ks / crit:.2f} ESS {out['ess']:.0f} P/exact {out['prob'] / p_event:.2f}", flush=True)


if __name__ == "__main__":
    main([int(v) for v in sys.argv[1:]] or [200, 400])
