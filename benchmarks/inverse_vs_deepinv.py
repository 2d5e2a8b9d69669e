"""Posterior sampling head-to-head: scidiff DPS / RED-Diff / MCGdiff against deepinv DPS / DiffPIR / DDRM.

Two priors, every method on the same prior, measurements and number of samples, in one process:

* **phantom problems** (default): the shipped CT slice prior ``ct_slices32`` (a U-Net trained by
  ``problems/ct3d/fit_slices.yaml``) on held-out phantoms (seed 1000; training used seed 0), with the operators of
  ``scidiff inverse`` (problems/phantom_*): random inpainting (70 % missing), x2 super-resolution, Gaussian
  deblurring and 16-view CT, each with noise sigma_y = 0.02. PSNR/SSIM against the truths, averaged over
  ``--truths`` phantoms. DDRM and MCGdiff run where the operator is decomposable (inpainting, deblurring).
* **oracle problems** (``oracle_inpaint``, ``oracle_blur``): a two-component Gaussian mixture on a 16x16 field used
  through its exact denoiser, so the exact posterior is known and each method's posterior-mean error is measured.

    python benchmarks/inverse_vs_deepinv.py --problems inpaint deblur     # phantom problems
    python benchmarks/inverse_vs_deepinv.py --problems oracle_inpaint oracle_blur --steps 1000 --samples 16

Metrics (deepinv's [0, 1] units: attenuation / 2 for the phantoms): ``mean err`` = |sample mean - exact posterior
mean| / |exact mean| (oracle only); ``std ratio`` = mean sample std / exact std (oracle only); ``PSNR`` and ``SSIM`` of
the sample mean against the truth; ``misfit`` = RMS over measured entries of (y - A x) / sigma_y (1 = fits to the
noise level); NFE and VJP (batched denoiser forwards and backward passes through it) per run; wall time for all
samples; ratios against deepinv DPS.
"""

from __future__ import annotations

import argparse
import math
import time

import torch

import deepinv as dinv
from scidiff.diffusion import ddpm_sigmas, seeded_generators
from scidiff.inverse import dps, imaging, mcgdiff, red_diff, to_deepinv
from scidiff.kernels import resample
from scidiff.likelihoods import from_physics, in_model_units
from scidiff.oracles import GaussianMixture

LO, HI = -1.0, 1.0  # oracle prior units; deepinv sees x01 = (x - LO) / (HI - LO)
PHANTOM_PROBLEMS = ("inpaint", "sr", "deblur", "ct")
ORACLE_PROBLEMS = ("oracle_inpaint", "oracle_blur")


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


def make_oracle_physics(kind: str, side: int, sigma_y01: float):
    noise = dinv.physics.GaussianNoise(sigma_y01)
    if kind == "oracle_inpaint":
        return dinv.physics.Inpainting(img_size=(1, side, side), mask=0.3, noise_model=noise,
                                       rng=torch.Generator().manual_seed(1))
    return dinv.physics.BlurFFT(img_size=(1, side, side), filter=dinv.physics.functional.blur.gaussian_blur(sigma=(1.0, 1.0)),
                                noise_model=noise)


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
    return imaging.psnr(x, ref, (0.0, 1.0))


def ssim(x, ref):
    return imaging.ssim(x, ref, (0.0, 1.0))


def methods_for(counter, lik, event_shape, den01, physics01, y01, sigma_y01, n, args, to01):
    """``(name, run)`` pairs; ``run()`` returns samples in deepinv's [0, 1] units."""
    shape = (n, *event_shape)
    fast_steps = max(1, round(args.steps * args.fast_fraction))

    def scidiff_dps(steps):
        return lambda: to01(dps(counter, lik, shape, ddpm_sigmas(steps), zeta=args.zeta,
                                generator=seeded_generators(n), progress=False).samples)

    def scidiff_red_diff(**kw):
        opts = dict(lam=args.lam, lr=args.lr, weighting="linear") | kw
        cutoff = args.pinv_cutoff if lik.svd is not None else None
        return lambda: to01(red_diff(counter, lik, shape, ddpm_sigmas(args.red_steps), pinv_cutoff=cutoff,
                                     generator=seeded_generators(n), progress=False, **opts).samples)

    def scidiff_mcgdiff():
        post = mcgdiff(counter, lik, (args.mcg_particles, *shape[1:]), ddpm_sigmas(args.mcg_steps),
                       generator=torch.Generator().manual_seed(0), progress=False)
        keep = resample(post.log_weights, generator=torch.Generator().manual_seed(1))[:n]
        return to01(post.samples[keep])

    y_batch = y01.expand(n, *y01.shape[1:]).clone()

    def deepinv_dps():
        return dinv.sampling.DPS(den01, num_steps=args.steps, weight=args.dinv_weight,
                                 rng=torch.Generator().manual_seed(0))(y_batch, physics01)

    def deepinv_diffpir():
        torch.manual_seed(0)
        return dinv.sampling.DiffPIR(den01, dinv.optim.data_fidelity.L2(), sigma=sigma_y01, max_iter=100)(y_batch, physics01)

    def deepinv_ddrm():
        torch.manual_seed(0)
        return dinv.sampling.DDRM(den01)(y_batch, physics01)

    out = [("scidiff DPS", scidiff_dps(args.steps)),
           (f"scidiff DPS ({fast_steps} steps)", scidiff_dps(fast_steps)),
           ("scidiff RED-Diff (paper defaults)", scidiff_red_diff()),
           (f"scidiff RED-Diff (lr {args.tuned_lr}, sqrt)", scidiff_red_diff(lr=args.tuned_lr, weighting="sqrt")),
           ("deepinv DPS", deepinv_dps), ("deepinv DiffPIR", deepinv_diffpir)]
    if isinstance(physics01, dinv.physics.DecomposablePhysics):
        out += [("scidiff MCGdiff", scidiff_mcgdiff), ("deepinv DDRM", deepinv_ddrm)]
    return [m for m in out if args.methods is None or m[0] in args.methods or m[0] == "deepinv DPS"]


def evaluate(methods, counter, physics01, y01, sigma_y01, truth01, exact=None):
    """One row per method: quality of the sample mean, data misfit, NFE, VJP and wall time."""
    rows = []
    if exact is not None:
        rows.append({"method": "exact posterior mean", "mean_err": 0.0, "std_ratio": 1.0, "psnr": psnr(exact[0], truth01),
                     "ssim": ssim(exact[0], truth01), "misfit": float("nan"), "nfe": 0, "vjp": 0, "time": float("nan")})
    for name, fn in methods:
        counter.fwd = counter.vjp = 0
        start = time.perf_counter()
        x01 = fn().detach().double()
        wall = time.perf_counter() - start
        mean, std = x01.mean(0, keepdim=True), x01.std(0, keepdim=True)
        misfit = imaging.misfit(physics01, x01, y01, sigma_y01)
        row = {"method": name, "mean_err": float("nan"), "std_ratio": float("nan"), "psnr": psnr(mean, truth01),
               "ssim": ssim(mean, truth01), "misfit": float(misfit), "nfe": counter.fwd, "vjp": counter.vjp, "time": wall}
        if exact is not None:
            row.update(mean_err=float((mean - exact[0]).norm() / exact[0].norm()), std_ratio=float((std / exact[1]).mean()))
        rows.append(row)
    return rows


def run_oracle(kind, args):
    side, n = 16, args.samples
    shape = (1, side, side)
    prior = make_prior(side)
    prior01 = to_unit(prior)
    sigma_y01 = 0.05 / (HI - LO)
    physics = make_oracle_physics(kind, side, sigma_y01)
    x_true = prior01.sample(1, torch.Generator().manual_seed(3)).float()
    y = physics.A(x_true) + sigma_y01 * torch.randn(x_true.shape, generator=torch.Generator().manual_seed(4))
    if isinstance(physics, dinv.physics.Inpainting):
        y = y * physics.mask
    matrix = operator_matrix(physics, side * side, shape)
    exact = prior01.posterior(matrix, y.reshape(-1).double(), sigma_y01)
    exact_mean = exact.mean().reshape(1, *shape)
    exact_std = exact.covariance().diagonal().sqrt().reshape(1, *shape)
    # scidiff: likelihood in deepinv units, seen from the prior's units through the normaliser
    lik = in_model_units(from_physics(physics, y, x_shape=shape), -LO / (HI - LO), 1.0 / (HI - LO), shape=shape)
    counter = Counter(prior)
    den01 = to_deepinv(counter, (LO, HI))
    methods = methods_for(counter, lik, shape, den01, physics, y, sigma_y01, n, args, lambda x: (x - LO) / (HI - LO))
    return evaluate(methods, counter, physics, y, sigma_y01, x_true.double(), (exact_mean, exact_std))


def run_phantom(kind, args):
    """All methods on ``--truths`` held-out phantoms; the rows average PSNR/SSIM/misfit and sum NFE and time."""
    from scidiff.priors import DiffusionPrior

    prior = DiffusionPrior.pretrained(args.prior).requires_grad_(False)
    res, n = prior.shape[-1], args.samples
    mean, std = float(prior.norm_mean[0]), float(prior.norm_std[0])
    lo, hi = imaging.DATA_RANGE
    counter = Counter(prior)
    # deepinv's [0, 1] is physical [lo, hi]; in the prior's normalised units that is an affine image of it
    den01 = to_deepinv(counter, ((lo - mean) / std, (hi - mean) / std))
    options = {"sr": {"factor": args.sr_factor}}.get(kind, {})
    truths = imaging.phantom_truth(args.truths, res)
    all_rows = []
    for j in range(args.truths):
        x = truths[j : j + 1]
        physics = imaging.make_physics(kind, res, args.sigma_y, **options)
        y = imaging.measure(physics, x, args.sigma_y, generator=torch.Generator().manual_seed(j))
        lik = imaging.likelihood(prior, physics, y)
        # the same operator on [0, 1] images: a linear A commutes with the scaling, the noise halves
        physics01 = imaging.make_physics(kind, res, args.sigma_y / (hi - lo), **options)
        y01, sigma_y01 = y / (hi - lo), args.sigma_y / (hi - lo)  # lo = 0: no offset A(lo) to remove
        to01 = lambda z: (mean + std * z - lo) / (hi - lo)  # noqa: E731
        methods = methods_for(counter, lik, prior.shape, den01, physics01, y01, sigma_y01, n, args, to01)
        all_rows.append(evaluate(methods, counter, physics01, y01, sigma_y01, (x - lo) / (hi - lo)))
    rows = []
    for k, r in enumerate(all_rows[0]):
        group = [rs[k] for rs in all_rows]
        avg = {key: sum(g[key] for g in group) / len(group) for key in ("psnr", "ssim", "misfit", "mean_err", "std_ratio")}
        rows.append(r | avg | {"time": sum(g["time"] for g in group), "nfe": r["nfe"], "vjp": r["vjp"]})
    return rows


def print_table(kind, rows, args):
    ref = next(r for r in rows if r["method"] == "deepinv DPS")
    where = (f"16x16 Gaussian-mixture oracle, sigma_y = 0.05 in [-1, 1] units" if kind in ORACLE_PROBLEMS else
             f"{args.prior} prior, {args.truths} held-out phantom(s), sigma_y = {args.sigma_y}")
    print(f"\n### {kind} ({where}, {args.samples} samples, DPS steps {args.steps}, RED-Diff steps {args.red_steps}, "
          f"MCGdiff {args.mcg_particles} particles x {args.mcg_steps} steps; NFE/VJP per measurement, wall time for all)\n")
    print("| method | mean err | std ratio | PSNR (dB) | SSIM | misfit/sigma_y | NFE | VJP | wall (s) | time vs deepinv DPS | PSNR - deepinv DPS |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        ratio = r["time"] / ref["time"] if math.isfinite(r["time"]) else float("nan")
        err, spread = (f"{r[k]:.3f}" if math.isfinite(r[k]) else "-" for k in ("mean_err", "std_ratio"))
        print(f"| {r['method']} | {err} | {spread} | {r['psnr']:.2f} | {r['ssim']:.3f} | {r['misfit']:.2f} | "
              f"{r['nfe']} | {r['vjp']} | {r['time']:.2f} | {ratio:.2f} | {r['psnr'] - ref['psnr']:+.2f} |", flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--problems", nargs="+", default=list(PHANTOM_PROBLEMS), choices=PHANTOM_PROBLEMS + ORACLE_PROBLEMS)
    parser.add_argument("--prior", default="ct_slices32", help="shipped prior of the phantom problems")
    parser.add_argument("--truths", type=int, default=2, help="held-out phantoms per phantom problem")
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--steps", type=int, default=200, help="DPS steps (both libraries)")
    parser.add_argument("--fast-fraction", type=float, default=0.5, help="the second scidiff DPS row's share of --steps")
    parser.add_argument("--mcg-steps", type=int, default=100, help="MCGdiff steps (the paper's 100)")
    parser.add_argument("--mcg-particles", type=int, default=32, help="MCGdiff particles (samples are resampled from them)")
    parser.add_argument("--red-steps", type=int, default=100, help="RED-Diff steps")
    parser.add_argument("--sigma-y", type=float, default=0.02, help="phantom measurement noise (attenuation units)")
    parser.add_argument("--sr-factor", type=int, default=2, choices=(2, 4))
    parser.add_argument("--zeta", type=float, default=1.0, help="scidiff DPS step (paper's zeta)")
    parser.add_argument("--dinv-weight", type=float, default=100.0,
                        help="deepinv DPS weight (1 leaves misfit/sigma_y near 17 on the phantoms at 100 steps; 100 fits)")
    parser.add_argument("--lam", type=float, default=0.25, help="RED-Diff lambda")
    parser.add_argument("--lr", type=float, default=0.1, help="RED-Diff Adam learning rate (paper default row)")
    parser.add_argument("--tuned-lr", type=float, default=0.2, help="RED-Diff learning rate of the tuned row")
    parser.add_argument("--pinv-cutoff", type=float, default=3e-2,
                        help="RED-Diff start: truncated SVD pseudo-inverse (the reference code's deblur threshold)")
    parser.add_argument("--methods", nargs="+", default=None, help="subset of method names (deepinv DPS always runs)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    for kind in args.problems:
        rows = run_oracle(kind, args) if kind in ORACLE_PROBLEMS else run_phantom(kind, args)
        print_table(kind, rows, args)


if __name__ == "__main__":
    main()
