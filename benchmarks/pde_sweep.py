"""Sampler-side settings of the trained Darcy prior, scored from one sampler run each (validation samples).

For every setting ``task:zeta_obs:zeta_pde:form:steps:samples`` one batched run of the guided sampler over the
validation cases (seed 1 by default, neither training nor test data) is scored in several ways from the same
samples: the error rate of the thresholded posterior mean of a and of single samples, the sampled u, the solver
on the mean a, the mean of the solver over the sampled a (:func:`scidiff.pde.problem.solve_samples`), the misfit
at the observed points, and for the inverse the error rate of the mean of the first k samples and of the sample
whose solved u fits the observations best, the misfit and error of the solver's u for the sampled a. The interpolation baseline runs on the same cases.

Usage: python benchmarks/pde_sweep.py --trained darcy64 forward:30:0:l2:64:2 inverse:30000:0:l2:64:4 ...
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from pde import guided_run, interpolate

from scidiff.pde import make_dataset
from scidiff.pde.diffusionpde import SparseObservation
from scidiff.pde.problem import load_joint_prior, observation_mask, prior_affine, rel_l2, solve_samples, threshold_darcy

MASK_SEEDS = {"forward": ("a", 1), "inverse": ("u", 0)}  # as problems/darcy/{forward,inverse}.yaml


def error_rate(a_hat: np.ndarray, a: np.ndarray) -> float:
    return float((threshold_darcy(a_hat[1:-1, 1:-1]) != a[1:-1, 1:-1]).mean())


def score(task: str, x: np.ndarray, a: np.ndarray, u: np.ndarray, masks: list) -> dict:
    """Columns of one row from samples ``x`` ``(cases, samples, 2, n, n)``."""
    cols: dict[str, list] = {}
    add = lambda k, v: cols.setdefault(k, []).append(v)  # noqa: E731
    for j, m in enumerate(masks):
        xa, xu = x[j, :, 0], x[j, :, 1]
        add("error rate, mean a", error_rate(xa.mean(0), a[j]))
        add("error rate, one sample", np.mean([error_rate(s, a[j]) for s in xa]))
        add("sampled u (mean)", rel_l2(xu.mean(0), u[j]))
        solved = solve_samples("darcy", xa)
        if task == "forward":
            add("solver on the mean a", rel_l2(solve_samples("darcy", xa.mean(0)[None])[0], u[j]))
            add("mean of the solver", rel_l2(solved.mean(0), u[j]))
            add("observed a missed", np.mean([(threshold_darcy(s)[m] != a[j][m]).mean() for s in xa]))
            for k in range(1, len(xa) + 1):
                add(f"solver, mean of {k}", rel_l2(solved[:k].mean(0), u[j]))
        else:
            add("observed u misfit", np.mean([rel_l2(s[m], u[j][m]) for s in xu]))
            add("solved u misfit", np.mean([rel_l2(s[m], u[j][m]) for s in solved]))
            add("solved u", rel_l2(solved.mean(0), u[j]))
            best = int(np.argmin([rel_l2(s[m], u[j][m]) for s in solved]))
            add("best-fitting solved sample", error_rate(xa[best], a[j]))
            for k in range(1, len(xa) + 1):
                add(f"mean of {k}", error_rate(xa[:k].mean(0), a[j]))
    return {k: 100 * float(np.mean(v)) for k, v in cols.items()}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trained", default="darcy64")
    p.add_argument("--n", type=int, default=5, help="validation cases")
    p.add_argument("--seed", type=int, default=1, help="seed of the validation cases")
    p.add_argument("settings", nargs="+", help="task:zeta_obs:zeta_pde:form:steps:samples[:zeta_u_solved[:late]] (form: l2, "
                   "preconditioned, ...; zeta_u_solved: the weight of the observed u through the solver, inverse; "
                   "late: the observation weights' factor after the switch, default 0.1)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    prior = load_joint_prior(args.trained)
    aff, res = prior_affine(prior), prior.shape[-1]
    data = make_dataset("darcy", args.n, res, seed=args.seed, workers=1, progress=False)
    a, u = data.a.values.astype(np.float64), data.u.values.astype(np.float64)
    for task, (field, seed) in MASK_SEEDS.items():
        masks = [observation_mask({"fraction": 0.03, "seed": seed + j}, res, field)[0].numpy() for j in range(args.n)]
        if task == "forward":
            interp = [threshold_darcy(interpolate(a[j], m)) for j, m in enumerate(masks)]
            print(f"interpolate a + solver: error rate of a {100 * np.mean([error_rate(i, a[j]) for j, i in enumerate(interp)]):.2f} %, "
                  f"u {100 * np.mean([rel_l2(solve_samples('darcy', i[None])[0], u[j]) for j, i in enumerate(interp)]):.2f} %")
    print(f"\nDarcy, {args.trained}, {args.n} validation cases (seed {args.seed}), 3 % observed; errors in %\n")
    for setting in args.settings:
        task, zo, zp, form, steps, samples, *zs = setting.split(":")
        field, seed = MASK_SEEDS[task]
        ch = "au".index(field)
        masks = [observation_mask({"fraction": 0.03, "seed": seed + j}, res, field)[0] for j in range(args.n)]
        obs = [SparseObservation(torch.as_tensor([a, u][ch][j]), masks[j], ch, aff.to_physical) for j in range(args.n)]
        guidance = {"switch": 0.8, "late_obs_factor": float(zs[1]) if len(zs) > 1 else 0.1}
        x, seconds = guided_run(prior, aff, "darcy", obs, float(zo), float(zp), guidance, int(steps), int(samples), form,
                                float(zs[0]) if zs and zs[0] else 0.0)
        cols = score(task, x, a, u, [m.numpy() for m in masks])
        print(f"| {setting} | {seconds / args.n:.1f} s/case | " + " | ".join(f"{k} {v:.2f}" for k, v in cols.items()) + " |",
              flush=True)


if __name__ == "__main__":
    main()
