"""Sampler overhead: wall time of each sampler divided by NFE x (one bare denoiser call), same process.

The denominator is the cost of the network alone, so the ratio is what the sampling loop adds on top of it
(target <= 1.10). Usage: python benchmarks/sampler_overhead.py [--res 32] [--batch 16] [--steps 20]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from scidiff.diffusion import SAMPLERS, karras_sigmas, sample
from scidiff.priors import DiffusionPrior


class Counting:
    def __init__(self, fn):
        self.fn, self.calls = fn, 0

    def __call__(self, x, sigma, **cond):
        self.calls += 1
        return self.fn(x, sigma, **cond)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--res", type=int, default=32)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    prior = DiffusionPrior([1, a.res, a.res], network_kwargs={"base_channels": 16, "channel_mults": [1, 2, 2]}).eval()
    x = torch.randn(a.batch, 1, a.res, a.res)
    sig = torch.full((a.batch,), 1.0)

    def one_call() -> float:
        t0 = time.perf_counter()
        with torch.no_grad():
            prior(x, sig)
        return time.perf_counter() - t0

    for _ in range(3):
        one_call()
    sigmas = karras_sigmas(a.steps)
    rows = []
    for name in SAMPLERS:
        walls, calls = [], []
        for r in range(a.repeats):
            bare = statistics.median(one_call() for _ in range(5))
            den = Counting(prior)
            t0 = time.perf_counter()
            sample(den, x.shape, sigmas, sampler=name, generator=torch.Generator().manual_seed(r), progress=False)
            walls.append((time.perf_counter() - t0) / (den.calls * bare))
            calls.append(den.calls)
        rows.append((name, calls[0], statistics.median(walls)))
    print(f"\nUNet 1x{a.res}x{a.res}, batch {a.batch}, {a.steps} steps, {a.threads} thread(s), "
          f"{sum(q.numel() for q in prior.parameters()) / 1e6:.2f} M parameters\n")
    print("| sampler | NFE | wall / (NFE x bare denoiser call) |")
    print("|---|---|---|")
    for name, nfe, ratio in rows:
        print(f"| {name} | {nfe} | {ratio:.3f} |")


if __name__ == "__main__":
    main()
