"""Reflected vs clamped vs unconstrained Schrodinger bridge on a 2D bounded target (a five-petal flower).

A bridge is trained between a central Gaussian and Gaussians at the petal tips, both restricted to the flower,
once per training method: [SF]^2M bridge matching (simulation-free, reflection only when sampling) and the
Reflected SB's IPF (forward-backward training on reflected simulated paths). Each network is then integrated
with reflection, with projection at every step (clamping) and with no constraint. Printed: Sinkhorn divergence
to held-out target samples (the same samples for every row), its ratio to the same-distribution noise floor,
paths that ever left the domain, training and sampling wall time.

    python benchmarks/bridges.py                 # small default (a few minutes on one core)
    python benchmarks/bridges.py --methods matching --n-iter 5000 --n-eval 4000 --domain polygon
"""

from __future__ import annotations

import argparse

import torch

from scidiff.bridges.problems import markdown_table, run_problem


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--domain", choices=["flower", "polygon"], default="flower")
    p.add_argument("--n-iter", type=int, default=1500)
    p.add_argument("--n-eval", type=int, default=1000)
    p.add_argument("--n-steps", type=int, default=100)
    p.add_argument("--sigma", type=float, default=0.3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--methods", nargs="+", choices=["matching", "ipf"], default=["matching", "ipf"])
    p.add_argument("--ipf-stages", type=int, default=5)
    p.add_argument("--ipf-iter", type=int, default=300, help="AdamW steps per IPF half-stage")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    domain = {"type": "flower", "petals": 5, "radius": 1.0, "amplitude": 0.4}
    if args.domain == "polygon":
        domain = {"type": "polygon", "corners": 5, "radius": 1.2}
    common = {"domain": domain, "n_iter": args.n_iter, "n_eval": args.n_eval, "n_steps": args.n_steps,
              "sigma": args.sigma, "seed": args.seed, "ipf": {"n_stages": args.ipf_stages, "n_iter": args.ipf_iter}}
    reports = [run_problem({**common, "method": m}) for m in args.methods]
    print(f"domain={args.domain} sigma={args.sigma} matching n_iter={args.n_iter} ipf {args.ipf_stages} stages x 2 x "
          f"{args.ipf_iter} iter, n_eval={args.n_eval} n_steps={args.n_steps} (one network per training method, "
          "shared by its three samplers)\n")
    print(markdown_table(reports))


if __name__ == "__main__":
    main()
