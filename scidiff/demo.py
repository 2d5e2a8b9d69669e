"""``scidiff demo``: the end-to-end example on an embedded default, a few minutes on two CPU cores.

It loads the small prior that ships with scidiff (trained by ``scidiff fit -c problems/grf/fit.yaml`` on
generated 32x32 Gaussian random fields; see ``scidiff/assets/grf32.md``) and checks it against what is known
exactly for this field, which is Gaussian:

1. prior samples against the exact power spectrum and unit variance;
2. a sparse-sensor inverse problem (5 % of the pixels observed with noise): DPS posterior samples from the
   trained prior against the exact posterior mean and standard deviation of the true field law.

Results go to a NetCDF file and a PNG figure whose paths are printed.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch

def _figure(samples, k, spec_model, spec_exact, inv: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(13, 6), constrained_layout=True)
    grid = fig.add_gridspec(2, 6)
    vmax = float(samples.abs().max())
    for i in range(min(4, len(samples))):
        ax = fig.add_subplot(grid[0, i])
        ax.imshow(samples[i, 0].numpy(), cmap="RdBu_r", vmin=-vmax, vmax=vmax)
        ax.set_axis_off()
        ax.set_title(f"prior sample {i}", fontsize=9)
    ax = fig.add_subplot(grid[0, 4:])
    ax.loglog(k[1:], spec_exact[1:], "k-", label="exact GRF spectrum")
    ax.loglog(k[1:], spec_model[1:], "o", color="tab:red", ms=4, label="prior samples")
    ax.set_xlabel("wavenumber |k|")
    ax.set_ylabel("radially averaged power")
    ax.legend(fontsize=8)
    panels = [
        ("truth and sensors", inv["truth"], "RdBu_r"),
        ("exact posterior mean", inv["exact_mean"], "RdBu_r"),
        ("DPS posterior mean", inv["dps_mean"], "RdBu_r"),
        ("|DPS mean - truth|", (inv["dps_mean"] - inv["truth"]).abs(), "magma"),
        ("DPS posterior std", inv["dps_std"], "magma"),
        ("exact posterior std", inv["exact_std"], "magma"),
    ]
    vstd = float(max(inv["dps_std"].max(), inv["exact_std"].max(), (inv["dps_mean"] - inv["truth"]).abs().max()))
    for j, (title, img, cmap) in enumerate(panels):
        ax = fig.add_subplot(grid[1, j])
        lim = dict(vmin=-vmax, vmax=vmax) if cmap == "RdBu_r" else dict(vmin=0, vmax=vstd)
        ax.imshow(img.numpy(), cmap=cmap, **lim)
        if j == 0:
            rows, cols = inv["sensor_rc"]
            ax.scatter(cols, rows, s=6, c="k", marker="x")
        ax.set_axis_off()
        ax.set_title(title, fontsize=9)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def grf_sensor_problem(shape, *, fraction: float = 0.05, sigma_y: float = 0.05, seed: int = 0) -> dict:
    """A held-out GRF observed at a random ``fraction`` of pixels, with its exact Gaussian posterior.

    The field law is Gaussian with the known covariance :func:`~scidiff.data.synthetic.grf_covariance`, so the
    exact posterior is :meth:`scidiff.oracles.GaussianMixture.posterior` of that Gaussian. Returns the truth
    ``(1, res, res)``, the likelihood in physical units (a selection matrix, with its SVD) and the exact posterior.
    """
    from .data.synthetic import gaussian_random_field, grf_covariance
    from .likelihoods import LinearGaussianLikelihood
    from .oracles import Gaussian

    res, d = shape[-1], math.prod(shape)
    g = torch.Generator().manual_seed(10_000 + seed)
    truth = gaussian_random_field(1, res, generator=g)[0]
    m = max(1, round(fraction * d))
    idx = torch.randperm(d, generator=g)[:m]
    selection = torch.zeros(m, d, dtype=torch.float64)
    selection[torch.arange(m), idx] = 1.0
    y = truth.reshape(-1).double()[idx] + sigma_y * torch.randn(m, generator=g, dtype=torch.float64)
    likelihood = LinearGaussianLikelihood.from_matrix(selection, y[None], sigma_y, shape)
    exact = Gaussian(torch.zeros(d), grf_covariance(res)).posterior(selection, y, sigma_y)
    return {"truth": truth, "likelihood": likelihood, "exact": exact, "sensor_index": idx}


def sparse_sensor_problem(prior, *, fraction: float = 0.05, sigma_y: float = 0.05, n: int = 8, steps: int = 100,
                          zeta: float = 1.0, seed: int = 0) -> dict:
    """Observe a held-out field at a random ``fraction`` of pixels; compare DPS with the exact posterior."""
    from .diffusion import karras_sigmas, seeded_generators
    from .inverse.dps import dps
    from .likelihoods.units import in_model_units

    shape = prior.shape
    res = shape[-1]
    problem = grf_sensor_problem(shape, fraction=fraction, sigma_y=sigma_y, seed=seed)
    truth, likelihood, exact, idx = (problem[k] for k in ("truth", "likelihood", "exact", "sensor_index"))
    stats = dict(mean=prior.norm_mean.reshape(-1, 1, 1).double(), std=prior.norm_std.reshape(-1, 1, 1).double())
    post = dps(prior, in_model_units(likelihood, **stats, shape=shape), (n, *shape),
               karras_sigmas(steps, prior.hparams.sigma_min, prior.hparams.sigma_max), zeta=zeta,
               generator=seeded_generators(range(seed, seed + n)))
    samples = prior.denormalize(post.samples.detach())
    exact_mean = exact.mean().reshape(shape).float()
    exact_std = exact.covariance().diagonal().sqrt().reshape(shape).float()
    dps_mean, dps_std = samples.mean(0), samples.std(0)
    rel = lambda a, b: float((a - b).norm() / b.norm())  # noqa: E731
    return {
        "truth": truth[0], "exact_mean": exact_mean[0], "exact_std": exact_std[0], "dps_mean": dps_mean[0],
        "dps_std": dps_std[0], "samples": samples, "sensor_rc": (idx // res, idx % res),
        "summary": {
            "sensors": int(idx.numel()),
            "dps_steps": steps,
            "dps_seconds": round(post.info["wall_time"], 2),
            "rel_error_dps_mean_vs_truth": round(rel(dps_mean, truth), 4),
            "rel_error_exact_mean_vs_truth": round(rel(exact_mean, truth), 4),
            "rel_diff_dps_mean_vs_exact_mean": round(rel(dps_mean, exact_mean), 4),
            "dps_std_over_exact_std": round(float(dps_std.mean() / exact_std.mean()), 3),
        },
    }


def run_demo(
    out_dir: str | Path = "scidiff-demo", prior_path=None, n: int = 32, steps: int = 18, seed: int = 0,
    dps_steps: int = 100,
) -> dict:
    """Sample the shipped GRF prior and compare with the exact field statistics; returns the summary."""
    import xarray as xr

    from .analysis import radial_power_spectrum
    from .data.netcdf import write_netcdf
    from .data.synthetic import gaussian_random_field, grf_spectrum
    from .diffusion import seeded_generators
    from .priors import DiffusionPrior

    out_dir = Path(out_dir)
    prior = DiffusionPrior.load(prior_path) if prior_path else DiffusionPrior.pretrained("grf32")
    t0 = time.perf_counter()
    samples = prior.sample(n, steps, generator=seeded_generators(range(seed, seed + n)))
    wall = time.perf_counter() - t0
    # Reference: exact GRF samples of the same size, so the sampling noise of the comparison is visible.
    exact = gaussian_random_field(max(n, 512), samples.shape[-1], generator=torch.Generator().manual_seed(10_000 + seed))
    k, spec_model = radial_power_spectrum(samples)
    _, spec_exact = radial_power_spectrum(exact)
    band = slice(1, len(k))
    log_err = float((spec_model[band].log() - spec_exact[band].log()).abs().mean())
    # Most of a GRF's variance sits in its k = 0 mode (the field mean), so report the two parts separately.
    spec = grf_spectrum(samples.shape[-1])
    zero_mode = float(spec.reshape(-1)[0] / spec.numel())
    summary = {
        "n_samples": n,
        "steps": steps,
        "sampling_seconds": round(wall, 2),
        "within_sample_variance": round(float(samples.var(dim=(-2, -1), correction=0).mean()), 4),
        "exact_within_sample_variance": round(1.0 - zero_mode, 4),
        "std_of_field_mean": round(float(samples.mean(dim=(-2, -1)).std()), 4),
        "exact_std_of_field_mean": round(zero_mode**0.5, 4),
        "spectrum_mean_abs_log_error": round(log_err, 4),
    }
    inv = sparse_sensor_problem(prior, steps=dps_steps, seed=seed)
    summary.update(inv["summary"])
    coords = np.arange(samples.shape[-1]) / samples.shape[-1]
    yx = ("y", "x")
    ds = xr.Dataset(
        {
            "u": (("sample", "y", "x"), samples[:, 0].numpy(), {"long_name": "prior sample", "units": "1"}),
            "spectrum_samples": (("k",), spec_model.numpy()),
            "spectrum_exact": (("k",), spec_exact.numpy()),
            "truth": (yx, inv["truth"].numpy(), {"long_name": "held-out field observed by the sensors"}),
            "posterior_samples": (("posterior_sample", "y", "x"), inv["samples"][:, 0].numpy()),
            "posterior_mean": (yx, inv["dps_mean"].numpy(), {"long_name": "DPS posterior mean"}),
            "posterior_std": (yx, inv["dps_std"].numpy(), {"long_name": "DPS posterior standard deviation"}),
            "exact_posterior_mean": (yx, inv["exact_mean"].numpy()),
            "exact_posterior_std": (yx, inv["exact_std"].numpy()),
        },
        coords={"y": coords, "x": coords, "k": k.numpy()},
        attrs={**summary, "title": "scidiff demo: diffusion prior for 32x32 Gaussian random fields, sparse sensors"},
    )
    nc = write_netcdf(ds, out_dir / "demo_samples.nc")
    png = _figure(samples, k.numpy(), spec_model.numpy(), spec_exact.numpy(), inv, out_dir / "demo_samples.png")
    summary["netcdf"], summary["figure"] = str(nc.resolve()), str(png.resolve())
    return summary


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="scidiff demo", description=__doc__.splitlines()[0])
    p.add_argument("--out", default="scidiff-demo", help="output folder")
    p.add_argument("--prior", default=None, help="a .safetensors/.ckpt prior (default: the shipped GRF prior)")
    p.add_argument("--n", type=int, default=32, help="number of samples")
    p.add_argument("--steps", type=int, default=18, help="Heun steps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dps-steps", type=int, default=100, help="steps of the sparse-sensor posterior sampler")
    a = p.parse_args(argv)
    summary = run_demo(a.out, a.prior, a.n, a.steps, a.seed, a.dps_steps)
    width = max(map(len, summary))
    for key, value in summary.items():
        print(f"{key:<{width}}  {value}")
    return summary
