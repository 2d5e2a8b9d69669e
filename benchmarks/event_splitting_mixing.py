"""Mixing of the restricted pCN chains of ``sample_event_splitting`` on the shipped Lorenz-63 prior, by the acceptance
rate the step is adapted to.

Subset simulation (500 samples per level) reaches the event ``max_t x > q-quantile`` of the simulator (seed-0 truth,
``benchmarks/events.py --truth-cache``); 50 chains start from members spread over the final population, adapt the
pCN step for 10 moves towards each target acceptance, then make 50 moves. Printed: the step, the acceptance, the
autocorrelation of ``C`` at lags 1 / 5 / 10 / 20 (pooled over chains) and the autocorrelation time in moves (lag sum
cut at the first non-positive term).

Run: ``OMP_NUM_THREADS=1 python benchmarks/event_splitting_mixing.py 0.99 0.44 0.2 0.05`` (3.4 min on one thread of
a shared 2-core CPU; needs ``outputs/tcache`` from ``benchmarks/events.py --seed 0 --truth-only --truth-cache
outputs/tcache``).
"""

import sys
import time

import torch
from safetensors.torch import load_file

from scidiff.diffusion import karras_sigmas
from scidiff.dynamics import event_probability_splitting, threshold_event
from scidiff.dynamics.splitting import _adapt_beta, _latent_map, _pcn_step
from scidiff.priors import DiffusionPrior


def main(q: float, targets, cache="outputs/tcache/lorenz63_mc_n200000_t64_seed0_burn3000.safetensors") -> None:
    torch.set_num_threads(1)
    prior = DiffusionPrior.pretrained("lorenz63").eval()
    sig = karras_sigmas(24, prior.hparams.sigma_min, prior.hparams.sigma_max)
    mc = load_file(cache)["x"]
    event = threshold_event(0, float(torch.quantile(mc[:, 0].amax(1), q)))
    g = torch.Generator().manual_seed(3)
    t0 = time.time()
    split = event_probability_splitting(prior, event, (500, *prior.shape), sig, transform=prior.denormalize,
                                        generator=g)
    print(f"subset simulation: P {split['prob']:.4g}, steps {split['betas']}, acceptance {split['acceptance']}, "
          f"next step {split['next_beta']:.3f}, {len(split['latents'])} inside E, {time.time() - t0:.0f} s", flush=True)
    run = _latent_map(prior, event, sig, prior.denormalize, "heun", 50, {})
    start = torch.linspace(0, len(split["latents"]) - 1, 50).round().long()
    for target in targets:
        t0 = time.time()
        z, x, c = split["latents"][start], split["samples"][start], split["event_values"][start]
        beta, cs, acc = split["next_beta"], [], []
        for i in range(60):
            z, x, c, keep = _pcn_step(run, z, x, c, 0.0, beta, g)
            if i < 10:
                beta = _adapt_beta(beta, float(keep.double().mean()), target)
            else:
                cs.append(c.clone())
                acc.append(float(keep.double().mean()))
        v = torch.stack(cs, 1).double()
        v = v - v.mean()
        var = float(v.square().mean())
        rho = [float((v[:, :-k] * v[:, k:]).mean()) / var for k in range(1, 30)]
        # the lag sum of scidiff.dynamics.autocorrelation_time, capped at lag 29 (as for the figures in the docs)
        cut = next((i for i, r in enumerate(rho) if r <= 0), len(rho))
        tau = 1 + 2 * sum(rho[:cut])
        print(f"target {target}: beta {beta:.3f} acc {sum(acc) / len(acc):.2f} rho(1,5,10,20) {rho[0]:.2f} "
              f"{rho[4]:.2f} {rho[9]:.2f} {rho[19]:.2f} tau_steps {tau:.1f} {time.time() - t0:.0f}s", flush=True)


if __name__ == "__main__":
    main(float(sys.argv[1]), [float(t) for t in sys.argv[2:]])
