"""Ready-made bridge problems from a plain config dict: ``run_problem(config) -> dict`` (called by the CLI).

A problem is a domain, a source and a target law inside it, and the bridge settings. ``run_problem``
trains one bridge between samples of the two laws (``method: matching``, [SF]^2M, or ``method: ipf``, the
Reflected SB's forward-backward training on reflected paths, options under ``ipf:``), then integrates it from fresh source
samples three ways -- reflected (the constrained bridge), clamped (projection every step) and
unconstrained -- and reports for each the Sinkhorn divergence to held-out target samples, the same
divergence between two independent target samples (the noise floor), how many paths ever left the
domain, and the wall time.
"""

from __future__ import annotations

import time

import torch
from torch import Tensor

from .domains import Box, Domain, make_domain
from .ipf import IPF_OPTIONS
from .matching import sample_bridge, train_bridge

DEFAULTS = {
    "domain": {"type": "flower", "petals": 5, "radius": 1.0, "amplitude": 0.4},
    "source": {"type": "gaussian", "mean": [0.0, 0.0], "std": 0.25},
    "target": {"type": "petals", "std": 0.12, "radius": 1.05},
    "sigma": 0.3,
    "n_train": 4000,
    "n_eval": 1500,
    "n_iter": 1500,
    "batch_size": 256,
    "lr": 2e-3,
    "hidden": 128,
    "depth": 3,
    "n_steps": 100,
    "ot_method": "sinkhorn",
    "method": "matching",  # or "ipf": the Reflected SB's forward-backward training on reflected paths
    "ipf": {"n_stages": 5, "n_iter": 300, "n_paths": 1000, "batch_size": 512, "lr": 1e-3},
    "sinkhorn_reg": 0.05,
    "boundaries": ["reflect", "clamp", "none"],
    "trainer": None,  # a mapping of Lightning Trainer options: train under a Trainer (checkpoints) instead
    "seed": 0,
}


def _gaussian_inside(domain: Domain, n: int, means: Tensor, std: float, g: torch.Generator) -> Tensor:
    """Mixture of isotropic Gaussians (equal weights) restricted to the domain, by rejection."""
    out, have = [], 0
    for _ in range(200):
        k = torch.randint(means.shape[0], (4 * n,), generator=g)
        cand = means[k] + std * torch.randn(4 * n, domain.dim, generator=g)
        cand = cand[domain.contains(cand, tol=0.0)]
        out.append(cand)
        have += cand.shape[0]
        if have >= n:
            return torch.cat(out)[:n]
    raise RuntimeError("the law has almost no mass inside the domain")


def sample_law(spec: dict, domain: Domain, n: int, generator: torch.Generator) -> Tensor:
    """Samples of a law described by ``spec``: ``uniform`` in the domain, ``gaussian`` (``mean``, ``std``)
    restricted to it, ``petals``: a Gaussian at each petal tip of a flower (mass at the boundary), or ``field``:
    fields bounded in a box (:func:`squashed_field`)."""
    kind = spec.get("type")
    if kind == "uniform":
        return domain.sample_uniform(n, generator)
    if kind == "gaussian":
        mean = torch.as_tensor(spec["mean"], dtype=torch.float32).reshape(1, -1)
        if mean.shape[1] != domain.dim:
            raise ValueError(f"gaussian mean has {mean.shape[1]} entries, the domain dimension is {domain.dim}")
        return _gaussian_inside(domain, n, mean, float(spec["std"]), generator)
    if kind == "petals":
        if domain.dim != 2:
            raise ValueError("the petals law is 2D")
        petals = int(spec.get("petals", 5))
        ang = torch.arange(petals, dtype=torch.float32) * (2 * torch.pi / petals)
        means = float(spec.get("radius", 1.0)) * torch.stack([ang.cos(), ang.sin()], 1)
        return _gaussian_inside(domain, n, means, float(spec["std"]), generator)
    if kind == "field":
        return squashed_field(spec, domain, n, generator)
    raise ValueError(f"unknown law type {kind!r}; choose uniform, gaussian, petals or field")


def squashed_field(spec: dict, domain: Domain, n: int, generator: torch.Generator) -> Tensor:
    """Fields bounded in a box: ``lo + (hi - lo) sigmoid(mean + scale u)`` with ``u`` a unit-variance Gaussian
    random field (:func:`scidiff.data.synthetic.gaussian_random_field`, spectrum ``(tau^2 + |2 pi k|^2)^-alpha``)
    on a periodic grid of ``res`` points per axis in ``dims`` (1 or 2) dimensions, flattened to ``res^dims``
    coordinates. A logit-normal field: every value strictly inside the range, with mass close to the bounds
    when ``scale`` is large (a saturation or a concentration that often nearly reaches its physical limits)."""
    from ..data.synthetic import gaussian_random_field

    if not isinstance(domain, Box):
        raise ValueError("the field law lives in a box domain (its bounds are the physical range)")
    dims = int(spec.get("dims", 1))
    res = round(domain.dim ** (1.0 / dims))
    if res**dims != domain.dim:
        raise ValueError(f"a field of {domain.dim} values is not a {dims}D grid; set the box dim to res^dims")
    u = gaussian_random_field(n, res, alpha=float(spec.get("alpha", 2.0)), tau=float(spec.get("tau", 3.0)),
                              dims=dims, generator=generator).reshape(n, domain.dim)
    lo, hi = domain.bounds()
    squashed = torch.sigmoid(float(spec.get("mean", 0.0)) + float(spec.get("scale", 1.0)) * u.double())
    return (lo + (hi - lo) * squashed).float()


def sinkhorn_divergence(x: Tensor, y: Tensor, reg: float = 0.05) -> float:
    """Debiased entropic OT divergence ``S_eps(x, y)`` between two point clouds (POT)."""
    import ot  # POT, only needed here

    xs, ys = x.detach().double().cpu().numpy(), y.detach().double().cpu().numpy()
    return float(ot.bregman.empirical_sinkhorn_divergence(xs, ys, reg, numIterMax=2000, warn=False))


def run_problem(config: dict) -> dict:
    """Train a bridge for the problem in ``config`` (missing keys take :data:`DEFAULTS`) and evaluate it.

    Returns ``{"config", "noise_floor", "train_time_s", "results": [{"method", "boundary", "sinkhorn",
    "ratio_to_floor", "escaped_paths", "outside_at_end", "on_boundary", "time_s"}, ...]}``; ``on_boundary``
    counts samples with a point exactly on the boundary (a field with a value at a bound): the atom clamping
    leaves, which a reflected process does not have.
    """
    if not isinstance(config, dict):
        raise TypeError("config must be a dict")
    unknown = set(config) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"unknown config keys: {sorted(unknown)}")
    cfg = {**DEFAULTS, **config}
    if not isinstance(cfg["ipf"], dict):
        raise ValueError("the ipf config entry must be a mapping of IPF options")
    unknown = set(cfg["ipf"]) - set(IPF_OPTIONS)
    if unknown:
        raise ValueError(f"unknown ipf options {sorted(unknown)}; choose from {IPF_OPTIONS}")
    if cfg["trainer"] is not None and not isinstance(cfg["trainer"], dict):
        raise ValueError("the trainer config entry must be a mapping of Trainer options (or null)")
    g = torch.Generator().manual_seed(int(cfg["seed"]))
    domain = make_domain(dict(cfg["domain"]))
    x0 = sample_law(cfg["source"], domain, cfg["n_train"], g)
    x1 = sample_law(cfg["target"], domain, cfg["n_train"], g)
    # Evaluation draws come from their own stream, so every training method is scored on the same samples.
    g_eval = torch.Generator().manual_seed(int(cfg["seed"]) + 1)
    start = sample_law(cfg["source"], domain, cfg["n_eval"], g_eval)
    held_out = sample_law(cfg["target"], domain, cfg["n_eval"], g_eval)
    floor = sinkhorn_divergence(held_out, sample_law(cfg["target"], domain, cfg["n_eval"], g_eval), cfg["sinkhorn_reg"])
    t = time.perf_counter()
    ipf = {"n_steps": cfg["n_steps"], **DEFAULTS["ipf"], **cfg["ipf"]}
    common = dict(n_iter=cfg["n_iter"], batch_size=cfg["batch_size"], lr=cfg["lr"], ot_method=cfg["ot_method"],
                  hidden=cfg["hidden"], depth=cfg["depth"])
    # Network initialisation (and the Lightning route's couplings) draw from the global RNG: seed a private copy
    # of it, so a problem file gives the same numbers every run and the caller's RNG is left alone.
    with torch.random.fork_rng():
        torch.manual_seed(int(cfg["seed"]))
        if cfg["trainer"] is None:
            net = train_bridge(x0, x1, cfg["sigma"], method=cfg["method"], domain=domain, ipf=ipf, generator=g,
                               progress=False, **common)
        else:
            from .lightning import fit_bridge_with_trainer

            net = fit_bridge_with_trainer(x0, x1, cfg["sigma"], method=cfg["method"], domain=dict(cfg["domain"]),
                                          trainer=cfg["trainer"], ipf=ipf, seed=int(cfg["seed"]), **common)
    train_time = time.perf_counter() - t
    results = []
    for boundary in cfg["boundaries"]:
        escaped = torch.zeros(start.shape[0], dtype=torch.bool)

        def track(state, escaped=escaped):
            escaped.logical_or_(~domain.contains(state["x"]))

        t = time.perf_counter()
        with torch.no_grad():
            out = sample_bridge(net, start, cfg["sigma"], domain, n_steps=cfg["n_steps"], boundary=boundary,
                                generator=torch.Generator().manual_seed(int(cfg["seed"]) + 2), progress=False,
                                callback=track)
        elapsed = time.perf_counter() - t
        div = sinkhorn_divergence(out, held_out, cfg["sinkhorn_reg"])
        results.append({
            "method": cfg["method"], "boundary": boundary, "sinkhorn": div, "ratio_to_floor": div / max(floor, 1e-12),
            "escaped_paths": int(escaped.sum()), "outside_at_end": int((~domain.contains(out)).sum()),
            "on_boundary": int(domain.on_boundary(out, 0.0).sum()),
            "time_s": elapsed,
        })
    return {"config": cfg, "noise_floor": floor, "train_time_s": train_time, "results": results}


def markdown_table(report: dict | list[dict]) -> str:
    """The results of :func:`run_problem` (one report or several on the same problem, e.g. one per training
    method) as a markdown table (ratios against the noise floor)."""
    reports = report if isinstance(report, list) else [report]
    rows = ["| training | sampler | Sinkhorn div. | x noise floor | paths that left | outside at end | on the boundary "
            "| train time (s) | sampling time (s) |", "|---|---|---|---|---|---|---|---|---|"]
    names = {"reflect": "reflected bridge", "clamp": "clamped baseline", "none": "unconstrained bridge"}
    for rep in reports:
        for r in rep["results"]:
            rows.append(f"| {r.get('method', 'matching')} | {names.get(r['boundary'], r['boundary'])} | "
                        f"{r['sinkhorn']:.2e} | {r['ratio_to_floor']:.1f} | {r['escaped_paths']} / "
                        f"{rep['config']['n_eval']} | {r['outside_at_end']} | {r['on_boundary']} | "
                        f"{rep['train_time_s']:.1f} | {r['time_s']:.2f} |")
    rows.append(f"| - | noise floor (target vs target) | {reports[0]['noise_floor']:.2e} | 1.0 | - | - | - | - | - |")
    return "\n".join(rows)
