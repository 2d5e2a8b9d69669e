"""3D CT and MRI from a 2D slice prior: FBP, ADMM-TV, slice-wise 2D diffusion, DiffusionMBIR and DDS on held-out phantoms.

Held-out random-ellipsoid volumes (seeds never used for training) and the 3D Shepp--Logan head, each generated
on a grid twice as fine (in-plane and along z) and measured there (``op.A_from_finer``: CT registered and binned
to the reconstruction detector, MRI sampled at the reconstruction grid's frequencies): the inverse crime is avoided.
Truth = the fine phantom averaged over 2x2x2 voxels. Tasks: parallel-beam sparse view 8/4/2 angles over
[0, 180), limited angle 0--89 degrees, fan-beam 8 views over 360 degrees, CS-MRI 4x/8x (random lines);
noise-free measurements.

Modes:
  table  (default) metrics of every method on every task, then a summary against ADMM-TV and DiffusionMBIR;
  tune   grid search of lam, rho (relative to |A|^2) on a validation volume (``random2000``, not the test
         volume) at 8 views; the chosen values are this script's defaults and those of problems/ct3d/*.yaml;
  speed  DDS (50 steps) against DiffusionMBIR at the papers' 2000 steps, both run in full on a small volume,
         plus per-step wall time of both;
  diagnose  where each method's error lives (``--tune-task`` on the first ``--phantoms``): radial frequency bands,
         range / null space of A (exact SVD projector), edge / flat voxels, data residual; the methods rerun on
         exact data (``op.A(truth)``, the inverse crime) to show what the finer-grid guard costs each;
  ensemble  the posterior mean of K = 1, 2, 4, ... seeds of DDS / DiffusionMBIR (``--ensemble-size``) against
         single runs, with wall time and how well the ensemble std tracks the error.

Metrics: 3D PSNR (peak = truth range), mean per-slice PSNR / SSIM over the non-empty axial, coronal and
sagittal slices; wall time; peak resident memory above the process baseline while the method runs (sampled
every 5 ms). Ratios are against ADMM-TV (dB gain) and DiffusionMBIR (speed) in the same process.

Usage (repository root): PYTHONPATH=. python benchmarks/ct3d.py [--mode table|tune|speed|diagnose|ensemble] [--size 32] [--depth 16] [--slab 0]
    [--tasks sv8 sv4 sv2 la90 fan8 mri4 mri8] [--mbir-steps 200] [--mbir-tasks sv8] [--dds-steps 50]
    [--dds-cg 5] [--dds-eta 0.85] [--dds-lam-by-task TASK=LAM ...] [--prior ct_slices<size>] [--threads 1]
    [--methods DDS DiffusionMBIR ...]
    tune:  [--tune-task sv8] [--tune-methods ADMM-TV DDS ...] [--tune-lams ...] [--tune-rhos ...]
    diagnose: [--tune-task sv8] [--exact-methods FBP ADMM-TV DDS] [--save-dir DIR]
    ensemble: [--ensemble-methods DDS DiffusionMBIR] [--ensemble-size 8] [--ensemble-batch B]
    speed: [--speed-depth 4] [--dds-variants STEPS:CG:ETA ...] [--phantoms random2000]
"""

from __future__ import annotations

import argparse
import threading
import time
from pathlib import Path

import psutil
import torch
from torchmetrics.functional.image import structural_similarity_index_measure as ssim

import scidiff
from scidiff.inverse import admm_tv, dds, diffusion_mbir, fbp
from scidiff.inverse.ensemble import posterior_ensemble
from scidiff.likelihoods.volume import SliceMRI, SliceTomography
from scidiff.volumes import random_ellipsoids, shepp_logan_3d
from scidiff.volumes.diagnostics import (
    BANDS, ORIENTATIONS, error_breakdown, orientation_psnr, psnr_of_mse, row_space, z_incoherence,
)
from scidiff.volumes.pipeline import load_slice_prior

TASKS = {
    "sv8": lambda w: SliceTomography.sparse_view(8, w),
    "sv4": lambda w: SliceTomography.sparse_view(4, w),
    "sv2": lambda w: SliceTomography.sparse_view(2, w),
    "la90": lambda w: SliceTomography.limited_angle(w, 90.0),
    "fan8": lambda w: SliceTomography.fan_beam(8, w),
    "mri4": lambda w: SliceMRI.random_lines(w, acceleration=4, generator=torch.Generator().manual_seed(0)),
    "mri8": lambda w: SliceMRI.random_lines(w, acceleration=8, generator=torch.Generator().manual_seed(0)),
}

#: lam, rho relative to |A|^2, chosen by ``--mode tune`` on the validation volume random2000 (8 x 32 x 32, 8 views;
#: docs/ct3d.md), also in problems/ct3d/*.yaml; the library functions keep lam = 1e-3, rho = 1e-2. DDS's lam also
#: serves its all-direction TV variant (best there too).
TUNED = {"admm": {"lam": 0.001, "rho": 0.03}, "dds": {"lam": 0.0001, "rho": 0.01}, "mbir": {"lam": 0.0003, "rho": 0.01}}


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
    """3D PSNR, slice PSNR and SSIM per orientation over the slices that hold some object (``*_psnr``), slice PSNR
    per orientation over the object's bounding box (``*_psnr_box``: the same voxels for all three), and
    :func:`~scidiff.volumes.diagnostics.z_incoherence`."""
    rng = float(truth.max() - truth.min())
    rec, truth = rec.clamp(float(truth.min()), float(truth.max())), truth
    e2 = (rec - truth).pow(2)
    out = {"psnr3d": 10 * torch.log10(rng**2 / e2.mean()).item(), "z_incoh": z_incoherence(rec, truth),
           "air_share": (e2[truth == 0].sum() / e2.sum().clamp_min(1e-30)).item()}  # squared error outside the object
    for region, suffix in (("nonempty", ""), ("box", "_box")):
        out.update({f"{k}_psnr{suffix}": v for k, v in orientation_psnr(rec, truth, region=region).items()})
    v, t = rec[0, 0], truth[0, 0]
    for name, axis in ORIENTATIONS.items():
        a, b = v.movedim(axis - 2, 0)[:, None], t.movedim(axis - 2, 0)[:, None]
        keep = b.flatten(1).amax(1) > 0
        a, b = a[keep], b[keep]
        k = min(11, 2 * (min(a.shape[-2:]) // 2) - 1)  # Gaussian window 11 (Wang et al. 2004) unless slices are tiny
        out[f"{name}_ssim"] = ssim(a, b, data_range=rng, kernel_size=k, sigma=1.5 * k / 11).item()
    return out


def methods_for(prior, op, y, task: str, args) -> dict:
    """The reconstructions to compare on one task, as thunks."""
    seed = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    dds_lam = dict(v.split("=") for v in args.dds_lam_by_task).get(task, args.dds_lam)
    kw = {"admm": {"lam": args.admm_lam, "rho": args.admm_rho}, "dds": {"lam": float(dds_lam), "rho": args.dds_rho},
          "mbir": {"lam": args.mbir_lam, "rho": args.mbir_rho}}
    dds_kw = {"n_steps": args.dds_steps, "n_cg": args.dds_cg, "eta": args.dds_eta}
    methods = {
        "FBP" if isinstance(op, SliceTomography) else "zero-filled": lambda: fbp(op, y),
        "ADMM-TV": lambda: admm_tv(op, y, tv="all", n_iter=30, n_cg=20, **kw["admm"]),
    }
    if prior.shape[-1] != op.slice_shape[-1]:  # e.g. 64^3 with the 32 x 32 prior: classical rows only
        return methods
    methods.update({
        "2D slices (DDS, no z-TV)": lambda: dds(prior, op, y, tv="none", generator=seed(), **dds_kw).samples,
        "DDS": lambda: dds(prior, op, y, generator=seed(), **dds_kw, **kw["dds"]).samples,
        "DDS (3D TV)": lambda: dds(prior, op, y, tv="all", generator=seed(), **dds_kw, **kw["dds"]).samples,
    })
    if task in args.mbir_tasks:
        methods["DiffusionMBIR"] = lambda: diffusion_mbir(prior, op, y, n_steps=args.mbir_steps, n_cg=args.mbir_cg,
                                                          generator=seed(), **kw["mbir"]).samples
    return methods


def measure(fn) -> tuple[torch.Tensor, float, float]:
    """``(result, wall seconds, peak MiB)`` of one call."""
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        rec = fn()
        wall = time.perf_counter() - t0
    return rec, wall, mem.mib


def problem(ph: str, task: str, depth: int, size: int, slab: int = 0):
    """``(operator, measurements, truth)``: the phantom measured on its 2x finer grid.

    ``slab > 0`` keeps the central ``slab`` slices of the ``depth``-slice volume (voxels stay isotropic, as in the
    prior's training volumes, when ``depth == size``): a cheaper volume for the costly diffusion methods."""
    fine = phantom(ph, depth, size)
    if slab:
        if not 0 < slab <= depth:
            raise ValueError(f"--slab must be in [1, depth={depth}]; got {slab}")
        start = 2 * ((depth - slab) // 2)
        fine = fine[:, :, start : start + 2 * slab]
    op = TASKS[task](size)
    op.norm2()  # |A|^2 (power iteration, cached) outside every method's timing
    y = op.A_from_finer(fine, align=False) if UNALIGNED and isinstance(op, SliceTomography) else op.A_from_finer(fine)
    return op, y, torch.nn.functional.avg_pool3d(fine, 2)


#: ``--unaligned-finer``: the finer-grid CT data as binned before the grids were registered (tables measured
#: before that fix; up to 0.8 detector bins off at 64 x 64, docs/ct3d.md)
UNALIGNED = False


def run(args) -> list[dict]:
    prior = load_slice_prior(args.prior)
    rows = []
    for ph in args.phantoms:
        for task in args.tasks if ph != "shepp" else ["sv8"]:
            op, y, truth = problem(ph, task, args.depth, args.size, args.slab)
            for name, fn in methods_for(prior, op, y, task if ph != "shepp" else "", args).items():
                if args.methods and name not in args.methods and name != "ADMM-TV":  # ADMM-TV: the summary's baseline
                    continue
                rec, wall, mib = measure(fn)
                rows.append({"phantom": ph, "task": task, "method": name, "wall_s": wall, "peak_mib": mib,
                             **slice_metrics(rec, truth)})
                print(_row(rows[-1]), flush=True)
    return rows


def tune(args) -> None:
    """Validation PSNR (3D) over a grid of ``lam``, ``rho`` at 8 views: ADMM-TV and DDS (z-TV) on the grid, DDS with
    all-direction TV at DDS's best ``rho``, then DiffusionMBIR (the costly one) at DDS's best ``rho`` and ``lam``
    times 1/3, 1 and 3 (the same ADMM problem). The grid is ``--tune-lams`` x ``--tune-rhos``; without DDS in
    ``--tune-methods`` every method runs on that grid."""
    prior = load_slice_prior(args.prior)
    op, y, truth = problem(args.val_phantom, args.tune_task, args.depth, args.size, args.slab)
    seed = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    dds_kw = {"n_steps": args.dds_steps, "n_cg": args.dds_cg, "eta": args.dds_eta}
    grid = [(lam, rho) for lam in args.tune_lams for rho in args.tune_rhos]
    solvers = {
        "ADMM-TV": lambda lam, rho: admm_tv(op, y, lam=lam, rho=rho, tv="all", n_iter=30, n_cg=20),
        "DDS": lambda lam, rho: dds(prior, op, y, lam=lam, rho=rho, generator=seed(), **dds_kw).samples,
        "DDS (tv=all)": lambda lam, rho: dds(prior, op, y, lam=lam, rho=rho, tv="all", generator=seed(), **dds_kw).samples,
        f"DiffusionMBIR ({args.mbir_steps} steps, {args.mbir_cg} CG)": lambda lam, rho: diffusion_mbir(
            prior, op, y, n_steps=args.mbir_steps, n_cg=args.mbir_cg, lam=lam, rho=rho, generator=seed()).samples,
    }
    short = lambda k: "DiffusionMBIR" if k.startswith("DiffusionMBIR") else k  # noqa: E731
    solvers = {k: v for k, v in solvers.items() if not args.tune_methods or short(k) in args.tune_methods}
    slab = f", central {args.slab} slices" if args.slab else ""
    print(f"validation volume {args.val_phantom}, {args.depth} x {args.size} x {args.size}{slab}, {args.tune_task}\n")
    print("| method | lam / |A|^2 | rho / |A|^2 | PSNR 3D | axial | coronal | sagittal | max gap | max gap, object box | "
          "error z / in-plane | wall s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    dds_best = None
    for name, fn in solvers.items():
        if name not in ("ADMM-TV", "DDS") and dds_best:  # around DDS's optimum (same ADMM problem)
            grid = [(f * dds_best[1], dds_best[2]) for f in (1 / 3, 1, 3)]
        best = None
        for lam, rho in grid:
            rec, wall, _ = measure(lambda: fn(lam, rho))
            m = slice_metrics(rec, truth)
            print(f"| {name} | {lam:.3g} | {rho:.3g} | {m['psnr3d']:.2f} | {m['axial_psnr']:.2f} | {m['coronal_psnr']:.2f} | "
                  f"{m['sagittal_psnr']:.2f} | {orientation_gap(m):.2f} | {orientation_gap(m, '_box'):.2f} | "
                  f"{m['z_incoh']:.2f} | {wall:.1f} |", flush=True)
            best = max(best or (m["psnr3d"], lam, rho), (m["psnr3d"], lam, rho))
        edge = " (on the grid's edge)" if name in ("ADMM-TV", "DDS") and (
            best[1] in (min(args.tune_lams), max(args.tune_lams)) or best[2] in (min(args.tune_rhos), max(args.tune_rhos))) else ""
        print(f"| **{name} best{edge}** | {best[1]:.3g} | {best[2]:.3g} | {best[0]:.2f} | | | | | | | |", flush=True)
        if name == "DDS":
            dds_best = best


def _save(args, name: str, **tensors) -> None:
    if args.save_dir:
        Path(args.save_dir).mkdir(parents=True, exist_ok=True)
        torch.save(tensors, Path(args.save_dir) / f"{name.replace(' ', '_').replace('/', '_')}.pt")


def diagnose(args) -> None:
    """Error split of every method on ``--tune-task`` (default 8 views) of the first ``--phantoms`` volume: by radial
    wavenumber band, range / null space of the operator, edge / flat voxels; then the same methods on exact data
    (``--exact-methods``), whose gain shows what the finer-grid guard costs each. MSE in units of 1e-4 (truth range
    about 1), with each part as a share of the method's MSE."""
    prior = load_slice_prior(args.prior)
    task, ph = args.tune_task, args.phantoms[0]
    op, y, truth = problem(ph, task, args.depth, args.size, args.slab)
    t0 = time.perf_counter()
    rows = row_space(op)
    peak = float(truth.max() - truth.min())
    y_exact = op.A(truth)
    mismatch = float((y_exact - y).norm() / y.norm())
    n_pix = rows.V.shape[0]
    slab = f", central {args.slab} slices" if args.slab else ""
    print(f"{ph}, {args.depth} x {args.size} x {args.size}{slab}, {task}; rank of the slice operator {rows.rank} / {n_pix} "
          f"({100 * rows.rank / n_pix:.1f} % of each slice is seen; SVD {time.perf_counter() - t0:.1f} s); "
          f"|A truth - y| / |y| = {mismatch:.4f} (the finer-grid model error)")
    tb = error_breakdown(truth, truth, rows, physics=op, y=y)
    oracle = error_breakdown(truth + rows.pinv(y - y_exact), truth, rows)
    print(f"edge voxels (either side of an in-plane jump): {100 * tb['edge_fraction']:.1f} %; ceiling of a method that fits "
          f"the data exactly and has a perfect null-space part (truth + A^+(y - A truth)): {oracle['psnr']:.2f} dB\n")
    bands = [f"mse_k{lo}-{hi}" for lo, hi in BANDS]
    print("| data | method | PSNR 3D | MSE x1e4 | range | null | edge | flat | "
          + " | ".join(f"k {lo}-{hi}" for lo, hi in BANDS) + " | PSNR, null part only | |A x - y| / |y| | wall s |")
    print("|---|---|---|---|---|---|---|---|" + "---|" * len(BANDS) + "---|---|---|")
    for data_name, data in (("finer grid", y), ("exact", y_exact)):
        for name, fn in methods_for(prior, op, data, task, args).items():
            if data_name == "finer grid" and args.methods and name not in args.methods and name != "ADMM-TV":
                continue  # ADMM-TV: the baseline
            if data_name == "exact" and name not in args.exact_methods:
                continue
            rec, wall, _ = measure(fn)
            b = error_breakdown(rec, truth, rows, physics=op, y=data)
            share = lambda k: f"{100 * b[k] / b['mse']:.0f} %"  # noqa: E731
            print(f"| {data_name} | {name} | {b['psnr']:.2f} | {1e4 * b['mse']:.1f} | {share('mse_range')} | {share('mse_null')} | "
                  f"{share('mse_edge')} | {share('mse_flat')} | " + " | ".join(share(k) for k in bands)
                  + f" | {psnr_of_mse(b['mse_null'], peak):.2f} | {b['data_residual']:.4f} | {wall:.1f} |", flush=True)
            _save(args, f"diagnose_{data_name}_{name}", rec=rec, truth=truth, breakdown=b)


def ensemble(args) -> None:
    """Posterior mean of ``K`` seeds against one run, on ``--tune-task`` of the first ``--phantoms`` volume: PSNR of
    each single run, of the mean of the first ``K`` for ``K = 1, 2, 4, ...``, wall time, the error split of the
    mean, and whether the ensemble std marks where the error is (RMS std against RMS error; their correlation)."""
    prior = load_slice_prior(args.prior)
    task, ph = args.tune_task, args.phantoms[0]
    op, y, truth = problem(ph, task, args.depth, args.size, args.slab)
    rows = row_space(op)
    kw = {"DDS": (dds, {"n_steps": args.dds_steps, "n_cg": args.dds_cg, "eta": args.dds_eta, "lam": args.dds_lam,
                         "rho": args.dds_rho}),
          "DiffusionMBIR": (diffusion_mbir, {"n_steps": args.mbir_steps, "n_cg": args.mbir_cg, "lam": args.mbir_lam,
                                             "rho": args.mbir_rho})}
    admm, admm_wall, _ = measure(lambda: admm_tv(op, y, lam=args.admm_lam, rho=args.admm_rho, tv="all", n_iter=30, n_cg=20))
    base = slice_metrics(admm, truth)
    print(f"{ph}, {args.depth} x {args.size} x {args.size}, {task}: ADMM-TV {base['psnr3d']:.2f} dB "
          f"(axial SSIM {base['axial_ssim']:.3f}, {admm_wall:.1f} s)\n")
    print("| method | K | PSNR 3D | dB vs ADMM-TV | dB vs one run | axial SSIM | coronal | sagittal | null-space MSE x1e4 | "
          "edge MSE x1e4 | RMS std / RMS error | corr(std, abs error) | wall s (K runs) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name in args.ensemble_methods:
        sampler, skw = kw[name]
        post, wall, _ = measure(lambda: posterior_ensemble(sampler, prior, op, y, n_samples=args.ensemble_size,
                                                             batch_size=args.ensemble_batch, **skw))
        s = post.samples
        singles = [slice_metrics(s[j : j + 1], truth)["psnr3d"] for j in range(len(s))]
        print(f"single runs of {name}: " + ", ".join(f"{v:.2f}" for v in singles)
              + f" dB (mean {sum(singles) / len(singles):.2f}); {wall:.1f} s for {len(s)}", flush=True)
        k = 1
        while k <= len(s):
            mean = s[:k].mean(0, keepdim=True)
            m, b = slice_metrics(mean, truth), error_breakdown(mean, truth, rows)
            err = (mean - truth).abs().flatten()
            if k > 1:
                std = s[:k].std(0, unbiased=True).flatten()
                ratio = f"{float(std.pow(2).mean().sqrt() / err.pow(2).mean().sqrt()):.2f}"
                corr = f"{float(torch.corrcoef(torch.stack([std, err]))[0, 1]):.2f}"
            else:
                ratio = corr = "-"
            print(f"| {name} | {k} | {m['psnr3d']:.2f} | {m['psnr3d'] - base['psnr3d']:+.2f} | {m['psnr3d'] - singles[0]:+.2f} | "
                  f"{m['axial_ssim']:.3f} | {m['coronal_psnr']:.2f} | {m['sagittal_psnr']:.2f} | {1e4 * b['mse_null']:.1f} | "
                  f"{1e4 * b['mse_edge']:.1f} | {ratio} | {corr} | {wall * k / len(s):.1f} |", flush=True)
            k *= 2
        _save(args, f"ensemble_{name}", samples=s, truth=truth)


def orientation_gap(m: dict, suffix: str = "") -> float:
    """Largest difference of coronal or sagittal mean slice PSNR from axial, dB, over the slices that hold some
    object (``suffix=""``) or over the object's bounding box (``"_box"``, the same voxels in every orientation)."""
    ax = m[f"axial_psnr{suffix}"]
    return max(abs(ax - m[f"coronal_psnr{suffix}"]), abs(ax - m[f"sagittal_psnr{suffix}"]))


def speed(args) -> None:
    """DDS against DiffusionMBIR at the papers' step counts, both in full, on a ``--speed-depth`` volume at 8 views.

    ``--dds-variants`` adds DDS runs given as ``steps:n_cg:eta`` (more steps, more CG, other eta); each row gets its
    wall-time ratio to DiffusionMBIR and its PSNR difference. Choose a variant on the validation volume
    (``--phantoms random2000``), then report it on the test volume."""
    prior = load_slice_prior(args.prior)
    op, y, truth = problem(args.phantoms[0], "sv8", args.speed_depth, args.size, args.slab)
    seed = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    variants = [(args.dds_steps, args.dds_cg, args.dds_eta)] + [
        (int(a), int(b), float(c)) for a, b, c in (v.split(":") for v in args.dds_variants)]
    runs = {
        "ADMM-TV": (30, lambda: admm_tv(op, y, lam=args.admm_lam, rho=args.admm_rho, tv="all", n_iter=30, n_cg=20)),
        f"DiffusionMBIR ({args.speed_mbir_steps} steps, {args.mbir_cg} CG)": (args.speed_mbir_steps, lambda: diffusion_mbir(
            prior, op, y, n_steps=args.speed_mbir_steps, n_cg=args.mbir_cg, lam=args.mbir_lam, rho=args.mbir_rho,
            generator=seed()).samples),
    }
    for steps, n_cg, eta in variants:
        runs[f"DDS ({steps} steps, {n_cg} CG, eta {eta:g})"] = (steps, lambda steps=steps, n_cg=n_cg, eta=eta: dds(
            prior, op, y, n_steps=steps, n_cg=n_cg, eta=eta, lam=args.dds_lam, rho=args.dds_rho, generator=seed()).samples)
    slab = f", central {args.slab} slices" if args.slab else ""
    print(f"phantom {args.phantoms[0]}, volume {args.speed_depth} x {args.size} x {args.size}{slab} (measured at 2x), sv8\n")
    print("| method | steps | wall s | s / step | PSNR 3D | axial | coronal | sagittal | error z / in-plane | MBIR time / time | dB vs MBIR |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    mbir_name = list(runs)[1]
    mbir = None
    for name, (steps, fn) in runs.items():
        rec, wall, _ = measure(fn)
        m = slice_metrics(rec, truth)
        if name == mbir_name:
            mbir = (wall, m["psnr3d"])
        ratio = f"{mbir[0] / wall:.1f}x" if mbir else "-"
        gain = f"{m['psnr3d'] - mbir[1]:+.2f}" if mbir else "-"
        print(f"| {name} | {steps} | {wall:.1f} | {wall / steps:.4f} | {m['psnr3d']:.2f} | {m['axial_psnr']:.2f} | "
              f"{m['coronal_psnr']:.2f} | {m['sagittal_psnr']:.2f} | {m['z_incoh']:.2f} | {ratio} | {gain} |", flush=True)


def _row(r: dict) -> str:
    return (f"| {r['phantom']} | {r['task']} | {r['method']} | {r['psnr3d']:.2f} | {r['axial_psnr']:.2f} / {r['axial_ssim']:.3f} | "
            f"{r['coronal_psnr']:.2f} / {r['coronal_ssim']:.3f} | {r['sagittal_psnr']:.2f} / {r['sagittal_ssim']:.3f} | "
            f"{r['z_incoh']:.2f} | {r['wall_s']:.1f} | {r['peak_mib']:.0f} |")


def summary(rows: list[dict]) -> None:
    """Gain over ADMM-TV, the orientation gap (and its excess over ADMM-TV's, whose 3D TV has no slice
    inconsistency: the rest of the gap comes from what the slices of each orientation hold), the error's jumps
    between slices against ADMM-TV's (:func:`~scidiff.volumes.diagnostics.z_incoherence`), and time ratios."""
    print("\n| phantom | task | method | dB vs ADMM-TV (3D) | max gap axial vs coronal/sagittal, dB | gap - ADMM-TV's gap, dB | "
          "object box: axial / coronal / sagittal, max gap | error share in air | error z / in-plane, / ADMM-TV's | "
          "time / MBIR time |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        same = [b for b in rows if b["phantom"] == r["phantom"] and b["task"] == r["task"]]
        base = next(b for b in same if b["method"] == "ADMM-TV")
        mbir = next((b for b in same if b["method"] == "DiffusionMBIR"), None)
        gap = orientation_gap(r)
        speed = f"{r['wall_s'] / mbir['wall_s']:.3f}" if mbir else "-"
        print(f"| {r['phantom']} | {r['task']} | {r['method']} | {r['psnr3d'] - base['psnr3d']:+.2f} | {gap:.2f} | "
              f"{gap - orientation_gap(base):+.2f} | {r['axial_psnr_box']:.2f} / {r['coronal_psnr_box']:.2f} / "
              f"{r['sagittal_psnr_box']:.2f}, {orientation_gap(r, '_box'):.2f} | {r['air_share']:.3f} | "
              f"{r['z_incoh'] / base['z_incoh']:.2f} | {speed} |")


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
    p.add_argument("--mode", choices=["table", "tune", "speed", "diagnose", "ensemble"], default="table")
    p.add_argument("--size", type=int, default=32, help="in-plane size of the reconstruction (the prior's slices)")
    p.add_argument("--depth", type=int, default=16, help="number of axial slices")
    p.add_argument("--slab", type=int, default=0,
                   help="reconstruct only the central SLAB slices of the depth-slice volume (0: all); with "
                        "--depth equal to --size the slices keep the training volumes' isotropic voxels")
    p.add_argument("--phantoms", nargs="+", default=["random1000", "shepp"], help="randomSEED (held out) or shepp")
    p.add_argument("--val-phantom", default="random2000", help="validation volume of --mode tune")
    p.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    p.add_argument("--mbir-tasks", nargs="*", default=["sv8"])
    p.add_argument("--methods", nargs="*", default=[],
                   help='table: only these rows (e.g. "DDS" "DiffusionMBIR"; ADMM-TV always runs, as the baseline)')
    p.add_argument("--mbir-steps", type=int, default=200)
    p.add_argument("--mbir-cg", type=int, default=1,
                   help="CG steps per DiffusionMBIR step (paper: 1, with 2000 steps; fewer steps may want more)")
    p.add_argument("--dds-steps", type=int, default=50)
    p.add_argument("--dds-cg", type=int, default=5,
                   help="CG steps per DDS step (paper: 5; on the validation volume 10 tie at 8 views and lose "
                        "0.6-2.6 dB at 4/2 views and 4x MRI, docs/ct3d.md)")
    p.add_argument("--dds-eta", type=float, default=0.85, help="DDIM stochasticity of DDS (paper: 0.85)")
    p.add_argument("--dds-variants", nargs="*", default=[], help="extra DDS runs of --mode speed, as steps:n_cg:eta")
    p.add_argument("--tune-lams", nargs="+", type=float, default=[1e-4, 3e-4, 1e-3], help="--mode tune grid")
    p.add_argument("--tune-rhos", nargs="+", type=float, default=[3e-3, 1e-2, 3e-2], help="--mode tune grid")
    p.add_argument("--tune-task", default="sv8", choices=list(TASKS), help="task of --mode tune")
    p.add_argument("--tune-methods", nargs="*", default=[],
                   help='--mode tune: only these ("ADMM-TV", "DDS", "DDS (tv=all)", "DiffusionMBIR")')
    p.add_argument("--dds-lam-by-task", nargs="*", default=[], metavar="TASK=LAM",
                   help="DDS lam for single tasks (chosen by --mode tune --tune-task on the validation volume)")
    p.add_argument("--exact-methods", nargs="*", default=["FBP", "ADMM-TV", "DDS"],
                   help="--mode diagnose: methods rerun on exact data (the inverse crime), to measure the guard's cost "
                        "(a name that is no method, e.g. none: no exact-data runs)")
    p.add_argument("--ensemble-methods", nargs="+", default=["DDS"], choices=["DDS", "DiffusionMBIR"])
    p.add_argument("--ensemble-size", type=int, default=8, help="--mode ensemble: seeds per method")
    p.add_argument("--ensemble-batch", type=int, default=None, help="--mode ensemble: samples per sampler call (default all)")
    p.add_argument("--save-dir", default="", help="diagnose / ensemble: write the reconstructions here (.pt)")
    p.add_argument("--speed-depth", type=int, default=8, help="volume depth of --mode speed")
    p.add_argument("--speed-mbir-steps", type=int, default=2000, help="DiffusionMBIR steps of --mode speed (paper: 2000)")
    for m, v in TUNED.items():
        p.add_argument(f"--{m.replace('_', '-')}-lam", type=float, default=v["lam"], help="relative to |A|^2")
        p.add_argument(f"--{m.replace('_', '-')}-rho", type=float, default=v["rho"], help="relative to |A|^2")
    p.add_argument("--prior", default=None, help="slice prior (default: the shipped ct_slices<size>, else ct_slices32)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-memory", action="store_true", help="skip the fresh-process memory table")
    p.add_argument("--unaligned-finer", action="store_true",
                   help="bin the finer-grid CT data without registering the grids (reproduces earlier tables)")
    args = p.parse_args(argv)
    global UNALIGNED
    UNALIGNED = args.unaligned_finer
    if args.prior is None:
        shipped = Path(scidiff.__file__).parent / "assets" / f"ct_slices{args.size}.safetensors"
        args.prior = shipped.stem if shipped.exists() else "ct_slices32"
    torch.set_num_threads(args.threads)
    print(f"mode {args.mode}, {args.threads} thread(s), torch {torch.__version__}, prior {args.prior}")
    print("lam / rho relative to |A|^2: " + ", ".join(
        f"{m} {getattr(args, m + '_lam'):g} / {getattr(args, m + '_rho'):g}" for m in TUNED) + "\n")
    if args.mode == "tune":
        return tune(args)
    if args.mode == "speed":
        return speed(args)
    if args.mode in ("diagnose", "ensemble"):
        return {"diagnose": diagnose, "ensemble": ensemble}[args.mode](args)
    slab = f", central {args.slab} slices" if args.slab else ""
    print(f"volume {args.depth} x {args.size} x {args.size}{slab} (measured at 2x)\n")
    if not args.no_memory:
        memory_table(args.prior)
    print("\n| phantom | task | method | PSNR 3D | axial PSNR / SSIM | coronal | sagittal | error z / in-plane | wall s | peak MiB |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    rows = run(args)
    summary(rows)


if __name__ == "__main__":
    main()
