"""Generate the DiffusionPDE datasets as CF-style ``xarray.Dataset`` objects, in parallel over cores.

``make_dataset("darcy", n=2000, res=64, seed=0)`` returns dims ``(sample, y, x)`` (``(sample, time, y, x)``
for Navier--Stokes, ``(sample, time, x)`` for Burgers) with coordinate units, the PDE and its parameters in
the attributes, and provenance (scidiff version, seed, solver). Random inputs are all drawn from ``seed`` in
the calling process before the (deterministic) solves are spread over worker processes, so a dataset does
not depend on the number of workers or the chunk size.

Command line (``scidiff datasets make ...`` forwards here)::

    python -m scidiff.pde.datasets darcy --n 2000 --res 64 -o darcy.nc
"""

from __future__ import annotations

import argparse
import math
import os
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timezone

import numpy as np
from tqdm.auto import tqdm

from . import burgers, elliptic, navier_stokes
from ._checks import node_coords, periodic_coords
from .grf import grf_neumann, grf_periodic, threshold

# name -> (defaults of the PDE parameters, PDE string, boundary condition, solver description)
SPECS = {
    "darcy": (
        {"alpha": 2.0, "tau": 3.0, "a_high": 12.0, "a_low": 3.0},
        "-div(a grad u) = 1",
        "dirichlet_zero",
        "five-point finite volumes (arithmetic face means), scipy.sparse.linalg.spsolve",
    ),
    "poisson": ({"alpha": 2.0, "tau": 3.0}, "lap u = a", "dirichlet_zero", "five-point Laplacian, scipy splu"),
    "helmholtz": (
        {"alpha": 2.0, "tau": 3.0, "k": 1.0},
        "lap u + k^2 u = a",
        "dirichlet_zero",
        "five-point Laplacian, scipy splu",
    ),
    "navier_stokes": (
        {"alpha": 2.5, "tau": 7.0, "nu": navier_stokes.NU, "t_final": 1.0, "n_snapshots": 10, "dt_solver": 1e-3},
        "dw/dt + v.grad w = nu lap w + f, f = 0.1 (sin 2pi(x+y) + cos 2pi(x+y)), div v = 0",
        "periodic",
        "pseudo-spectral (rfft2), 2/3 dealiasing, Crank-Nicolson viscosity, Heun advection",
    ),
    "burgers": (
        {"alpha": 2.5, "tau": 7.0, "sigma": 49.0, "nu": burgers.NU, "t_final": 1.0, "dt_solver": 1e-3, "refine": 4},
        "du/dt + u du/dx = nu d2u/dx2",
        "periodic",
        "Fourier pseudo-spectral, 2/3 dealiasing, ETDRK4 (Kassam-Trefethen), refined internal grid",
    ),
}
NAMES = tuple(SPECS)
_FIELDS = {
    "darcy": "a = a_high where g >= 0 else a_low, g ~ grf_neumann(alpha, tau) (cosine basis)",
    "poisson": "a ~ grf_neumann(alpha, tau) (cosine basis)",
    "helmholtz": "a ~ grf_neumann(alpha, tau) (cosine basis)",
    "navier_stokes": "w(t=0) ~ grf_periodic(alpha, tau)",
    "burgers": "u(t=0) ~ grf_periodic(alpha, tau, sigma), 1D",
}


def _draw_inputs(name: str, n: int, res: int, p: dict, rng: np.random.Generator) -> np.ndarray:
    if name == "darcy":
        return threshold(grf_neumann(n, res, p["alpha"], p["tau"], generator=rng), p["a_high"], p["a_low"])
    if name in ("poisson", "helmholtz"):
        return grf_neumann(n, res, p["alpha"], p["tau"], generator=rng)
    if name == "navier_stokes":
        return grf_periodic(n, res, p["alpha"], p["tau"], generator=rng)
    return grf_periodic(n, res, p["alpha"], p["tau"], p["sigma"], dim=1, generator=rng)


def _solve(name: str, inputs: np.ndarray, p: dict) -> np.ndarray:
    """Deterministic solve of one chunk (runs in a worker process)."""
    if name == "darcy":
        return elliptic.solve_darcy(inputs)
    if name == "poisson":
        return elliptic.solve_poisson(inputs)
    if name == "helmholtz":
        return elliptic.solve_helmholtz(inputs, p["k"])
    if name == "navier_stokes":
        return navier_stokes.solve_navier_stokes(inputs, p["t_final"], p["n_snapshots"], p["dt_solver"], p["nu"])
    return burgers.solve_burgers(inputs, p["nu"], p["t_final"], None, p["dt_solver"], p["refine"])


def _params(name: str, overrides: dict) -> dict:
    if name not in SPECS:
        raise ValueError(f"unknown dataset {name!r}; available: {list(NAMES)}")
    defaults = SPECS[name][0]
    unknown = set(overrides) - set(defaults)
    if unknown:
        raise ValueError(f"unknown parameter(s) {sorted(unknown)} for {name!r}; it takes {sorted(defaults)}")
    return {**defaults, **{k: type(defaults[k])(v) for k, v in overrides.items()}}


def solve_all(
    name: str, inputs: np.ndarray, p: dict, *, workers: int | None, chunk_size: int, progress: bool
) -> np.ndarray:
    """Solve every input, in chunks spread over ``workers`` processes (1: in this process)."""
    chunks = [inputs[i : i + chunk_size] for i in range(0, len(inputs), chunk_size)]
    workers = max(1, min(workers or os.cpu_count() or 1, len(chunks)))
    bar = tqdm(total=len(inputs), disable=not progress, desc=f"solving {name}", unit="sample")
    out = []
    if workers == 1:
        for c in chunks:
            out.append(_solve(name, c, p))
            bar.update(len(c))
    else:
        with ProcessPoolExecutor(workers) as pool:
            futures = [pool.submit(_solve, name, c, p) for c in chunks]
            for c, fut in zip(chunks, futures):  # in order: the result does not depend on scheduling
                out.append(fut.result())
                bar.update(len(c))
    bar.close()
    return np.concatenate(out)


def make_dataset(
    name: str,
    n: int,
    res: int = 64,
    seed: int = 0,
    *,
    workers: int | None = None,
    chunk_size: int | None = None,
    progress: bool = True,
    pairs: bool = False,
    **params,
):
    """Generate ``n`` samples of the DiffusionPDE problem ``name`` at resolution ``res``; see module docs.

    ``params`` override the PDE defaults of :data:`SPECS` (e.g. ``k=2.0`` for Helmholtz, ``n_snapshots=20``).
    ``pairs=True`` (Navier--Stokes only) returns DiffusionPDE's pairs ``a`` = w(t=0), ``u`` = w(t_final) instead of
    the trajectories (:func:`joint_pair`), so that a data module's ``generate: {name: navier_stokes, pairs: true}``
    trains a joint prior over ``variables: [a, u]`` like the elliptic PDEs'.
    """
    import xarray as xr

    if pairs and name != "navier_stokes":
        raise ValueError(f"pairs=True pairs the Navier-Stokes vorticity at t = 0 and t_final; got dataset {name!r}")
    p = _params(name, params)
    if int(n) < 1 or int(res) < (8 if name == "navier_stokes" else 4):
        raise ValueError(f"need n >= 1 and a resolution of at least 4 (8 for Navier-Stokes); got n={n}, res={res}")
    n, res = int(n), int(res)
    inputs = _draw_inputs(name, n, res, p, np.random.default_rng(seed))
    chunk_size = chunk_size or max(1, math.ceil(n / (4 * (workers or os.cpu_count() or 1))))
    sol = solve_all(name, inputs, p, workers=workers, chunk_size=chunk_size, progress=progress)
    ds = xr.Dataset(_variables(name, inputs, sol, p), coords=_coords(name, n, res, sol, p))
    ds.attrs = _attrs(name, p, seed, res)
    return joint_pair(ds) if pairs else ds


def _coords(name: str, n: int, res: int, sol: np.ndarray, p: dict) -> dict:
    periodic = name in ("navier_stokes", "burgers")
    x = periodic_coords(res) if periodic else node_coords(res)
    grid = "node; periodic [0, 1)" if periodic else "node; [0, 1] including boundary nodes"
    coords = {
        "sample": ("sample", np.arange(n), {"long_name": "sample index", "standard_name": "realization", "units": "1"}),
        "x": ("x", x, {"long_name": "x coordinate", "units": "1", "axis": "X", "grid": grid}),
    }
    if name != "burgers":
        coords["y"] = ("y", x.copy(), {"long_name": "y coordinate", "units": "1", "axis": "Y", "grid": grid})
    if periodic:
        t = np.linspace(0.0, p["t_final"], sol.shape[1])
        coords["time"] = ("time", t, {"long_name": "time", "units": "1", "axis": "T"})
    return coords


def _variables(name: str, inputs: np.ndarray, sol: np.ndarray, p: dict) -> dict:
    f32 = lambda v: v.astype(np.float32)  # noqa: E731
    if name == "navier_stokes":
        f = navier_stokes.ns_forcing(inputs.shape[-1])
        return {
            "w": (("sample", "time", "y", "x"), f32(sol), {"long_name": "vorticity", "units": "1"}),
            "f": (("y", "x"), f32(f), {"long_name": "forcing", "units": "1"}),
        }
    if name == "burgers":
        return {"u": (("sample", "time", "x"), f32(sol), {"long_name": "velocity", "units": "1"})}
    a_name = {"darcy": "permeability (diffusion coefficient)", "poisson": "source", "helmholtz": "source"}[name]
    return {
        "a": (("sample", "y", "x"), f32(inputs), {"long_name": a_name, "units": "1"}),
        "u": (("sample", "y", "x"), f32(sol), {"long_name": "solution", "units": "1"}),
    }


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("scidiff")
    except Exception:  # not installed as a distribution
        return "unknown"


def _attrs(name: str, p: dict, seed: int, res: int) -> dict:
    _, pde, bc, solver = SPECS[name]
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    source = f"scidiff {_version()}, scidiff.pde.datasets.make_dataset({name!r}); solver: {solver}"
    return {
        "Conventions": "CF-1.8",
        "title": f"DiffusionPDE-style {name.replace('_', '-')} dataset at {res} points per axis",
        "source": source,
        "history": f"{now}: created by {source}",
        "references": "Huang et al., DiffusionPDE: Generative PDE-Solving Under Partial Observation, NeurIPS 2024; "
        "Li et al., Fourier Neural Operator for Parametric PDEs, ICLR 2021",
        "pde": pde,
        "boundary_condition": bc,
        "seed": int(seed),
        "random_field": _FIELDS[name],
        **{k: v for k, v in p.items()},
    }


def joint_pair(ds):
    """Navier--Stokes trajectories -> DiffusionPDE's pairs: ``a`` = initial vorticity, ``u`` = final vorticity."""
    w = ds["w"]
    a = w.isel(time=0, drop=True).assign_attrs(long_name="initial vorticity", units="1")
    u = w.isel(time=-1, drop=True).assign_attrs(long_name="final vorticity", units="1")
    return ds.drop_vars(["w", "time"]).assign(a=a, u=u).assign_attrs(t_pair=float(ds["time"][-1]))


def main(argv: list[str] | None = None) -> None:
    """``NAME --n N --res R --seed S -o OUT [--workers W] [--param key=value ...]``: write a NetCDF file."""
    from ..data.netcdf import write_netcdf

    ap = argparse.ArgumentParser(prog="scidiff datasets make", description="Generate a DiffusionPDE dataset as NetCDF.")
    ap.add_argument("name", choices=NAMES)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--res", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    ap.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="override a PDE parameter")
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("-o", "--out", required=True)
    a = ap.parse_args(argv)
    overrides = {}
    for item in a.param:
        if "=" not in item:
            ap.error(f"--param expects KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        overrides[key] = float(value)
    ds = make_dataset(a.name, a.n, a.res, a.seed, workers=a.workers, progress=not a.no_progress, **overrides)
    print(f"wrote {write_netcdf(ds, a.out).resolve()}")


if __name__ == "__main__":
    main()
