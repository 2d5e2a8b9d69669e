"""3D CT from a 2D slice prior: FBP, ADMM-TV, slice-wise 2D diffusion, DiffusionMBIR and DDS on held-out phantoms.

Held-out random-ellipsoid volumes (seeds never used for training) and the 3D Shepp--Logan head, each generated
on a grid twice as fine (in-plane and along z), measured there, binned to the reconstruction detector and
grid (``coarsen_sinogram``): the inverse crime is avoided. Truth = the fine phantom averaged over 2x2x2 voxels.
Tasks: sparse view 8/4/2 angles over [0, 180), limited angle 0--89 degrees; noise-free measurements.

Metrics: 3D PSNR (peak = truth range), mean per-slice PSNR / SSIM over the non-empty axial, coronal and
sagittal slices; wall time; peak resident memory above the process baseline while the method runs (sampled
every 5 ms). Ratios are against ADMM-TV (dB gain) and DiffusionMBIR (speed) in the same process.

Usage (repository root): PYTHONPATH=. python benchmarks/ct3d.py [--size 32] [--depth 16] [--tasks sv8 sv4 sv2 la90]
    [--mbir-steps 200] [--mbir-tasks sv8] [--dds-steps 50] [--prior ct_slices32] [--threads 1]
"""

from __future__ import annotations

import argparse
import threading
import time

import psutil
import torch
from torchmetrics.functional.image import structural_similarity_index_measure as ssim

from scidiff.inverse import admm_tv, dds, diffusion_mbir, fbp
from scidiff.likelihoods.volume import SliceTomography, coarsen_sinogram
from scidiff.volumes import random_ellipsoids, shepp_logan_3d
from scidiff.volumes.pipeline import load_slice_prior

TASKS = {
    "sv8": lambda w: SliceTomography.sparse_view(8, w),
    "sv4": lambda w: SliceTomography.sparse_view(4, w),
    "sv2": lambda w: SliceTomography.sparse_view(2, w),
    "la90": lambda w: SliceTomography.limited_angle(w, 90.0),
}


class PeakRSS:
    """Peak resident set size above the value at entry, sampled in a thread (torch allocations included)."""

    def __enter__(self):
        self.proc, self.base, self.peak, self.run = psutil.Process(), psutil.Process().memory_info().rss, 0, True
        self.thread = threading.Thread(target=self._poll, daemon=True)
        self.thread.start()
        return self

    def _poll(self):
        while self.run:
            self.peak = max(self.peak, self.proc.memory_info().rss - self.base)
            time.sleep(0.005)

    def __exit__(self, *exc):
        self.run = False
        self.thread.join()

    @property
    def mib(self) -> float:
        return self.peak / 2**20


def phantom(name: str, depth: int, size: int) -> torch.Tensor:
    """The fine phantom ``(1, 1, 2 depth, 2 size, 2 size)``."""
    shape = (2 * depth, 2 * size, 2 * size)
    if name == "shepp":
        return shepp_logan_3d(shape)[None, None]
    seed = int(name.removeprefix("random"))
    return random_ellipsoids(shape, generator=torch.Generator().manual_seed(seed))[None, None]


def slice_metrics(rec: torch.Tensor, truth: torch.Tensor) -> dict:
    rng = float(truth.max() - truth.min())
    rec, truth = rec.clamp(float(truth.min()), float(truth.max())), truth
    out = {"psnr3d": 10 * torch.log10(rng**2 / (rec - truth).pow(2).mean()).item()}
    v, t = rec[0, 0], truth[0, 0]
    for name, dim in (("axial", 0), ("coronal", 1), ("sagittal", 2)):
        a, b = v.movedim(dim, 0)[:, None], t.movedim(dim, 0)[:, None]
        keep = b.flatten(1).amax(1) > 0
        a, b = a[keep], b[keep]
        mse = (a - b).pow(2).flatten(1).mean(1).clamp_min(1e-12)
        out[f"{name}_psnr"] = (10 * torch.log10(rng**2 / mse)).mean().item()
        k = min(11, 2 * (min(a.shape[-2:]) // 2) - 1)  # Gaussian window 11 (Wang et al. 2004) unless slices are tiny
        out[f"{name}_ssim"] = ssim(a, b, data_range=rng, kernel_size=k, sigma=1.5 * k / 11).item()
    return out


def run(args) -> list[dict]:
    prior = load_slice_prior(args.prior)
    rows = []
    for ph in args.phantoms:
        fine = phantom(ph, args.depth, args.size)
        truth = torch.nn.functional.avg_pool3d(fine, 2)
        for task in args.tasks if ph != "shepp" else ["sv8"]:
            op, op_fine = TASKS[task](args.size), TASKS[task](2 * args.size)
            y = coarsen_sinogram(op_fine.A(fine), op.n_det)
            methods = {
                "FBP": lambda: fbp(op, y),
                "ADMM-TV": lambda: admm_tv(op, y, tv="all", n_iter=30, n_cg=20),
                "2D slices (DDS, no z-TV)": lambda: dds(prior, op, y, n_steps=args.dds_steps, tv="none",
                                                       generator=torch.Generator().manual_seed(0)).samples,
                "DDS": lambda: dds(prior, op, y, n_steps=args.dds_steps, generator=torch.Generator().manual_seed(0)).samples,
            }
            if task in args.mbir_tasks and ph != "shepp":
                methods["DiffusionMBIR"] = lambda: diffusion_mbir(prior, op, y, n_steps=args.mbir_steps,
                                                                  generator=torch.Generator().manual_seed(0)).samples
            for name, fn in methods.items():
                with PeakRSS() as mem:
                    t0 = time.perf_counter()
                    rec = fn()
                    wall = time.perf_counter() - t0
                rows.append({"phantom": ph, "task": task, "method": name, "wall_s": wall, "peak_mib": mem.mib,
                             **slice_metrics(rec, truth)})
                print(_row(rows[-1]), flush=True)
    return rows


def _row(r: dict) -> str:
    return (f"| {r['phantom']} | {r['task']} | {r['method']} | {r['psnr3d']:.2f} | {r['axial_psnr']:.2f} / {r['axial_ssim']:.3f} | "
            f"{r['coronal_psnr']:.2f} / {r['coronal_ssim']:.3f} | {r['sagittal_psnr']:.2f} / {r['sagittal_ssim']:.3f} | "
            f"{r['wall_s']:.1f} | {r['peak_mib']:.0f} |")


def summary(rows: list[dict]) -> None:
    print("\n| phantom | task | method | dB vs ADMM-TV (3D) | max gap axial vs coronal/sagittal, dB | time / MBIR time |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        base = next(b for b in rows if b["phantom"] == r["phantom"] and b["task"] == r["task"] and b["method"] == "ADMM-TV")
        mbir = next((b for b in rows if b["phantom"] == r["phantom"] and b["task"] == r["task"] and b["method"] == "DiffusionMBIR"), None)
        gap = max(abs(r["axial_psnr"] - r["coronal_psnr"]), abs(r["axial_psnr"] - r["sagittal_psnr"]))
        speed = f"{r['wall_s'] / mbir['wall_s']:.3f}" if mbir else "-"
        print(f"| {r['phantom']} | {r['task']} | {r['method']} | {r['psnr3d'] - base['psnr3d']:+.2f} | {gap:.2f} | {speed} |")


_MEMORY_CHILD = """
import resource, sys, torch
from scidiff.inverse import dds
from scidiff.likelihoods.volume import SliceTomography
from scidiff.volumes.pipeline import load_slice_prior
torch.set_num_threads(1)
depth, chunk, prior_name = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
prior = load_slice_prior(prior_name)
op = SliceTomography(8, 32, max_slices=chunk)
y = torch.zeros(1, 1, depth, op.n_det, 8)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
dds(prior, op, y, n_steps=2, max_slices=chunk, generator=torch.Generator().manual_seed(0))
print(base, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def memory_table(prior: str, depths=(16, 64), chunks=(4, 64)) -> None:
    """Peak resident memory of 2 DDS steps in a fresh process, by volume depth and slice chunk (``max_slices``)."""
    import subprocess
    import sys

    print("\n| depth D (32 x 32 slices) | max_slices | peak RSS growth during DDS, MiB | volume buffer (one copy), MiB |")
    print("|---|---|---|---|")
    for d in depths:
        for c in chunks:
            out = subprocess.run([sys.executable, "-c", _MEMORY_CHILD, str(d), str(c), prior], capture_output=True, text=True)
            base, peak = (int(v) for v in out.stdout.split()[-2:])
            print(f"| {d} | {c} | {(peak - base) / 1024:.0f} | {d * 32 * 32 * 4 / 2**20:.2f} |", flush=True)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=32, help="in-plane size of the reconstruction (the prior's slices)")
    p.add_argument("--depth", type=int, default=16, help="number of axial slices")
    p.add_argument("--phantoms", nargs="+", default=["random1000", "shepp"], help="randomSEED (held out) or shepp")
    p.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    p.add_argument("--mbir-tasks", nargs="+", default=["sv8"])
    p.add_argument("--mbir-steps", type=int, default=200)
    p.add_argument("--dds-steps", type=int, default=50)
    p.add_argument("--prior", default="ct_slices32")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"volume {args.depth} x {args.size} x {args.size} (measured at 2x), {args.threads} thread(s), torch {torch.__version__}\n")
    memory_table(args.prior)
    print("\n| phantom | task | method | PSNR 3D | axial PSNR / SSIM | coronal | sagittal | wall s | peak MiB |")
    print("|---|---|---|---|---|---|---|---|---|")
    rows = run(args)
    summary(rows)


if __name__ == "__main__":
    main()
