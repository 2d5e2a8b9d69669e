"""``scidiff pde -c problems/darcy/forward.yaml [--set KEY=VALUE ...]``: solve one DiffusionPDE problem file and
write the posterior (NetCDF) and a plot (PNG). See :mod:`scidiff.pde.problem` and ``docs/pde.md``."""

from __future__ import annotations

import argparse
from pathlib import Path


def main(argv: list[str]) -> dict:
    from .._config import load_config
    from ..data.netcdf import write_netcdf
    from .problem import plot_solution, solve_problem

    p = argparse.ArgumentParser(prog="scidiff pde", description="Solve a PDE from sparse observations (DiffusionPDE).")
    p.add_argument("-c", "--config", required=True, help="a problems/<pde>/{forward,inverse,both}.yaml")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override an entry (YAML value)")
    p.add_argument("--progress", action="store_true", help="show a progress bar over the sampler's steps")
    a = p.parse_args(argv)
    config = load_config(a.config, a.set)
    ds = solve_problem(config, progress=a.progress)
    out = dict(config.get("output") or {})
    stem = Path(a.config).stem
    nc = write_netcdf(ds, out.get("netcdf") or f"outputs/{ds.attrs['pde']}/{stem}.nc")
    png = plot_solution(ds, out.get("png") or Path(nc).with_suffix(".png"))
    report = {k: ds.attrs[k] for k in ("pde", "mode", "steps", "nfe", "wall_time_s") if k in ds.attrs}
    report.update({k: ds.attrs[k] for k in ("rel_l2_u", "rel_l2_u_solved", "rel_l2_a", "error_rate_a") if k in ds.attrs})
    report.update(netcdf=str(nc), png=str(png))
    for k, v in report.items():
        print(f"{k}: {v:.4g}" if isinstance(v, float) else f"{k}: {v}")
    return report
