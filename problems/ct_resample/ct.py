"""CT problems on generated phantoms, and the methods compared on them (shared by solve.py and benchmarks/resample.py).

* ``sparse_view`` -- parallel-beam ``deepinv.physics.Tomography`` with few angles, small noise;
* ``low_dose``    -- many angles, heavy noise (few photons per ray);
* ``saturated``   -- a detector that saturates: ``y = level tanh(A x / level) + noise`` (nonlinear).
"""

from __future__ import annotations

import time
import warnings

import torch

import scidiff.data.phantoms as phantoms
from scidiff.diffusion import ddpm_sigmas, seeded_generators
from scidiff.inverse import dps, latent_dps, red_diff, resample, resample_pixel
from scidiff.inverse.resample import misfit
from scidiff.likelihoods import SaturatingSensor, from_physics, in_model_units


def build_problem(kind: str, res: int = 32, angles: int = 6, sigma_y: float = 0.01, level: float = 0.3,
                  seed: int = 1000) -> dict:
    """Ground truth, measurements and the physical-units likelihood of one CT problem."""
    import deepinv as dinv

    if kind not in ("sparse_view", "low_dose", "saturated"):
        raise ValueError(f"unknown CT problem {kind!r}; choose sparse_view, low_dose or saturated")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        physics = dinv.physics.Tomography(angles=angles, img_width=res, circle=False, normalize=True)
    x_true = phantoms.ellipse_phantoms(1, res, generator=seeded_generators([seed]))
    noise = sigma_y * torch.randn(physics.A(x_true).shape, generator=torch.Generator().manual_seed(seed + 1))
    if kind == "saturated":
        clean = level * torch.tanh(physics.A(x_true) / level)
        likelihood = SaturatingSensor(physics.A, clean + noise, sigma_y, level)
    else:
        likelihood = from_physics(physics, physics.A(x_true) + noise, sigma_y)
    return {"kind": kind, "x_true": x_true, "likelihood": likelihood, "sigma_y": sigma_y, "physics": physics}


def run_method(method: str, problem: dict, priors: dict, n: int, steps: int, options: dict | None = None):
    """One method on one problem: samples in physical units and the run's info."""
    lik, options = problem["likelihood"], dict(options or {})
    gen = seeded_generators(n)
    sig = ddpm_sigmas(steps)
    if method in ("resample", "latent_dps"):
        lp = priors["latent"]
        fn = resample if method == "resample" else latent_dps
        post = fn(lp, lik, (n, *lp.latent_shape), sig, generator=gen, progress=False, **options)
        return post.samples, post.info
    pixel = priors["pixel"]
    mean, std = float(pixel.norm_mean[0]), float(pixel.norm_std[0])
    lik_model = in_model_units(lik, mean, std, shape=pixel.shape)
    shape = (n, *pixel.shape)
    if method == "dps":
        post = dps(pixel, lik_model, shape, sig, generator=gen, progress=False, **options)
    elif method == "red_diff":
        options.setdefault("mu_init", "zeros" if not hasattr(lik_model, "A_dagger") else "pinv")
        post = red_diff(pixel, lik_model, shape, sig, generator=gen, progress=False, **options)
    elif method == "resample_pixel":
        post = resample_pixel(pixel, lik_model, shape, sig, generator=gen, progress=False, **options)
    else:
        raise ValueError(f"unknown method {method!r}")
    return pixel.denormalize(post.samples), post.info


def metrics(x, problem: dict) -> dict:
    """Measurement misfit (mean squared residual, per sample then averaged), PSNR and SSIM of each sample
    against the truth (data range 1), averaged."""
    import deepinv as dinv

    x = x.detach().float()
    truth = problem["x_true"].expand_as(x)
    with torch.no_grad():
        fit = misfit(problem["likelihood"], x).mean()
        psnr = dinv.loss.metric.PSNR(max_pixel=1.0)(x.clamp(0, 1), truth).mean()
        ssim = dinv.loss.metric.SSIM(max_pixel=1.0)(x.clamp(0, 1), truth).mean()
    return {"misfit": float(fit), "psnr": float(psnr), "ssim": float(ssim)}


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start
