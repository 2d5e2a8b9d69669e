"""Imaging inverse problems on held-out CT phantoms with a trained slice prior: ``scidiff inverse -c cfg.yaml``.

A problem file names a prior (default ``ct_slices32``, trained by ``problems/ct3d/fit_slices.yaml`` on axial
slices of seeded random-ellipsoid volumes, seed 0), an operator with Gaussian measurement noise and a sampler:

* ``inpaint`` -- random inpainting, a fraction ``missing`` of the pixels unobserved (deepinv ``Inpainting``);
* ``sr`` -- ``factor``-times super-resolution with a bicubic anti-alias filter (deepinv ``Downsampling``);
* ``deblur`` -- a Gaussian blur of width ``blur_sigma`` pixels (deepinv ``BlurFFT``);
* ``ct`` -- sparse-view parallel-beam CT with ``views`` angles over 180 degrees (deepinv ``Tomography``).

The ground truths are the middle axial slices of volumes drawn with a seed the prior never saw. Everything is
in physical units (attenuation relative to water, about 0 to 1.9); the likelihood reaches the prior's
normalised units through :func:`~scidiff.likelihoods.in_model_units`. Outputs: the posterior (samples, mean,
std) as NetCDF via :meth:`Posterior.to_xarray`, the truth and measurements alongside, and a PNG
(truth, measurement, mean, std, |error|).
"""

from __future__ import annotations

import argparse
import functools
import json
import math
from pathlib import Path

import torch
from torch import Tensor

from .._files import atomic_path
from ..diffusion import ddpm_sigmas, seeded_generators
from ..diffusion.random import randn

PROBLEMS = ("inpaint", "sr", "deblur", "ct")
SAMPLERS = ("dps", "red_diff", "mcgdiff")
#: the interval deepinv's [0, 1] stands for: attenuation relative to water, air 0 to bone 1.9 (scidiff.volumes)
DATA_RANGE = (0.0, 2.0)
#: the training seed of ct_slices32 is 0; ground truths come from this one
HELD_OUT_SEED = 1000


def phantom_truth(n: int = 1, res: int = 32, seed: int = HELD_OUT_SEED) -> Tensor:
    """``(n, 1, res, res)`` middle axial slices of ``n`` random-ellipsoid volumes drawn with ``seed``."""
    if n < 1:
        raise ValueError(f"need n >= 1 ground truths; got {n}")
    return _middle_slices(int(n), int(res), int(seed)).clone()


@functools.lru_cache(maxsize=8)
def _middle_slices(n: int, res: int, seed: int) -> Tensor:
    # each volume costs a second or so to paint; problems and benchmarks ask for the same few again and again
    from ..volumes.phantoms import make_slice_dataset

    mu = torch.from_numpy(make_slice_dataset(n_volumes=n, res=res, seed=seed)["mu"].values)
    return mu.reshape(n, res, res, res)[:, res // 2, None].float()


def make_physics(kind: str, res: int, sigma_y: float, *, missing: float = 0.7, factor: int = 2,
                 blur_sigma: float = 1.5, views: int = 16, mask_seed: int = 1):
    """The deepinv operator of problem ``kind`` on ``(1, res, res)`` images with ``GaussianNoise(sigma_y)``."""
    import deepinv as dinv

    if not sigma_y > 0:
        raise ValueError(f"sigma_y must be positive; got {sigma_y}")
    noise = dinv.physics.GaussianNoise(float(sigma_y))
    size = (1, res, res)
    if kind == "inpaint":
        if not 0 <= missing < 1:
            raise ValueError(f"missing must be a fraction in [0, 1); got {missing}")
        return dinv.physics.Inpainting(img_size=size, mask=1.0 - missing, noise_model=noise,
                                       rng=torch.Generator().manual_seed(mask_seed))
    if kind == "sr":
        if factor not in (2, 4) or res % factor:
            raise ValueError(f"factor must be 2 or 4 and divide the image side {res}; got {factor}")
        return dinv.physics.Downsampling(img_size=size, factor=factor, filter="bicubic", noise_model=noise)
    if kind == "deblur":
        kernel = dinv.physics.functional.blur.gaussian_blur(sigma=(blur_sigma, blur_sigma))
        return dinv.physics.BlurFFT(img_size=size, filter=kernel, noise_model=noise)
    if kind == "ct":
        angles = torch.linspace(0, 180, views + 1)[:-1]
        return dinv.physics.Tomography(angles=angles, img_width=res, circle=False, normalize=True, noise_model=noise)
    raise ValueError(f"unknown problem {kind!r}; choose from {PROBLEMS}")


def measure(physics, x: Tensor, sigma_y: float, *, generator=None) -> Tensor:
    """``y = A(x) + sigma_y n`` with the noise drawn from ``generator`` (reproducible, unlike deepinv's global RNG).

    Unobserved pixels of an inpainting mask stay 0: they are not measurements, so they carry no noise either.
    """
    import deepinv as dinv

    with torch.no_grad():
        ax = physics.A(x)
    y = ax + sigma_y * randn(ax.shape, generator, dtype=ax.dtype)
    return y * physics.mask if isinstance(physics, dinv.physics.Inpainting) else y


def likelihood(prior, physics, y: Tensor):
    """The data term of ``y`` seen from the prior's normalised units."""
    from ..likelihoods import from_physics, in_model_units

    lik = from_physics(physics, y, x_shape=prior.shape)
    return in_model_units(lik, prior._stat(prior.norm_mean, y)[0], prior._stat(prior.norm_std, y)[0], shape=prior.shape)


def sample_posterior(prior, lik, name: str, num_samples: int, steps: int, *, seed: int = 0, progress: bool = False,
                     **kwargs):
    """Run sampler ``name`` on the DDPM grid of ``steps`` levels; samples come back in physical units."""
    from .. import inverse

    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; choose from {SAMPLERS}")
    shape = (num_samples, *prior.shape)
    gens = seeded_generators([seed * 2**20 + k for k in range(num_samples)])
    if name == "mcgdiff":  # one particle system: one generator
        gens = torch.Generator().manual_seed(seed)
    post = getattr(inverse, name)(prior, lik, shape, ddpm_sigmas(steps), generator=gens, progress=progress, **kwargs)
    post.samples = prior.denormalize(post.samples)
    return post


def psnr(x: Tensor, ref: Tensor, data_range: tuple[float, float] = DATA_RANGE) -> float:
    """PSNR in dB of ``x`` against ``ref``, peak = the width of ``data_range``."""
    peak = data_range[1] - data_range[0]
    return float(10 * torch.log10(peak**2 / (x.double() - ref.double()).pow(2).mean()))


def ssim(x: Tensor, ref: Tensor, data_range: tuple[float, float] = DATA_RANGE) -> float:
    """deepinv's SSIM (Wang et al. 2004, Gaussian window 11) on images mapped to [0, 1] by ``data_range``."""
    import deepinv as dinv

    lo, peak = data_range[0], data_range[1] - data_range[0]
    return float(dinv.loss.metric.SSIM(max_pixel=1.0)(((x - lo) / peak).float(), ((ref - lo) / peak).float()).mean())


def misfit(physics, x: Tensor, y: Tensor, sigma_y: float) -> float:
    """RMS of ``y - A x`` over the measured entries / sigma_y, averaged over samples: about 1 at the noise level."""
    from ..likelihoods import from_physics

    with torch.no_grad():
        r = physics.A(x.float()) - y
    m = from_physics(physics, y, sigma_y).num_measurements  # an inpainting mask's zeros are not measurements
    return float((r.pow(2).flatten(1).sum(1) / m).sqrt().mean() / sigma_y)


def run_problem(config: dict, *, progress: bool = False) -> dict:
    """Run one problem file; returns a report (metrics, NFE, VJPs, wall time, output paths)."""
    prob, samp, out = config.get("problem", {}), config.get("sampler", {}), config.get("output", {})
    kind = prob.get("kind")
    if kind not in PROBLEMS:
        raise ValueError(f"problem.kind must be one of {PROBLEMS}; got {kind!r}")
    from ..priors import DiffusionPrior

    prior_name = str(config.get("prior", "ct_slices32"))
    prior = DiffusionPrior.load(prior_name) if prior_name.endswith((".ckpt", ".safetensors")) else \
        DiffusionPrior.pretrained(prior_name)
    prior.requires_grad_(False)
    res = prior.shape[-1]
    sigma_y = float(prob.get("sigma_y", 0.02))
    options = {k: prob[k] for k in ("missing", "factor", "blur_sigma", "views", "mask_seed") if k in prob}
    physics = make_physics(kind, res, sigma_y, **options)
    truth_cfg = config.get("truth", {})
    index = int(truth_cfg.get("index", 0))
    x_true = phantom_truth(index + 1, res, int(truth_cfg.get("seed", HELD_OUT_SEED)))[index : index + 1]
    y = measure(physics, x_true, sigma_y, generator=torch.Generator().manual_seed(int(truth_cfg.get("noise_seed", 0))))

    name = samp.get("name", "dps")
    post = sample_posterior(prior, likelihood(prior, physics, y), name, int(samp.get("num_samples", 8)),
                            int(samp.get("steps", 200)), seed=int(samp.get("seed", 0)), progress=progress,
                            **(samp.get("kwargs") or {}))
    mean = post.mean()[None]
    report = {"problem": kind, "sampler": name, "prior": prior_name, "sigma_y": sigma_y,
              "psnr": psnr(mean, x_true), "ssim": ssim(mean, x_true),
              "misfit": misfit(physics, post.samples, y, sigma_y), "mean_std": float(post.std().mean()),
              "nfe": post.info.get("nfe"), "vjp": post.info.get("vjp"), "wall_time": post.info.get("wall_time")}
    folder = Path(out.get("dir", f"outputs/phantom_{kind}"))
    folder.mkdir(parents=True, exist_ok=True)
    nc, png = folder / f"{name}_posterior.nc", folder / f"{name}_posterior.png"
    _save(post, x_true, y, report, nc)
    posterior_png(x_true[0, 0], y[0, 0], post.mean()[0], post.std()[0], png, title=f"{kind}, {name}: {report['psnr']:.2f} dB")
    report.update(netcdf=str(nc), png=str(png))
    return report


def _save(post, x_true: Tensor, y: Tensor, report: dict, path: Path) -> None:
    from ..data.netcdf import write_netcdf

    ds = post.to_xarray()
    ds["truth"] = (("channel", "y", "x"), x_true[0].numpy())
    ds["measurement"] = (tuple(f"m{i}" for i in range(y.ndim - 1)), y[0].numpy())
    ds.attrs.update({k: v for k, v in report.items() if isinstance(v, (int, float, str))})
    write_netcdf(ds, path)


def posterior_png(truth, measurement, mean, std, path, *, title: str = "") -> Path:
    """Five panels: truth, measurement (an image, a low-resolution image or a sinogram), posterior mean, posterior
    std and |mean - truth|; std and error share one colour scale, so the uncertainty map reads against the error."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    truth, mean, std = (torch.as_tensor(a).detach().squeeze().cpu().numpy() for a in (truth, mean, std))
    measurement = torch.as_tensor(measurement).detach().squeeze().cpu().numpy()
    err = abs(mean - truth)
    top = float(max(err.max(), std.max()))
    panels = [("truth", truth, "gray", 0, 1.9), ("measurement", measurement, "gray", None, None),
              ("posterior mean", mean, "gray", 0, 1.9), ("posterior std", std, "magma", 0, top),
              ("|mean - truth|", err, "magma", 0, top)]
    fig, axes = plt.subplots(1, 5, figsize=(13, 2.9))
    for ax, (name, img, cmap, lo, hi) in zip(axes, panels):
        im = ax.imshow(img, cmap=cmap, vmin=lo, vmax=hi, aspect="auto" if img.shape[0] != img.shape[1] else "equal")
        ax.set_title(name, fontsize=9)
        ax.set_xticks([]), ax.set_yticks([])
        fig.colorbar(im, ax=ax, fraction=0.046)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return Path(path)


def main(argv: list[str]) -> dict:
    """``scidiff inverse -c problems/phantom_inpaint/config.yaml [--set sampler.name=red_diff ...]``."""
    from .._config import load_config

    p = argparse.ArgumentParser(prog="scidiff inverse", description="Posterior sampling on a held-out CT phantom.")
    p.add_argument("-c", "--config", required=True, help="a problems/phantom_*/config.yaml")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config entry (YAML value)")
    p.add_argument("--progress", action="store_true")
    a = p.parse_args(argv)
    report = run_problem(load_config(a.config, a.set), progress=a.progress)
    print(json.dumps({k: (round(v, 4) if isinstance(v, float) and math.isfinite(v) else v) for k, v in report.items()},
                     indent=1))
    return report
