"""ReSample against latent DPS, pixel-space DPS and RED-Diff on CT from generated phantoms (one run, one process).

The priors come from ``problems/ct_resample/`` (train them first, a few minutes each on one CPU thread):

    python problems/ct_resample/train.py autoencoder -c problems/ct_resample/autoencoder.yaml
    python problems/ct_resample/train.py latent      -c problems/ct_resample/latent_prior.yaml
    python problems/ct_resample/train.py pixel       -c problems/ct_resample/pixel_prior.yaml
    PYTHONPATH=. python benchmarks/resample.py [--problems sparse_view low_dose saturated] [--n 4]

Per method and problem: measurement misfit ``mean((y - A(x))^2)`` (the consistency loss the ReSample authors
report for CT; the noise floor is ``sigma_y^2``), PSNR and SSIM of the samples against the phantom (data
range 1, averaged over samples), denoiser NFE and VJP per sample, wall time for all ``n`` samples, and peak
memory (the largest rise of the process's resident set over its level before the method, sampled every 5 ms).
Ratios are against latent DPS (the row ``latent_dps``, else the first ``latent_dps@N``), the baseline of the
ReSample paper. ``resample_noise`` is ReSample stopping its solves at the noise level (``tol="noise"``) instead of
the code's ``tol = 1e-3``; ``NAME@STEPS`` changes a method's number of steps. Deterministic references: the phantom
itself, its autoencoder reconstruction (the best a latent method can do) and the pseudo-inverse ``A^+ y``.
"""

from __future__ import annotations

import argparse
import gc
import sys
import threading
import time
import warnings
from pathlib import Path

import psutil
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "problems" / "ct_resample"))
from ct import build_problem, metrics, run_method  # noqa: E402

from scidiff.priors import DiffusionPrior, LatentPrior  # noqa: E402

PROBLEMS = {
    "sparse_view": dict(angles=6, sigma_y=0.01),
    "low_dose": dict(angles=32, sigma_y=0.05),
    "saturated": dict(angles=12, sigma_y=0.01, level=0.3),
}


class PeakMemory:
    """Largest rise of the resident set size over its starting level, sampled in a background thread."""

    def __init__(self, period: float = 0.005):
        self.period, self.proc = period, psutil.Process()

    def __enter__(self):
        gc.collect()
        self.base = self.peak = self.proc.memory_info().rss
        self.running = True
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()
        return self

    def _watch(self):
        while self.running:
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(self.period)

    def __exit__(self, *exc):
        self.running = False
        self.thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)

    @property
    def mib(self) -> float:
        return (self.peak - self.base) / 2**20


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--problems", nargs="+", default=["sparse_view", "low_dose", "saturated"], choices=list(PROBLEMS))
    p.add_argument("--n", type=int, default=4, help="samples per method")
    p.add_argument("--resample-steps", type=int, default=100)
    p.add_argument("--dps-steps", type=int, default=500)
    p.add_argument("--red-steps", type=int, default=100)
    p.add_argument("--zeta", type=float, default=1.0, help="DPS step size (latent and pixel)")
    p.add_argument("--latent", default="outputs/ct_resample/ct32_latent.safetensors")
    p.add_argument("--pixel", default="outputs/ct_resample/ct32_pixel.safetensors")
    p.add_argument("--methods", nargs="+", default=["resample", "latent_dps", "dps", "red_diff", "resample_pixel"],
                   help="names from the plan, optionally NAME@STEPS; resample_noise = ReSample with tol='noise'")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    warnings.simplefilter("ignore")
    priors = {"latent": LatentPrior.load(a.latent), "pixel": DiffusionPrior.load(a.pixel)}
    plan = {
        "resample": ("resample", a.resample_steps, {}),
        "resample_noise": ("resample", a.resample_steps, {"tol": "noise"}),
        "latent_dps": ("latent_dps", a.dps_steps, {"zeta": a.zeta}),
        "dps": ("dps", a.dps_steps, {"zeta": a.zeta}),
        "red_diff": ("red_diff", a.red_steps, {}),
        "resample_pixel": ("resample_pixel", a.resample_steps, {}),
    }
    print(f"CT on 32x32 ellipse phantoms, {a.n} samples per method, {a.threads} CPU thread(s); "
          f"latent prior {a.latent}, pixel prior {a.pixel}")
    for kind in a.problems:
        problem = build_problem(kind, **PROBLEMS[kind])
        lik = problem["likelihood"]
        print(f"\n### {kind}: {PROBLEMS[kind]}, noise floor sigma_y^2 = {problem['sigma_y'] ** 2:.2e}\n")
        print("| method | steps | misfit | misfit / latent DPS | PSNR dB | SSIM | NFE | VJP | wall s | wall / latent DPS | peak MiB |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        with torch.no_grad():
            refs = {"phantom (truth)": problem["x_true"],
                    "autoencoder reconstruction": priors["latent"].autoencoder(problem["x_true"])}
            if hasattr(lik, "A_dagger"):
                refs["pseudo-inverse A^+ y"] = lik.A_dagger(lik.y)
        for name, x in refs.items():
            m = metrics(x, problem)
            print(f"| {name} | | {m['misfit']:.2e} | | {m['psnr']:.2f} | {m['ssim']:.3f} | | | | | |")
        rows = {}
        for spec in a.methods:
            name, _, steps_override = spec.partition("@")
            method, steps, options = plan[name]
            steps = int(steps_override) if steps_override else steps
            with PeakMemory() as mem:
                start = time.perf_counter()
                x, info = run_method(method, problem, priors, a.n, steps, options)
                wall = time.perf_counter() - start
            rows[spec] = (steps, metrics(x, problem), info, wall, mem.mib)
        base = rows.get("latent_dps", next((r for k, r in rows.items() if k.startswith("latent_dps")), None))
        for method, (steps, m, info, wall, mib) in rows.items():
            ratio = f"{m['misfit'] / base[1]['misfit']:.3g}" if base else ""
            wratio = f"{wall / base[3]:.2f}" if base else ""
            print(f"| {method} | {steps} | {m['misfit']:.2e} | {ratio} | {m['psnr']:.2f} | {m['ssim']:.3f} | "
                  f"{info.get('nfe')} | {info.get('vjp')} | {wall:.1f} | {wratio} | {mib:.0f} |")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
