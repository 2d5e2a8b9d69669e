"""DiffusionPDE problems from a problem file: a joint (a, u) prior, sparse observations of a and/or u, guidance
weights, sampler settings -> a posterior ensemble as an ``xarray.Dataset`` and a plot.

The modes of Huang et al. (2024) are all one recipe here: *forward* observes the coefficient ``a`` and wants the
solution ``u``, *inverse* observes ``u`` and wants ``a``, *both-sparse* observes both. A problem file says which
channels are observed, where (a random share of the grid, a number of random points, or given sensor indices)
and with what guidance weight; see ``problems/darcy/*.yaml`` and ``docs/pde.md``. ``scidiff pde -c FILE``
(:mod:`scidiff.pde.cli`) runs one.

Only the two-channel elliptic problems (``darcy``, ``poisson``, ``helmholtz``) have joint (a, u) priors.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from ..diffusion import karras_sigmas, seeded_generators
from ..inverse.posterior import Posterior
from ._checks import node_coords
from .diffusionpde import (
    ChannelAffine,
    CoefficientGNStep,
    PDEResidual,
    PreconditionedPDEStep,
    SparseObservation,
    diffusionpde_likelihood,
    joint_residual,
    random_mask,
    sample_diffusionpde,
    solved_observation,
)

FIELDS = ("a", "u")  # channel order of the joint priors
PDES = ("darcy", "poisson", "helmholtz")
#: Darcy's coefficient takes these two values; a posterior mean is thresholded half-way (DiffusionPDE).
DARCY_VALUES = (3.0, 12.0)
_DTYPES = {"float32": torch.float32, "float64": torch.float64}


# --- priors -------------------------------------------------------------------------------------------------
def load_joint_prior(spec: str):
    """A shipped prior by name (``darcy32``) or a ``.ckpt`` / ``.safetensors`` path, in evaluation mode."""
    from ..priors import DiffusionPrior

    spec = str(spec)
    if spec.endswith((".ckpt", ".safetensors")) or "/" in spec:
        if not Path(spec).is_file():
            raise FileNotFoundError(f"no prior file at {spec!r}")
        prior = DiffusionPrior.load(spec)
    else:
        prior = DiffusionPrior.pretrained(spec)
    if len(prior.shape) != 3 or prior.shape[0] != 2 or prior.shape[1] != prior.shape[2]:
        raise ValueError(f"a joint (a, u) prior has event shape (2, n, n); {spec!r} has {list(prior.shape)}")
    return prior.eval().requires_grad_(False)


def prior_affine(prior) -> ChannelAffine:
    """The prior's normaliser as a :class:`ChannelAffine` (normalised = (physical - mean) / std)."""
    std, mean = prior.norm_std.double(), prior.norm_mean.double()
    return ChannelAffine(1 / std, -mean / std)


# --- truth and observations ---------------------------------------------------------------------------------
def load_truth(pde: str, spec: Mapping | None, res: int, pde_params: Mapping | None = None) -> dict | None:
    """The true fields ``{"a": (n, n), "u": (n, n)}`` (float64 numpy) from a problem file's ``truth:`` section.

    ``{"generate": {"seed": S, "index": i}}`` draws held-out sample ``i`` of the project's generator with seed
    ``S`` at the prior's resolution; ``{"path": FILE.nc, "index": i}`` reads variables ``a``/``u`` of a NetCDF
    file (dims ``sample, y, x``). ``None``: no truth (then every observation must carry its own values).
    """
    if spec is None:
        return None
    if "generate" in spec:
        from .datasets import make_dataset

        gen = dict(spec["generate"] or {})
        index = int(gen.pop("index", 0))
        ds = make_dataset(pde, index + 1, res, int(gen.pop("seed", 0)), workers=1, progress=False,
                          **{**(pde_params or {}), **gen})
    elif "path" in spec:
        import xarray as xr

        index = int(spec.get("index", 0))
        with xr.open_dataset(spec["path"]) as f:
            ds = f.load()
        if index >= ds.sizes.get("sample", 0):
            raise ValueError(f"{spec['path']} has {ds.sizes.get('sample', 0)} samples; index {index} asked for")
    else:
        raise ValueError(f"truth: give 'generate: {{seed, index}}' or 'path: FILE.nc'; got keys {sorted(spec)}")
    truth = {f: np.asarray(ds[f].isel(sample=index).values, dtype=np.float64) for f in FIELDS if f in ds}
    for f, v in truth.items():
        if v.shape != (res, res):
            raise ValueError(f"the true {f} has shape {v.shape} but the prior works on {res} x {res} grids")
    return truth


def observation_mask(spec: Mapping, res: int, field: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(mask, values or None)`` for one observed field from ``{fraction | n_points | points [+ values], seed}``."""
    keys = [k for k in ("fraction", "n_points", "points") if spec.get(k) is not None]
    if len(keys) != 1:
        raise ValueError(f"observe.{field}: give exactly one of fraction, n_points or points; got {keys or 'none'}")
    if keys[0] == "points":
        points = torch.as_tensor(spec["points"])
        if points.numel() == 0:
            raise ValueError(f"observe.{field}: the list of points is empty, so the mask observes nothing")
        values = spec.get("values")
        values = torch.full((len(points),), 0.0) if values is None else torch.as_tensor(values, dtype=torch.float64)
        obs = SparseObservation.from_points(points, values, (res, res))  # checks the grid and the values
        return obs.mask, (obs.values if spec.get("values") is not None else None)
    gen = torch.Generator().manual_seed(int(spec.get("seed", 0)))
    if keys[0] == "fraction":
        return random_mask((res, res), fraction=float(spec["fraction"]), generator=gen), None
    return random_mask((res, res), int(spec["n_points"]), generator=gen), None


def build_observations(
    observe: Mapping, truth: dict | None, res: int, transform
) -> dict[str, tuple[SparseObservation, torch.Tensor]]:
    """``{field: (SparseObservation, mask)}`` for every field named under ``observe:`` (values from the truth
    unless the sensors carry their own)."""
    out = {}
    for field, spec in (observe or {}).items():
        if spec is None:
            continue
        if field not in FIELDS:
            raise ValueError(f"observe: unknown field {field!r}; the joint state holds {list(FIELDS)}")
        mask, values = observation_mask(spec, res, field)
        if values is None:
            if truth is None or field not in truth:
                raise ValueError(f"observe.{field}: no sensor values given and no true {field} to read them from")
            values = torch.as_tensor(truth[field])
        out[field] = (SparseObservation(values, mask, FIELDS.index(field), transform), mask)
    if not out:
        raise ValueError("observe: nothing is observed; name a (forward), u (inverse) or both")
    return out


# --- solving ------------------------------------------------------------------------------------------------
GUIDANCE_KEYS = ("a", "u", "u_solved", "pde", "pde_form", "pde_damping", "pde_smoothing", "switch", "late_obs_factor")
#: Forms of the PDE term: the paper's un-squared residual in the L2 (default), H^-1 or H^-2 norm, the
#: preconditioned step on u (:class:`~scidiff.pde.diffusionpde.PreconditionedPDEStep`), the regularised
#: Gauss-Newton step on a (:class:`~scidiff.pde.diffusionpde.CoefficientGNStep`), or both steps together.
PDE_FORMS = ("l2", "h-1", "h-2", "preconditioned", "coefficient", "preconditioned+coefficient")


def pde_term(pde: str, guidance: Mapping, aff: ChannelAffine, pde_params=None):
    """The PDE term of a problem file's ``guidance`` (``pde_form``, one of :data:`PDE_FORMS`; default ``l2``,
    the paper's). The preconditioned step uses ``a_ref`` = the normaliser's mean of a for Darcy (else 1) and
    clips Darcy's sampled a to the range of its two values before solving for u; the coefficient step takes its
    relative Tikhonov damping from ``pde_damping`` (default 0.01) and its H^1 share from ``pde_smoothing`` (0)."""
    form = str(guidance.get("pde_form", "l2"))
    if form not in PDE_FORMS:
        raise ValueError(f"guidance.pde_form: unknown form {form!r}; use one of {list(PDE_FORMS)}")
    params = dict(pde_params or {})
    terms = []
    if form.startswith("preconditioned"):
        a_ref = float(aff.to_physical(torch.zeros(1, 2, 1, 1, dtype=torch.float64))[0, 0]) if pde == "darcy" else 1.0
        a_range = DARCY_VALUES if pde == "darcy" else None
        terms.append(PreconditionedPDEStep(pde, aff, a_ref, a_range, **params))
    if form.endswith("coefficient"):
        terms.append(CoefficientGNStep(pde, aff, float(guidance.get("pde_damping", 1e-2)),
                                       smoothing=float(guidance.get("pde_smoothing", 0.0)), **params))
    if terms:
        return terms[0] if len(terms) == 1 else terms[0] + terms[1]
    return PDEResidual(joint_residual(pde, **params), aff.to_physical, norm=form)


def guidance_likelihood(pde: str, observations: dict, guidance: Mapping, sigmas, aff: ChannelAffine, pde_params=None):
    """DiffusionPDE's energy with the problem file's weights ``guidance: {a, u, pde, switch, late_obs_factor}``
    and the form of its PDE term (:func:`pde_term`).

    ``u_solved``: the weight of a second term for an observed ``u``, scored on the reference solver's
    ``u`` for the sampled ``a`` (:func:`~scidiff.pde.diffusionpde.solved_observation`; it moves ``a`` only) on the
    schedule of the observation terms; ``u`` may then be 0 (no term on the sampled u channel)."""
    unknown = set(guidance) - set(GUIDANCE_KEYS)
    if unknown:
        raise ValueError(f"guidance: unknown key(s) {sorted(unknown)}; use {', '.join(GUIDANCE_KEYS)}")
    pairs = []
    for field, (obs, _) in observations.items():
        if guidance.get(field) is None:
            raise ValueError(f"guidance.{field} (the weight of the observed {field}) is missing")
        pairs.append((obs, float(guidance[field])))
    if guidance.get("u_solved"):
        if "u" not in observations:
            raise ValueError("guidance.u_solved scores observed u through the reference solver: it needs an "
                             f"observed u; got pde {pde!r}, observed {sorted(observations)}")
        a_range = DARCY_VALUES if pde == "darcy" else None  # the linear solves exist for any a
        solved = solved_observation(observations["u"][0], aff, a_range, pde=pde, **dict(pde_params or {}))
        pairs.append((solved, float(guidance["u_solved"])))
    pairs = [(o, w) for o, w in pairs if w != 0]
    return diffusionpde_likelihood(
        pairs, pde_term(pde, guidance, aff, pde_params), float(guidance.get("pde", 0.0)), sigmas,
        switch=float(guidance.get("switch", 0.8)), late_obs_factor=float(guidance.get("late_obs_factor", 0.1)),
    )


def sampler_settings(section: Mapping | None) -> dict:
    """The ``sampler:`` section with defaults (200 steps, 8 samples, seed 0, float32), checked."""
    s = {"steps": 200, "samples": 8, "seed": 0, "dtype": "float32", **(section or {})}
    unknown = set(s) - {"steps", "samples", "seed", "dtype"}
    if unknown:
        raise ValueError(f"sampler: unknown key(s) {sorted(unknown)}; use steps, samples, seed, dtype")
    if not 1 <= int(s["steps"]) <= 10_000 or int(s["samples"]) < 1:
        raise ValueError(f"need sampler.steps in [1, 10000] and samples >= 1; got {s['steps']}, {s['samples']}")
    if s["dtype"] not in _DTYPES:
        raise ValueError(f"sampler.dtype must be one of {sorted(_DTYPES)}; got {s['dtype']!r}")
    return s


def prior_sigmas(prior, steps: int):
    """EDM's Karras schedule over the prior's noise range."""
    return karras_sigmas(int(steps), prior.hparams.sigma_min, prior.hparams.sigma_max)


def run_sampler(prior, likelihood, *, steps: int, samples: int, seed: int = 0, dtype="float32", progress=False):
    """Posterior ensemble (physical units) of ``samples`` draws; draw ``i`` uses seed ``seed + i``."""
    s = sampler_settings({"steps": steps, "samples": samples, "seed": seed, "dtype": dtype})
    post = sample_diffusionpde(
        prior, likelihood, (int(s["samples"]), *prior.shape), prior_sigmas(prior, s["steps"]),
        dtype=_DTYPES[s["dtype"]], progress=progress,
        generator=seeded_generators(range(int(s["seed"]), int(s["seed"]) + int(s["samples"]))),
    )
    phys = prior_affine(prior).to_physical(post.samples.double())
    return Posterior(phys, info=post.info)


def scores(pde: str, mean: dict, truth: dict) -> dict:
    """Relative L2 errors of the posterior means against the truth; for ``a`` on interior nodes (boundary values
    of ``a`` do not enter the equations), and for Darcy the error rate of the thresholded mean as well."""
    out = {}
    if "u" in truth:
        out["rel_l2_u"] = rel_l2(mean["u"], truth["u"])
    if "a" in truth:
        a_hat, a = mean["a"][1:-1, 1:-1], truth["a"][1:-1, 1:-1]
        out["rel_l2_a"] = rel_l2(a_hat, a)
        if pde == "darcy":
            out["error_rate_a"] = float((threshold_darcy(a_hat) != a).mean())
    return out


def solve_samples(pde: str, a_samples: np.ndarray, pde_params: Mapping | None = None) -> np.ndarray:
    """The reference solver on each posterior sample of the coefficient, ``(S, n, n) -> (S, n, n)``.

    Darcy's samples are thresholded to {3, 12} first (DiffusionPDE's read-out of a). The mean of the result is a
    forward estimate of u that satisfies the discrete PDE sample by sample, whatever the sampled u channel does:
    with a prior whose u channel is less accurate than its a, it is the better read-out (docs/pde.md).
    """
    from .elliptic import solve_darcy, solve_helmholtz, solve_poisson

    if pde not in PDES:
        raise ValueError(f"no reference solver for {pde!r}; available: {list(PDES)}")
    a = np.asarray(a_samples, dtype=np.float64)
    if pde == "darcy":
        return solve_darcy(threshold_darcy(a))
    if pde == "poisson":
        return solve_poisson(a)
    return solve_helmholtz(a, float((pde_params or {}).get("k", 1.0)))


def rel_l2(pred: np.ndarray, true: np.ndarray) -> float:
    return float(np.linalg.norm(pred - true) / np.linalg.norm(true))


def threshold_darcy(a: np.ndarray) -> np.ndarray:
    lo, hi = DARCY_VALUES
    return np.where(a >= 0.5 * (lo + hi), hi, lo)


def solve_problem(config: Mapping, *, progress: bool = False, prior=None):
    """Run one problem file (a loaded mapping); returns the result as an ``xarray.Dataset`` (see :func:`to_dataset`)."""
    pde = config.get("pde")
    if pde not in PDES:
        raise ValueError(f"pde must be one of {list(PDES)} (joint (a, u) priors); got {pde!r}")
    s = sampler_settings(config.get("sampler"))  # before anything is loaded
    prior = prior if prior is not None else load_joint_prior(config.get("prior") or f"{pde}32")
    res, params = prior.shape[-1], dict(config.get("pde_params") or {})
    aff = prior_affine(prior)
    truth = load_truth(pde, config.get("truth"), res, params)
    observations = build_observations(config.get("observe"), truth, res, aff.to_physical)
    sigmas = prior_sigmas(prior, s["steps"])
    lik = guidance_likelihood(pde, observations, dict(config.get("guidance") or {}), sigmas, aff, params)
    post = run_sampler(prior, lik, **s, progress=progress)
    return to_dataset(pde, post, {f: m for f, (_, m) in observations.items()}, truth, config)


def to_dataset(pde: str, post: Posterior, masks: dict, truth: dict | None, config: Mapping):
    """CF-style Dataset: ``<f>_mean``, ``<f>_std``, ``<f>_samples``, ``<f>_observed`` and ``<f>_true`` (when known)
    for ``f`` in (a, u), coordinates ``y, x`` (nodes of [0, 1]) and ``sample``; scores and settings in attrs."""
    import xarray as xr

    x = post.samples.numpy()
    n = x.shape[-1]
    mean, std = x.mean(0), x.std(0, ddof=1) if len(x) > 1 else np.zeros_like(x[0])
    names = {"a": "coefficient" if pde == "darcy" else "source", "u": "solution"}
    data = {}
    for c, f in enumerate(FIELDS):
        data[f"{f}_mean"] = (("y", "x"), mean[c], {"long_name": f"posterior mean of {names[f]} {f}", "units": "1"})
        data[f"{f}_std"] = (("y", "x"), std[c], {"long_name": f"posterior standard deviation of {f}", "units": "1"})
        data[f"{f}_samples"] = (("sample", "y", "x"), x[:, c], {"long_name": f"posterior samples of {f}", "units": "1"})
        mask = masks[f].numpy().astype(np.int8) if f in masks else np.zeros((n, n), np.int8)
        data[f"{f}_observed"] = (("y", "x"), mask, {"long_name": f"1 where {f} is observed", "units": "1"})
        if truth and f in truth:
            data[f"{f}_true"] = (("y", "x"), truth[f], {"long_name": f"true {f}", "units": "1"})
    mode = {("a",): "forward", ("u",): "inverse", ("a", "u"): "both"}[tuple(f for f in FIELDS if f in masks)]
    metrics = scores(pde, {"a": mean[0], "u": mean[1]}, truth) if truth else {}
    if mode == "forward":  # u from the solver on each sampled a: consistent with the PDE by construction
        solved = solve_samples(pde, x[:, 0], config.get("pde_params"))
        std_s = solved.std(0, ddof=1) if len(x) > 1 else np.zeros_like(solved[0])
        data["u_solved_mean"] = (("y", "x"), solved.mean(0), {"long_name": "mean over the posterior samples of "
                                 "the reference solver's u for the sampled a", "units": "1"})
        data["u_solved_std"] = (("y", "x"), std_s, {"long_name": "standard deviation of the solver's u over the "
                                "posterior samples of a", "units": "1"})
        if truth and "u" in truth:
            metrics["rel_l2_u_solved"] = rel_l2(solved.mean(0), truth["u"])
    if pde == "darcy":
        data["a_thresholded"] = (("y", "x"), threshold_darcy(mean[0]), {"long_name": "posterior mean of a "
                                 f"thresholded to {DARCY_VALUES}", "units": "1"})
    grid = {"units": "1", "grid": "node; [0, 1] including boundary nodes"}
    coords = {
        "y": ("y", node_coords(n), {"long_name": "y coordinate", "axis": "Y", **grid}),
        "x": ("x", node_coords(n), {"long_name": "x coordinate", "axis": "X", **grid}),
        "sample": ("sample", np.arange(len(x)), {"long_name": "posterior sample", "units": "1"}),
    }
    ds = xr.Dataset(data, coords=coords)
    ds.attrs = {
        "Conventions": "CF-1.8",
        "title": f"DiffusionPDE {mode} solve of {pde} from sparse observations",
        "references": "Huang et al., DiffusionPDE: Generative PDE-Solving Under Partial Observation, NeurIPS 2024",
        "pde": pde,
        "mode": mode,
        "prior": str(config.get("prior") or f"{pde}32"),
        "steps": int(post.info.get("steps", 0)),
        "nfe": int(post.info.get("nfe", 0)),
        "wall_time_s": float(post.info.get("wall_time_s", math.nan)),
        "config": json.dumps(config, default=str),
        **metrics,
    }
    return ds


# --- plotting -----------------------------------------------------------------------------------------------
def plot_solution(ds, path: str | Path) -> Path:
    """PNG of :func:`solution_figure`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .._files import atomic_path

    fig = solution_figure(ds)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path


def solution_figure(ds):
    """One row per field (a, u), columns truth (observed points marked) / mean / std / |error|."""
    import matplotlib.pyplot as plt

    has_truth = all(f"{f}_true" in ds for f in FIELDS)
    cols = ["truth", "posterior mean", "posterior std", "|error|"] if has_truth else ["posterior mean", "posterior std"]
    fig, axes = plt.subplots(2, len(cols), figsize=(2.9 * len(cols), 5.4), squeeze=False)
    for row, f in zip(axes, FIELDS):
        mean = ds[f"{f}_mean"].values
        panels = {"posterior mean": mean, "posterior std": ds[f"{f}_std"].values}
        if has_truth:
            panels = {"truth": ds[f"{f}_true"].values, **panels, "|error|": np.abs(mean - ds[f"{f}_true"].values)}
        lo, hi = float(panels[cols[0]].min()), float(panels[cols[0]].max())
        for ax, name in zip(row, cols):
            shared = name in ("truth", "posterior mean")
            im = ax.imshow(panels[name], origin="lower", extent=(0, 1, 0, 1), cmap="viridis" if shared else "magma",
                           vmin=lo if shared else None, vmax=hi if shared else None)
            if name == cols[0]:
                yy, xx = np.nonzero(ds[f"{f}_observed"].values)
                n = mean.shape[-1] - 1
                ax.scatter(xx / n, yy / n, s=6, c="red", marker="x", linewidths=0.8)
            ax.set_title(f"{f}: {name}", fontsize=9)
            ax.set_xticks([]), ax.set_yticks([])
            fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03)
    metrics = ", ".join(f"{k} {100 * ds.attrs[k]:.2f} %" for k in ("rel_l2_u", "rel_l2_a", "error_rate_a") if k in ds.attrs)
    fig.suptitle(f"{ds.attrs['pde']} {ds.attrs['mode']}: {ds.sizes['sample']} samples, {ds.attrs['steps']} steps"
                 + (f" ({metrics})" if metrics else ""), fontsize=10)
    fig.tight_layout()
    return fig
