"""Samples of a Lorenz-63 trajectory prior against the simulator: marginal statistics, the law of max_t x, dynamics.

Run: ``OMP_NUM_THREADS=1 python problems/lorenz/evaluate.py --prior lorenz63.safetensors`` (default: the shipped
prior). Prints a Markdown table for the model card.
"""

from __future__ import annotations

import argparse

import torch
from scipy import stats

from scidiff.diffusion import seeded_generators
from scidiff.dynamics import lorenz63_rhs, simulate
from scidiff.priors import DiffusionPrior


def residual(x: torch.Tensor, dt: float) -> torch.Tensor:
    """RMS of ``dx/dt - f(x)`` with central differences, per trajectory ``(B,)``: how well samples obey the ODE."""
    dxdt = (x[..., 2:] - x[..., :-2]) / (2 * dt)
    f = lorenz63_rhs(x[..., 1:-1].transpose(1, 2)).transpose(1, 2)
    return (dxdt - f).pow(2).mean((1, 2)).sqrt()


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--prior", default=None)
    p.add_argument("--n", type=int, default=512)
    p.add_argument("--steps", type=int, default=32)
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    prior = DiffusionPrior.pretrained("lorenz63") if a.prior is None else DiffusionPrior.load(a.prior)
    prior.eval()
    x = prior.sample(a.n, a.steps, generator=seeded_generators(a.n), progress=False).double()
    truth = simulate("lorenz63", 20000, prior.shape[-1], generator=torch.Generator().manual_seed(123)).transpose(1, 2)
    dt = 0.05
    rows = []
    for i, v in enumerate("xyz"):
        rows.append((f"mean of {v}", float(x[:, i].mean()), float(truth[:, i].mean())))
        rows.append((f"std of {v}", float(x[:, i].std()), float(truth[:, i].std())))
        rows.append((f"std of {v} within a window", float(x[:, i].std(1).mean()), float(truth[:, i].std(1).mean())))
    ks = stats.ks_2samp(x[:, 0].amax(1).numpy(), truth[:, 0].amax(1).numpy())
    rows.append(("KS distance of max_t x to the simulator's law", float(ks.statistic), 0.0))
    rows.append(("median RMS residual of dx/dt = f(x) (central differences)", float(residual(x, dt).median()),
                 float(residual(truth, dt).median())))
    print(f"{a.n} prior samples (Heun, {a.steps} steps) against 20000 simulator windows")
    print()
    print("| quantity | prior | simulator |")
    print("|---|---|---|")
    for name, ours, ref in rows:
        print(f"| {name} | {ours:.3f} | {ref:.3f} |")


if __name__ == "__main__":
    main()
