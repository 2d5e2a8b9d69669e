"""Soak: many small posterior samples back to back in one process, resident memory measured as it goes.

Each method draws ``--calls`` posteriors one after another on a small trained-architecture prior (an MLP
DiffusionPrior on 16 x 16 fields, random weights: memory does not depend on what the weights learned) and a
sparse-sensor linear-Gaussian likelihood. Resident set size (psutil) is read every ``--every`` calls. Growth is
taken from the end of a warm-up (``--warmup`` calls: allocator pools, lazy imports, autograd caches) to the
last call. A positive control keeps every step's state through the sampler callback (the leak the samplers
avoid by design) so the table shows that the measurement sees a leak of that size.

    python benchmarks/soak.py                        # 1000 calls per method (about 10 minutes on one core)
    python benchmarks/soak.py --calls 200 --every 50
"""

from __future__ import annotations

import argparse
import gc
import time
import warnings

import psutil
import torch

from scidiff.diffusion import karras_sigmas, seeded_generators
from scidiff.inverse import afdps, dps, tds
from scidiff.likelihoods import LinearGaussianLikelihood
from scidiff.priors import DiffusionPrior

SHAPE = (1, 16, 16)


def rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


def problem(seed: int = 0):
    torch.manual_seed(seed)
    prior = DiffusionPrior(list(SHAPE), network="mlp", network_kwargs={"hidden": 64, "depth": 2}, ema_decay=0.0).eval()
    d = SHAPE[1] * SHAPE[2]
    rows = torch.randperm(d, generator=torch.Generator().manual_seed(seed))[:32]  # 32 of 256 pixels observed
    A = torch.eye(d)[rows]
    y = A @ torch.randn(d, generator=torch.Generator().manual_seed(seed + 1))
    return prior, LinearGaussianLikelihood.from_matrix(A, y, 0.1, SHAPE)


def methods(prior, lik, steps: int):
    sigmas = karras_sigmas(steps, 0.01, 10.0)
    kept: list = []

    def keep(state):  # the positive control: a caller that holds on to every step's state
        kept.append(state["x"].clone())

    return {
        "prior.sample (baseline)": lambda g: prior.sample(1, steps, generator=g, progress=False),
        "dps": lambda g: dps(prior, lik, (1, *SHAPE), sigmas, generator=g, progress=False).samples,
        "afdps (8 particles)": lambda g: afdps(prior, lik, (8, *SHAPE), sigmas, generator=g[0], progress=False).mean(),
        "tds (8 particles)": lambda g: tds(prior, lik, (8, *SHAPE), sigmas, generator=g[0], progress=False).mean(),
        "dps + callback keeping states (control)": lambda g: dps(prior, lik, (1, *SHAPE), sigmas, generator=g,
                                                                  progress=False, callback=keep).samples,
    }


def soak(fn, calls: int, every: int, warmup: int) -> dict:
    readings, start, checksum = [], time.perf_counter(), 0.0
    for i in range(1, calls + 1):
        out = fn(seeded_generators([i]))
        checksum += float(out.sum())  # a scalar leaves the call; the tensors do not
        if i == warmup or i % every == 0:
            readings.append((i, rss_mb()))
    wall = time.perf_counter() - start
    base = dict(readings)[warmup]
    last = readings[-1][1]
    return {"readings": readings, "growth_mb": last - base, "per_call_kb": (last - base) * 1024 / (calls - warmup),
            "wall_s": wall, "checksum": checksum}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--calls", type=int, default=1000)
    p.add_argument("--every", type=int, default=100)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message=".*effective sample size collapsed", category=RuntimeWarning)
    prior, lik = problem()
    print(f"{args.calls} posterior draws per method, {args.steps} steps each, fields {SHAPE}; RSS at start "
          f"{rss_mb():.1f} MiB (torch {torch.__version__}, {args.threads} thread)\n")
    results = {}
    for name, fn in methods(prior, lik, args.steps).items():
        gc.collect()
        results[name] = soak(fn, args.calls, args.every, args.warmup)
    base = results["prior.sample (baseline)"]
    print(f"| method | RSS after warm-up (MiB) | RSS at end (MiB) | growth calls {args.warmup}->{args.calls} (MiB) "
          "| per call (KiB) | wall (s) | wall / baseline |")
    print("|---|---|---|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {dict(r['readings'])[args.warmup]:.1f} | {r['readings'][-1][1]:.1f} | {r['growth_mb']:+.2f} "
              f"| {r['per_call_kb']:+.2f} | {r['wall_s']:.1f} | {r['wall_s'] / base['wall_s']:.2f} |")
    print("\nRSS (MiB) at each reading:")
    calls = [i for i, _ in base["readings"]]
    print("| method | " + " | ".join(str(c) for c in calls) + " |")
    print("|---|" + "---|" * len(calls))
    for name, r in results.items():
        print(f"| {name} | " + " | ".join(f"{v:.1f}" for _, v in r["readings"]) + " |")


if __name__ == "__main__":
    main()
