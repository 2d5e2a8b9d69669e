"""Reflected vs clamped vs unconstrained Schrodinger bridges on bounded domains: a 2D flower and box-bounded fields.

A bridge is trained between a central Gaussian and Gaussians at the petal tips, both restricted to the flower,
once per training method: [SF]^2M bridge matching (simulation-free, reflection only when sampling) and the
Reflected SB's IPF (forward-backward training on reflected simulated paths). Each network is then integrated
with reflection, with projection at every step (clamping) and with no constraint. Printed: Sinkhorn divergence
to held-out target samples (the same samples for every row), its ratio to the same-distribution noise floor,
paths that ever left the domain, samples that end on the boundary (where clamping piles mass), training and
sampling wall time. A second table does the same for fields bounded in a box: 32-value saturation profiles in
[0.1, 0.9] (problems/bridges_box_fields), bridge matching from dry to wet logit-normal random fields.

    python benchmarks/bridges.py                 # small default (a few minutes on one core)
    python benchmarks/bridges.py --problems fields --fields-iter 3000
    python benchmarks/bridges.py --methods matching --n-iter 5000 --n-eval 4000 --domain polygon
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import yaml

from scidiff.bridges.problems import markdown_table, run_problem

ROOT = Path(__file__).resolve().parents[1]


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
    p.add_argument("--problems", nargs="+", choices=["flower", "fields"], default=["flower", "fields"])
    p.add_argument("--fields-iter", type=int, default=1500, help="bridge-matching steps of the fields problem")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    domain = {"type": "flower", "petals": 5, "radius": 1.0, "amplitude": 0.4}
    if args.domain == "polygon":
        domain = {"type": "polygon", "corners": 5, "radius": 1.2}
    if "flower" in args.problems:
        common = {"domain": domain, "n_iter": args.n_iter, "n_eval": args.n_eval, "n_steps": args.n_steps,
                  "sigma": args.sigma, "seed": args.seed,
                  "ipf": {"n_stages": args.ipf_stages, "n_iter": args.ipf_iter}}
        reports = [run_problem({**common, "method": m}) for m in args.methods]
        print(f"domain={args.domain} sigma={args.sigma} matching n_iter={args.n_iter} ipf {args.ipf_stages} stages x 2 "
              f"x {args.ipf_iter} iter, n_eval={args.n_eval} n_steps={args.n_steps} (one network per training method, "
              "shared by its three samplers)\n")
        print(markdown_table(reports) + "\n")
    if "fields" in args.problems:
        cfg = yaml.safe_load((ROOT / "problems" / "bridges_box_fields" / "config.yaml").read_text())
        cfg.update(n_iter=args.fields_iter, seed=args.seed)  # n_eval as in the problem file
        print(f"fields bounded in a box: {cfg['domain']['dim']} values in [{cfg['domain']['lo']}, {cfg['domain']['hi']}], "
              f"sigma={cfg['sigma']}, matching n_iter={cfg['n_iter']}, n_eval={cfg['n_eval']}, n_steps={cfg['n_steps']}, "
              f"Sinkhorn reg={cfg['sinkhorn_reg']} ('on the boundary': fields with a value at a bound)\n")
        print(markdown_table(run_problem(cfg)))


if __name__ == "__main__":
    main()
