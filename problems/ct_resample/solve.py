"""Solve one CT problem from a YAML file and save the posterior samples to NetCDF.

    python problems/ct_resample/solve.py -c problems/ct_resample/sparse_view.yaml

The YAML names the problem (``problem``: kind, angles, sigma_y, level, seed), the priors (``latent``, ``pixel``),
the method (``resample``, ``latent_dps``, ``dps``, ``red_diff``, ``resample_pixel``), ``n`` samples, ``steps``
and the method's keyword ``options``; ``out`` is the NetCDF file written. Metrics are printed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ct import build_problem, metrics, run_method, timed  # noqa: E402

from scidiff.inverse import Posterior  # noqa: E402


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-c", "--config", required=True)
    a = p.parse_args(argv)
    cfg = yaml.safe_load(Path(a.config).read_text())
    problem = build_problem(**cfg["problem"])
    priors = {}
    if cfg["method"] in ("resample", "latent_dps"):
        from scidiff.priors import LatentPrior

        priors["latent"] = LatentPrior.load(cfg["latent"])
    else:
        from scidiff.priors import DiffusionPrior

        priors["pixel"] = DiffusionPrior.load(cfg["pixel"])
    (x, info), wall = timed(lambda: run_method(cfg["method"], problem, priors, cfg["n"], cfg["steps"], cfg.get("options")))
    result = {**metrics(x, problem), "wall_s": round(wall, 1)}
    plain = {k: v for k, v in info.items() if isinstance(v, (int, float, str))}
    Posterior(x.detach(), info={**plain, **result, "problem": cfg["problem"]["kind"]}).save(cfg["out"])
    print(f"{cfg['method']} on {cfg['problem']['kind']}: {result}; wrote {cfg['out']}")
    return result


if __name__ == "__main__":
    main()
