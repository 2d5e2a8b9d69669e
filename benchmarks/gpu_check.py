"""GPU check: every sampler and kernel on CUDA, samples/s, peak memory, host syncs, bf16 and compile, vs the CPU.

One command on a machine with a GPU (about 3-4 minutes on one H100; ``--budget`` caps it):

    PYTHONPATH=. python benchmarks/gpu_check.py

For each resolution (64^2 and 128^2, a UNet prior with random weights: speed only) and each sampler or kernel
it prints one row per variant:

* ``fp32``; ``bf16`` (the network under ``torch.autocast``, state in float32: ``DiffusionPrior.set_runtime``);
  ``compile`` (``torch.compile`` of the network; only for ``--compile`` samplers, compile time reported apart);
* samples/s over ``--steps`` steps after a short warm-up, peak GPU memory (MiB);
* host syncs during the timed run, counted by ``torch.cuda.set_sync_debug_mode("warn")``: the unconditional
  samplers, DPS and RED-Diff should show at most the one check of the start; SMC samplers sync once per step
  (the ESS decision) and CG once per ``check_every`` iterations;
* the CPU reference: the same sampler in this process on ``--cpu-batch`` samples and ``--cpu-steps`` steps, its
  rate scaled to ``--steps`` steps (cost is linear in the steps), and the speedup GPU / CPU.

Without CUDA the script runs a tiny version on the CPU (``--tiny``, 8^2 and 16^2, a few steps, ``torch.compile``
with the ``eager`` backend: graph capture without code generation), so that it is tested
(``tests/scale/test_gpu_check.py``); its numbers say nothing about speed. A row that fails prints its error and
the script goes on. It never asserts: it reports.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch

from scidiff.diffusion import karras_sigmas, sample, seeded_generators
from scidiff.priors import DiffusionPrior

UNETS = {"full": {"base_channels": 32, "channel_mults": [1, 2, 2, 2], "num_res_blocks": 1},
         "tiny": {"base_channels": 8, "channel_mults": [1, 2], "num_res_blocks": 1}}
UNCONDITIONAL = ("euler", "heun", "ddim", "ancestral", "euler_maruyama")
POSTERIOR = ("dps", "red_diff", "afdps", "tds", "mcgdiff", "diffusionpde")
KERNELS = ("cg", "resample")
ALL = UNCONDITIONAL + POSTERIOR + KERNELS


@dataclass
class Row:
    res: int
    name: str
    variant: str
    samples_per_s: float | None = None
    peak_mib: float | None = None
    syncs: int | None = None
    cpu_samples_per_s: float | None = None
    compile_s: float | None = None
    error: str | None = None

    @property
    def speedup(self) -> float | None:
        if self.samples_per_s is None or not self.cpu_samples_per_s:
            return None
        return self.samples_per_s / self.cpu_samples_per_s


# --- problems ---------------------------------------------------------------------------------
def inpainting(res: int, device) -> object:
    """Keep 20% of the pixels: ``A x = m * x`` with the mask as its singular values (a decomposable operator,
    so MCGdiff's SVD exists). Built from the project's own classes, so the check runs where deepinv is absent."""
    from scidiff.likelihoods import LinearGaussianLikelihood
    from scidiff.likelihoods.physics import SVD

    g = torch.Generator().manual_seed(0)
    mask = (torch.rand(1, 1, res, res, generator=g) < 0.2).float().to(device)
    keep = lambda v: v * mask  # noqa: E731  (symmetric: A = A^T = A^+ on its range)
    same = lambda v: v  # noqa: E731
    y = keep(torch.randn(1, 1, res, res, generator=g).to(device))
    return LinearGaussianLikelihood(keep, keep, y, 0.1, A_dagger=keep, svd=SVD(same, same, same, same, mask))


def sparse_sensors(res: int, sigmas, device):
    from scidiff.pde.diffusionpde import SparseObservation, diffusionpde_likelihood

    g = torch.Generator().manual_seed(0)
    mask = torch.rand(res, res, generator=g) < 0.05
    obs = SparseObservation(torch.randn(res, res, generator=g), mask)
    obs.mask, obs.values = obs.mask.to(device), obs.values.to(device)
    return diffusionpde_likelihood([(obs, 1.0)], None, 0.0, sigmas)


def runner(name: str, res: int, device) -> Callable:
    """``run(prior, batch, steps)`` for one sampler or kernel (the problem is built once, outside the timing)."""
    from scidiff import inverse
    from scidiff.kernels.cg import conjugate_gradient
    from scidiff.kernels.particles import resample

    shape = lambda n: (n, 1, res, res)  # noqa: E731
    gens = lambda n: seeded_generators(n, device=device)  # noqa: E731
    if name in UNCONDITIONAL:
        return lambda p, n, k: sample(p, shape(n), karras_sigmas(k, 0.002, 80.0), sampler=name, generator=gens(n),
                                      device=device, progress=False)
    if name == "diffusionpde":
        from scidiff.pde.diffusionpde import sample_diffusionpde

        def run(p, n, k):
            sigmas = karras_sigmas(k, 0.002, 80.0)
            return sample_diffusionpde(p, sparse_sensors(res, sigmas, device), shape(n), sigmas, generator=gens(n),
                                       device=device, progress=False)
        return run
    if name in POSTERIOR:
        lik = inpainting(res, device)
        fn = getattr(inverse, name)
        return lambda p, n, k: fn(p, lik, shape(n), karras_sigmas(k, 0.002, 80.0), generator=gens(n), device=device,
                                  progress=False)
    if name == "cg":  # (mask + 0.1 - 0.1 laplacian) x = b on n fields: a well-posed SPD system per item
        mask = (torch.rand(1, 1, res, res, generator=torch.Generator().manual_seed(0)) < 0.2).float().to(device)

        def apply(v):
            lap = sum(v.roll(s, d) for s in (1, -1) for d in (-1, -2)) - 4 * v
            return mask * v + 0.1 * v - 0.1 * lap

        return lambda p, n, k: conjugate_gradient(apply, torch.ones(shape(n), device=device), max_iter=8 * k, tol=1e-30)
    if name == "resample":  # k rounds of systematic resampling of n sets of res^2 particles
        def run(p, n, k):
            lw = torch.randn(n, res * res, device=device)
            g = torch.Generator(device).manual_seed(0)
            for _ in range(k):
                out = resample(lw, "systematic", generator=g)
            return out
        return run
    raise ValueError(f"unknown sampler or kernel {name!r}; choose from {ALL}")


# --- timing -----------------------------------------------------------------------------------
def timed(run, prior, batch: int, steps: int, device) -> tuple[float, float | None, int | None]:
    """Seconds, peak MiB and host syncs of one run (CUDA: syncs counted by the sync debug mode)."""
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if cuda:
            torch.cuda.set_sync_debug_mode("warn")
        t0 = time.perf_counter()
        try:
            run(prior, batch, steps)
        finally:
            if cuda:
                torch.cuda.set_sync_debug_mode("default")
        if cuda:
            torch.cuda.synchronize()
        wall = time.perf_counter() - t0
    if not cuda:
        return wall, None, None
    syncs = sum("synchroniz" in str(w.message) for w in caught)
    return wall, torch.cuda.max_memory_allocated() / 2**20, syncs


def check(names, resolutions, variants, compile_names, batch, steps, cpu_batch, cpu_steps, tiny, budget,
          device, compile_kwargs: dict | None = None) -> list[Row]:
    """All rows: fp32 and bf16 for every resolution first, the slow ``torch.compile`` rows last (so a tight
    budget cuts those rather than the 128^2 numbers)."""
    start, cpu_rates = time.perf_counter(), {}
    priors = {}
    for res in resolutions:
        torch.manual_seed(0)
        priors[res] = DiffusionPrior([1, res, res], network_kwargs=UNETS["tiny" if tiny else "full"], ema_decay=0).eval()
    plan = [(res, name, [v for v in variants if v != "compile"]) for res in resolutions for name in names]
    if "compile" in variants:
        plan += [(res, name, ["compile"]) for res in resolutions for name in names if name in compile_names]
    rows = []
    for res, name, todo in plan:
        todo = [v for v in todo if v == "fp32" or name not in KERNELS]  # the kernels run no network: only fp32
        if not todo:
            continue
        if time.perf_counter() - start > budget:
            rows.append(Row(res, name, "/".join(todo), error=f"skipped: past the {budget:.0f} s budget"))
            continue
        rows += _rows(priors[res], res, name, todo, batch, steps, cpu_batch, cpu_steps, cpu_rates, device,
                      compile_kwargs or {})
    return rows


def _rows(prior, res, name, variants, batch, steps, cpu_batch, cpu_steps, cpu_rates, device, compile_kwargs) -> list[Row]:
    cpu = torch.device("cpu")
    try:
        if (res, name) not in cpu_rates:
            prior.to(cpu).set_runtime(None)
            wall_cpu, _, _ = timed(runner(name, res, cpu), prior, cpu_batch, cpu_steps, cpu)
            cpu_rates[res, name] = cpu_batch / (wall_cpu * steps / cpu_steps)
        run = runner(name, res, device)
    except Exception as err:  # noqa: BLE001 (a report, not a test: show the failure and go on)
        return [Row(res, name, "/".join(variants), error=f"{type(err).__name__}: {err}"[:160])]
    prior.to(device)
    rows = []
    for variant in variants:
        row = Row(res, name, variant, cpu_samples_per_s=cpu_rates[res, name])
        try:
            compiled = (compile_kwargs or True) if variant == "compile" else False
            prior.set_runtime("bf16" if variant == "bf16" else None, compile=compiled)
            t0 = time.perf_counter()
            timed(run, prior, batch, 2, device)  # warm-up: kernels, allocator, graph capture
            row.compile_s = time.perf_counter() - t0 if variant == "compile" else None
            wall, row.peak_mib, row.syncs = timed(run, prior, batch, steps, device)
            row.samples_per_s = batch / wall
        except Exception as err:  # noqa: BLE001
            row.error = f"{type(err).__name__}: {err}"[:160]
        rows.append(row)
    prior.set_runtime(None)
    return rows


def fmt(v, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def print_table(rows: list[Row], device, batch: int, steps: int, cpu_batch: int, cpu_steps: int) -> None:
    where = torch.cuda.get_device_name() if device.type == "cuda" else "CPU (tiny check: no speed meaning)"
    print(f"\n### Samplers and kernels on {where}: batch {batch}, {steps} steps; CPU reference: batch {cpu_batch}, "
          f"{cpu_steps} steps scaled to {steps}, {torch.get_num_threads()} threads, same process\n")
    print("| res | sampler | variant | samples/s | peak MiB | host syncs | CPU samples/s | speedup | compile s | note |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r.res} | {r.name} | {r.variant} | {fmt(r.samples_per_s, '.2f')} | {fmt(r.peak_mib, '.0f')} | "
              f"{fmt(r.syncs, 'd')} | {fmt(r.cpu_samples_per_s, '.3f')} | {fmt(r.speedup, '.1f')} | "
              f"{fmt(r.compile_s, '.1f')} | {r.error or ''} |")


def main(argv=None) -> list[Row]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tiny", action="store_true", help="tiny shapes and steps (the default without CUDA)")
    p.add_argument("--samplers", nargs="+", default=list(ALL), choices=ALL)
    p.add_argument("--res", type=int, nargs="+", default=None, help="default: 64 128 (tiny: 8 16)")
    p.add_argument("--variants", nargs="+", default=["fp32", "bf16", "compile"], choices=["fp32", "bf16", "compile"])
    p.add_argument("--compile", nargs="+", default=["heun", "dps"], help="samplers also run with torch.compile")
    p.add_argument("--compile-backend", default=None, help="torch.compile backend (default inductor; tiny: eager)")
    p.add_argument("--batch", type=int, default=None, help="GPU batch (default 16; tiny 2)")
    p.add_argument("--steps", type=int, default=None, help="default 32 (tiny 3)")
    p.add_argument("--cpu-batch", type=int, default=2)
    p.add_argument("--cpu-steps", type=int, default=None, help="default 4 (tiny 2)")
    p.add_argument("--budget", type=float, default=240.0, help="seconds; rows past it are skipped")
    p.add_argument("--json", default=None, help="also write the rows to this file")
    a = p.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    tiny = a.tiny or device.type == "cpu"
    res = a.res or ([8, 16] if tiny else [64, 128])
    batch, steps = a.batch or (2 if tiny else 16), a.steps or (3 if tiny else 32)
    cpu_steps = a.cpu_steps or (2 if tiny else 4)
    # tiny: graph capture only (backend "eager"); generating kernels would take minutes on a CPU
    compile_kwargs = {"backend": a.compile_backend or ("eager" if tiny else "inductor")}
    rows = check(a.samplers, res, a.variants, a.compile, batch, steps, a.cpu_batch, cpu_steps, tiny, a.budget, device,
                 compile_kwargs)
    print_table(rows, device, batch, steps, a.cpu_batch, cpu_steps)
    if a.json:
        with open(a.json, "w") as f:
            json.dump([asdict(r) | {"speedup": r.speedup} for r in rows], f, indent=1)
    return rows


if __name__ == "__main__":
    main()
