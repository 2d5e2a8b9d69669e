"""Where in the window the peak of a rare-event sample lies: the prior's own conditional law (rejection from the
seeded pool of ``benchmarks/events.py``) against the simulator's and against saved subset-simulation samples.

For each event ``max_t x > q-quantile`` (seed-``S`` truth from ``--truth-cache``): the mean time index of the maximum
and the median excess over the threshold, for the simulator's conditional windows, for rejection from the first
``--n-pool`` prior samples (the same seeds as the benchmark's pool) and, when given, for the samples saved by
``benchmarks/events.py --save-samples DIR``.

Run: ``OMP_NUM_THREADS=1 python benchmarks/event_peak_time.py --seed 0 --n-pool 8192 --samples outputs/split_samples``
(about 2.5 min on one thread).
"""

import argparse
from pathlib import Path

import torch
from safetensors.torch import load_file

from scidiff.diffusion import karras_sigmas
from scidiff.priors import DiffusionPrior

from events import monte_carlo, prior_pool


def describe(name: str, x: torch.Tensor, threshold: float) -> str:
    m = x[:, 0].amax(1)
    return (f"| {name} | {len(x)} | {float(x[:, 0].argmax(1).float().mean()):.1f} | "
            f"{float((m - threshold).median()):.3f} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-pool", type=int, default=8192)
    p.add_argument("--quantiles", type=float, nargs="+", default=[0.99, 0.999])
    p.add_argument("--truth-cache", default="outputs/tcache")
    p.add_argument("--samples", default=None, help="folder of benchmarks/events.py --save-samples")
    a = p.parse_args()
    torch.set_num_threads(1)
    prior = DiffusionPrior.pretrained("lorenz63").eval()
    mc = monte_carlo(200_000, prior.shape[-1], a.seed, None, a.truth_cache)
    pool, _ = prior_pool(prior, a.n_pool, karras_sigmas(24, prior.hparams.sigma_min, prior.hparams.sigma_max),
                         a.seed + 10**6)
    print("| event, law | samples | mean time of the maximum (of 0-63) | median excess over the threshold |")
    print("|---|---|---|---|")
    for q in a.quantiles:
        threshold = float(torch.quantile(mc[:, 0].amax(1), q))
        label = f"{100 * (1 - q):.3g} %"
        print(describe(f"{label}, simulator", mc[mc[:, 0].amax(1) > threshold], threshold))
        print(describe(f"{label}, prior by rejection ({a.n_pool} runs)", pool[pool[:, 0].amax(1) > threshold],
                       threshold))
        saved = None if a.samples is None else Path(a.samples) / f"split_seed{a.seed}_q{q}.safetensors"
        if saved is not None and saved.exists():
            print(describe(f"{label}, subset simulation + pCN chains", load_file(saved)["samples"], threshold))


if __name__ == "__main__":
    main()
