"""Samples of a trajectory prior against its simulator: marginal statistics, the law of a window maximum, dynamics.

One comparison for every system of :mod:`scidiff.dynamics.systems` (the ``evaluate.py`` of ``problems/lorenz``,
``problems/fhn`` and ``problems/lorenz96`` print it for their model cards).
"""

from __future__ import annotations

import torch
from scipy import stats
from torch import Tensor

from ..diffusion.random import seeded_generators
from .systems import System, get_system, simulate


def ode_residual(x: Tensor, system: System, dt: float) -> Tensor:
    """RMS of ``dx/dt - f(x)`` with central differences, per trajectory ``(B,)``, for ``x`` of shape ``(B, V, T)``.

    The simulator's own trajectories give the truncation error of the central difference at this ``dt``: a
    prior's samples obey the dynamics as well as the simulator's when the two residuals agree.
    """
    dxdt = (x[..., 2:] - x[..., :-2]) / (2 * dt)
    f = system.rhs(x[..., 1:-1].transpose(1, 2)).transpose(1, 2)
    return (dxdt - f).pow(2).mean((1, 2)).sqrt()


def compare_to_simulator(prior, system: str | System, *, n: int = 256, steps: int = 32, n_truth: int = 20000,
                         seed: int = 123, variables: int | None = None, burn_in: int | None = None,
                         **system_kwargs) -> list[tuple[str, float, float]]:
    """``(quantity, prior, simulator)`` rows for ``n`` prior samples (Heun, ``steps``) and ``n_truth`` windows.

    Rows: mean, std and within-window std of the first ``variables`` variables (all by default), the KS distance of
    the law of ``max_t`` of variable 0, and the median RMS ODE residual (:func:`ode_residual`). ``burn_in``
    overrides the system's (RK4 steps discarded before the first saved state).
    """
    system = get_system(system, **system_kwargs) if isinstance(system, str) else system
    x = prior.sample(n, steps, generator=seeded_generators(n), progress=False).double()
    if x.shape[1] != system.dim:
        raise ValueError(f"the prior has {x.shape[1]} variables, {system.name} has {system.dim}")
    truth = simulate(system, n_truth, x.shape[-1], burn_in=burn_in,
                     generator=torch.Generator().manual_seed(seed)).transpose(1, 2)
    rows = []
    for i, v in enumerate(system.variables[: variables or system.dim]):
        rows.append((f"mean of {v}", float(x[:, i].mean()), float(truth[:, i].mean())))
        rows.append((f"std of {v}", float(x[:, i].std()), float(truth[:, i].std())))
        rows.append((f"std of {v} within a window", float(x[:, i].std(1).mean()), float(truth[:, i].std(1).mean())))
    ks = stats.ks_2samp(x[:, 0].amax(1).numpy(), truth[:, 0].amax(1).numpy()).statistic
    rows.append((f"KS distance of max_t {system.variables[0]} to the simulator's law", float(ks), 0.0))
    dt = system.dt * system.save_every
    rows.append(("median RMS residual of dx/dt = f(x) (central differences)",
                 float(ode_residual(x, system, dt).median()), float(ode_residual(truth, system, dt).median())))
    return rows


def ks_critical(n: int, m: int, alpha_c: float = 1.358) -> float:
    """Two-sample Kolmogorov--Smirnov critical value at the 5 % level (asymptotic; Smirnov 1948)."""
    return alpha_c * (((n + m) / (n * m)) ** 0.5) if n > 0 and m > 0 else float("nan")


def burn_in_check(system: str | System, *, burn_in: int | None = None, n: int = 1000, window: int = 64,
                  lag: int = 16, seed: int = 0, **system_kwargs) -> list[tuple[str, float, float]]:
    """Are windows that start after ``burn_in`` RK4 steps on the attractor? ``(quantity, KS, 5 % critical)`` rows.

    On the attractor the law of a window no longer changes as the trajectory runs on (the invariant measure is
    stationary). So ``n`` trajectories (seeds ``seed + i``, as :func:`~scidiff.dynamics.make_trajectory_dataset`)
    are run for ``lag + 1`` windows after the burn-in, and the first window is compared with window ``lag`` of the
    same trajectories, ``lag`` windows later: the KS distance of every variable at the window's first saved state
    and of ``max_t`` of variable 0 (the event statistic). Both samples hold ``n`` independent trajectories, and
    ``lag`` windows are many decorrelation times, so the two-sample critical value applies. The burn-in is long
    enough when every distance is below it.
    """
    system = get_system(system, **system_kwargs) if isinstance(system, str) else system
    runs = simulate(system, n, window * (lag + 1), burn_in=burn_in, generator=seeded_generators(range(seed, seed + n)))
    first, later = runs[:, :window], runs[:, lag * window:]
    crit = ks_critical(n, n)
    rows = [(f"{v} at the first saved state", float(stats.ks_2samp(first[:, 0, i], later[:, 0, i]).statistic), crit)
            for i, v in enumerate(system.variables)]
    ks = stats.ks_2samp(first[..., 0].amax(1), later[..., 0].amax(1)).statistic
    rows.append((f"max_t {system.variables[0]} over a window", float(ks), crit))
    return rows


def heldout_loss(prior, system: str | System, *, n: int = 3200, seed: int = 10**6, burn_in: int | None = None,
                 **system_kwargs) -> float:
    """EDM loss (as in training) of the prior's sampling weights on ``n`` fresh simulator windows, fixed noise.

    Fresh windows (seeds ``seed..seed + n - 1``, far from the training seeds) are an independent test set; the
    weights are those :meth:`~scidiff.priors.DiffusionPrior.sample` uses (the EMA), which the trainer's validation
    loss, computed on the raw weights, does not measure.
    """
    from ..diffusion import edm_loss

    system = get_system(system, **system_kwargs) if isinstance(system, str) else system
    x = simulate(system, n, prior.shape[-1], burn_in=burn_in,
                 generator=seeded_generators(range(seed, seed + n))).transpose(1, 2)
    x = prior.normalize(x.float())
    hp = prior.hparams
    with torch.no_grad():
        losses = [edm_loss(prior.denoiser, chunk, sigma_data=hp.sigma_data, p_mean=hp.p_mean, p_std=hp.p_std,
                           generator=seeded_generators(range(i, i + len(chunk))))
                  for i, chunk in zip(range(0, n, 256), x.split(256))]
    return float(torch.cat(losses).mean())


def print_rows(rows, header: str) -> None:
    """The rows of :func:`compare_to_simulator` as a Markdown table."""
    print(header)
    print()
    print("| quantity | prior | simulator |")
    print("|---|---|---|")
    for name, ours, ref in rows:
        print(f"| {name} | {ours:.3f} | {ref:.3f} |")


def main(argv=None, *, system: str, pretrained: str | None = None, variables: int | None = None) -> None:
    """Command line of the problems' ``evaluate.py``: ``--prior`` (a .safetensors/.ckpt; default the shipped prior),
    ``--n``, ``--steps``, ``--n-truth``, ``--burn-in``, ``--loss-windows``."""
    import argparse

    from ..priors import DiffusionPrior

    p = argparse.ArgumentParser(description=f"Samples of a {system} trajectory prior against the simulator")
    p.add_argument("--prior", default=None, required=pretrained is None)
    p.add_argument("--n", type=int, default=512, help="prior samples")
    p.add_argument("--steps", type=int, default=32, help="Heun steps")
    p.add_argument("--n-truth", type=int, default=20000, help="simulator windows")
    p.add_argument("--burn-in", type=int, default=None, help="RK4 steps before the first saved state (default: the system's)")
    p.add_argument("--loss-windows", type=int, default=0, help="also print the EDM loss on this many fresh windows")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    prior = DiffusionPrior.pretrained(pretrained) if a.prior is None else DiffusionPrior.load(a.prior)
    prior.eval()
    rows = compare_to_simulator(prior, system, n=a.n, steps=a.steps, n_truth=a.n_truth, variables=variables,
                                burn_in=a.burn_in)
    print_rows(rows, f"{a.n} prior samples (Heun, {a.steps} steps) against {a.n_truth} simulator windows")
    if a.loss_windows:
        print(f"\nEDM loss of the sampling (EMA) weights on {a.loss_windows} fresh simulator windows: "
              f"{heldout_loss(prior, system, n=a.loss_windows, burn_in=a.burn_in):.4f}")
