"""Posterior sampling head-to-head: scidiff DPS / RED-Diff against deepinv DPS / DiffPIR / DDRM.

The prior is a two-component Gaussian mixture on a 16x16 field with smooth covariances, used through its
exact denoiser, so the posterior of every linear-Gaussian problem is known in closed form and each method's
posterior-mean error can be measured, not guessed. Problems: inpainting (30 % of pixels observed) and a
Gaussian blur, both with measurement noise; both operators are decomposable, so DDRM runs too. Every method
gets the same prior, measurements and number of samples, in one process.

    python benchmarks/inverse_vs_deepinv.py                 # default size, < 2 min on one core
    python benchmarks/inverse_vs_deepinv.py --steps 100 --red-steps 100   # quicker

Metrics (in deepinv's [0, 1] units): ``mean err`` = |mean of samples - exact posterior mean| / |exact mean|;
``std ratio`` = mean over pixels of sample std / exact std (RED-Diff is a mode seeker, its spread is not a
posterior spread); ``PSNR`` of the sample mean against the ground truth; ``misfit`` = RMS(y - A x) / sigma_y
over samples (1 = fits to the noise level); NFE and VJP per sample; wall time for all samples; ratios
against deepinv DPS. The exact posterior mean is listed as the reference row.
"""

from __future__ import annotations

import argparse
import math
import time

import torch

import deepinv as dinv
from scidiff.diffusion import ddpm_sigmas, seeded_generators
from scidiff.inverse import dps, mcgdiff, red_diff, to_deepinv
from scidiff.kernels import resample
from scidiff.likelihoods import from_physics, in_model_units
from scidiff.oracles import GaussianMixture

LO, HI = -1.0, 1.0  # scidiff units of the prior; deepinv sees x01 = (x - LO) / (HI - LO)


def make_prior(side: int) -> GaussianMixture:
    """Two smooth random fields with opposite mean patterns, in [-1, 1]-like units."""
    g = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.arange(side, dtype=torch.float64), torch.arange(side, dtype=torch.float64), indexing="ij")
    pts = torch.stack([yy.reshape(-1), xx.reshape(-1)], 1)
    kernel = torch.exp(-torch.cdist(pts, pts) ** 2 / (2 * 2.5**2))
    base = 0.04 * kernel + 1e-3 * torch.eye(side * side, dtype=torch.float64)
    pattern = kernel @ torch.randn(side * side, generator=g, dtype=torch.float64)
    pattern = 0.4 * pattern / pattern.abs().max()
    return GaussianMixture(torch.tensor([0.5, 0.5]), torch.stack([pattern, -pattern]), torch.stack([base, 0.5 * base]),
                           shape=(1, side, side))


def to_unit(prior: GaussianMixture) -> GaussianMixture:
    s = HI - LO
    return GaussianMixture(prior.weights, (prior.means - LO) / s, prior.covs / s**2, shape=prior.shape)


def make_physics(kind: str, side: int, sigma_y01: float):
    noise = dinv.physics.GaussianNoise(sigma_y01)
    if kind == "inpaint":
        return dinv.physics.Inpainting(img_size=(1, side, side), mask=0.3, noise_model=noise,
                                       rng=torch.Generator().manual_seed(1))
    if kind == "blur":
        return dinv.physics.BlurFFT(img_size=(1, side, side), filter=dinv.physics.functional.blur.gaussian_blur(sigma=(1.0, 1.0)),
                                    noise_model=noise)
    raise ValueError(kind)


def operator_matrix(physics, d: int, shape) -> torch.Tensor:
    basis = torch.eye(d).reshape(d, *shape)
    with torch.no_grad():
        return physics.A(basis).reshape(d, -1).T.double()


class Counter(torch.nn.Module):
    """Counts batched denoiser forwards and backward passes (VJPs) through it."""

    def __init__(self, denoiser):
        super().__init__()
        self.denoiser, self.fwd, self.vjp = denoiser, 0, 0

    def forward(self, x, sigma, **kw):
        self.fwd += 1
        out = self.denoiser(x, sigma, **kw)
        if out.requires_grad:
            out.register_hook(self._count)
        return out

    def _count(self, grad):
        self.vjp += 1
        return grad


def psnr(x, ref):
    return float(10 * torch.log10(1.0 / (x - ref).pow(2).mean()))


def ssim(x, ref):
    """deepinv's SSIM on images in [0, 1] (Gaussian window of width 11, as in Wang et al. 2004)."""
    return float(dinv.loss.metric.SSIM(max_pixel=1.0)(x.float(), ref.float()).mean())


def run_problem(kind, args):
    side, n = args.side, args.samples
    shape = (1, side, side)
    prior = make_prior(side)
    prior01 = to_unit(prior)
    sigma_y01 = args.sigma_y / (HI - LO)
    physics = make_physics(kind, side, sigma_y01)
    x_true = prior01.sample(1, torch.Generator().manual_seed(3)).float()
    y = physics.A(x_true) + sigma_y01 * torch.randn(x_true.shape, generator=torch.Generator().manual_seed(4))
    matrix = operator_matrix(physics, side * side, shape)
    exact = prior01.posterior(matrix, y.reshape(-1).double(), sigma_y01)
    exact_mean = exact.mean().reshape(1, *shape)
    exact_std = exact.covariance().diagonal().sqrt().reshape(1, *shape)

    # scidiff: likelihood in deepinv units, seen from the prior's units through the normaliser
    lik = in_model_units(from_physics(physics, y, x_shape=shape), -LO / (HI - LO), 1.0 / (HI - LO), shape=shape)
    y_batch = y.expand(n, *shape).clone()
    counter = Counter(prior)
    den01 = to_deepinv(counter, (LO, HI))

    def scidiff_dps():
        return dps(counter, lik, (n, *shape), ddpm_sigmas(args.steps), zeta=args.zeta, generator=seeded_generators(n),
                   progress=False).samples

    def scidiff_red_diff():
        return red_diff(counter, lik, (n, *shape), ddpm_sigmas(args.red_steps), lam=args.lam, lr=args.lr,
                        pinv_cutoff=args.pinv_cutoff if lik.svd is not None else None,
                        generator=seeded_generators(n),
                        progress=False).samples

    def scidiff_mcgdiff():
        post = mcgdiff(counter, lik, (n, *shape), ddpm_sigmas(args.mcg_steps), generator=torch.Generator().manual_seed(0),
                       progress=False)
        return post.samples[resample(post.log_weights, generator=torch.Generator().manual_seed(1))]

    def deepinv_dps():
        sampler = dinv.sampling.DPS(den01, num_steps=args.steps, weight=args.dinv_weight,
                                    rng=torch.Generator().manual_seed(0))
        return sampler(y_batch, physics)

    def deepinv_diffpir():
        torch.manual_seed(0)
        return dinv.sampling.DiffPIR(den01, dinv.optim.data_fidelity.L2(), sigma=sigma_y01, max_iter=100)(y_batch, physics)

    def deepinv_ddrm():
        torch.manual_seed(0)
        return dinv.sampling.DDRM(den01)(y_batch, physics)

    methods = [("scidiff DPS", scidiff_dps, False), ("scidiff RED-Diff", scidiff_red_diff, False),
               ("deepinv DPS", deepinv_dps, True), ("deepinv DiffPIR", deepinv_diffpir, True)]
    if isinstance(physics, dinv.physics.DecomposablePhysics):
        methods.append(("scidiff MCGdiff", scidiff_mcgdiff, False))
        methods.append(("deepinv DDRM", deepinv_ddrm, True))
    methods = [m for m in methods if args.methods is None or m[0] in args.methods or m[0] == "deepinv DPS"]

    rows = [{"method": "exact posterior mean", "mean_err": 0.0, "std_ratio": 1.0, "psnr": psnr(exact_mean, x_true.double()),
             "ssim": ssim(exact_mean, x_true), "misfit": float("nan"), "nfe": 0, "vjp": 0, "time": float("nan")}]
    for name, fn, in_unit in methods:
        counter.fwd = counter.vjp = 0
        start = time.perf_counter()
        out = fn().detach()
        wall = time.perf_counter() - start
        x01 = (out if in_unit else (out - LO) / (HI - LO)).double()
        mean, std = x01.mean(0, keepdim=True), x01.std(0, keepdim=True)
        misfit = (physics.A(x01.float()) - y).pow(2).flatten(1).mean(1).sqrt().mean() / sigma_y01
        rows.append({"method": name, "mean_err": float((mean - exact_mean).norm() / exact_mean.norm()),
                     "std_ratio": float((std / exact_std).mean()), "psnr": psnr(mean, x_true.double()),
                     "ssim": ssim(mean, x_true), "misfit": float(misfit), "nfe": counter.fwd, "vjp": counter.vjp, "time": wall})
    return rows


def print_table(kind, rows, args):
    ref = next(r for r in rows if r["method"] == "deepinv DPS")
    print(f"\n### {kind} ({args.side}x{args.side}, sigma_y = {args.sigma_y}, {args.samples} samples, "
          f"DPS steps {args.steps}, RED-Diff steps {args.red_steps}, MCGdiff steps {args.mcg_steps})\n")
    print("| method | mean err | std ratio | PSNR (dB) | SSIM | misfit/sigma_y | NFE | VJP | wall (s) | time vs deepinv DPS | PSNR - deepinv DPS |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        ratio = r["time"] / ref["time"] if math.isfinite(r["time"]) else float("nan")
        print(f"| {r['method']} | {r['mean_err']:.3f} | {r['std_ratio']:.2f} | {r['psnr']:.2f} | {r['ssim']:.3f} | {r['misfit']:.2f} | "
              f"{r['nfe']} | {r['vjp']} | {r['time']:.2f} | {ratio:.2f} | {r['psnr'] - ref['psnr']:+.2f} |")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--problems", nargs="+", default=["inpaint", "blur"], choices=["inpaint", "blur"])
    parser.add_argument("--side", type=int, default=16)
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--steps", type=int, default=1000, help="DPS steps (both libraries)")
    parser.add_argument("--mcg-steps", type=int, default=100, help="MCGdiff steps (the paper's 100)")
    parser.add_argument("--red-steps", type=int, default=250, help="RED-Diff steps")
    parser.add_argument("--sigma-y", type=float, default=0.05, help="measurement noise in the prior's units")
    parser.add_argument("--zeta", type=float, default=1.0, help="scidiff DPS step (paper's zeta)")
    parser.add_argument("--dinv-weight", type=float, default=100.0, help="deepinv DPS weight")
    parser.add_argument("--lam", type=float, default=0.25, help="RED-Diff lambda")
    parser.add_argument("--lr", type=float, default=0.1, help="RED-Diff Adam learning rate")
    parser.add_argument("--pinv-cutoff", type=float, default=3e-2,
                        help="RED-Diff start: truncated SVD pseudo-inverse (the reference code's deblur threshold)")
    parser.add_argument("--methods", nargs="+", default=None, help="subset of method names (deepinv DPS always runs)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    for kind in args.problems:
        print_table(kind, run_problem(kind, args), args)


if __name__ == "__main__":
    main()
