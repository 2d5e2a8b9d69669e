"""How far the data allow: the Darcy forward problem (a at 3 % of the nodes -> u) with the data's own law as the
prior, at 64^2 and at DiffusionPDE's 128^2.

``scidiff.pde.exact`` draws the exact posterior of the thresholded-GRF coefficient given its sparse values; the
mean of the reference solver over those draws estimates ``E[u | observed a]``, which minimises the expected
squared error of u, so no learnt prior can do better in expectation on the same cases. The table gives it for
several numbers of draws and Gibbs sweeps (to show the chains have converged), next to interpolation + solver.

    PYTHONPATH=. python benchmarks/pde_floor.py --res 64 128 --n-test 10

Test cases and masks are those of ``benchmarks/pde.py`` (seed 2; mask seed 1 + j for case j, as in
``problems/darcy/forward.yaml``; 3 % of the nodes).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from pde import interpolate

from scidiff.pde import make_dataset, solve_darcy
from scidiff.pde.exact import darcy_coefficient_posterior
from scidiff.pde.problem import observation_mask, rel_l2, threshold_darcy


def floor_rows(res: int, n_test: int, fraction: float, draws: int, sweeps: list[int], seed: int,
               mask_seed: int = 1) -> list[tuple]:
    data = make_dataset("darcy", n_test, res, seed=seed, workers=1, progress=False)
    a, u = data.a.values.astype(np.float64), data.u.values.astype(np.float64)
    rows = {}
    for j in range(n_test):
        mask = observation_mask({"fraction": fraction, "seed": mask_seed + j}, res, "a")[0].numpy()
        add = lambda k, v: rows.setdefault(k, []).append(v)  # noqa: E731
        add(("interpolate a + solver", "-"), rel_l2(solve_darcy(threshold_darcy(interpolate(a[j], mask))[None])[0], u[j]))
        for s in sweeps:
            t = time.perf_counter()
            post = darcy_coefficient_posterior(a[j], mask, draws, sweeps=s, generator=np.random.default_rng(j))
            u_post = solve_darcy(post)
            add((f"exact posterior, {s} sweeps: seconds per case", "-"), time.perf_counter() - t)
            for k in sorted({1, 2, draws // 4, draws}):
                add((f"exact posterior, {s} sweeps: mean of the solver over {k} draws", "u"), rel_l2(u_post[:k].mean(0), u[j]))
            add((f"exact posterior, {s} sweeps: majority of {draws} draws", "a"), float((threshold_darcy(post.mean(0)) != a[j]).mean()))
    return [(res, int(round(fraction * res * res)), name, kind, float(np.mean(v)), float(np.std(v))) for (name, kind), v in rows.items()]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--res", type=int, nargs="+", default=[64, 128])
    p.add_argument("--n-test", type=int, default=10)
    p.add_argument("--fraction", type=float, default=0.03)
    p.add_argument("--draws", type=int, default=32)
    p.add_argument("--sweeps", type=int, nargs="+", default=[300, 1000])
    p.add_argument("--seed", type=int, default=2, help="seed of the test cases (benchmarks/pde.py: 2)")
    args = p.parse_args(argv)
    print(f"\nDarcy forward with the exact posterior of a: {args.n_test} cases (seed {args.seed}), "
          f"{100 * args.fraction:g} % of the nodes observed; mean (std) over cases\n")
    print("| grid | observed nodes | row | metric | mean | std |\n|---|---|---|---|---|---|")
    for res in args.res:
        for r, m, name, kind, mean, std in floor_rows(res, args.n_test, args.fraction, args.draws, args.sweeps, args.seed):
            metric = {"u": "rel. L2 of u (%)", "a": "error rate of a (%)", "-": "rel. L2 of u (%)"}[kind]
            scale = 100.0
            if "seconds" in name:
                metric, scale = "s", 1.0
            print(f"| {r}² | {m} | {name} | {metric} | {scale * mean:.2f} | {scale * std:.2f} |", flush=True)


if __name__ == "__main__":
    main()
