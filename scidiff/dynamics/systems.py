"""Dynamical systems integrated in the project: vectorised fourth-order Runge--Kutta in torch.

Each system is a vector field ``f(x) -> dx/dt`` on a batch of states ``(B, n)``; :func:`simulate` integrates many
trajectories at once, discards a burn-in so they start on the attractor, and keeps every ``save_every``-th step.
Parameters follow the papers the event and assimilation methods were shown on:

* Lorenz-63 (Lorenz 1963): ``sigma = 10, rho = 28, beta = 8/3`` (Finzi et al. 2023, Rozet & Louppe 2023).
* FitzHugh--Nagumo, two diffusively coupled neurons (4 variables), the parameters of Finzi et al. 2023
  (``a = -0.025794, b = (0.0065, 0.0135), c = 0.02, k = 0.128``; the extreme-event regime of Ansmann, Karnatak,
  Lehnertz and Feudel 2013: small chaotic oscillations with rare large spikes).
* Lorenz-96 (Lorenz 1996): ``dx_i/dt = (x_{i+1} - x_{i-2}) x_{i-1} - x_i + F``, periodic in ``i``, ``F = 8``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..diffusion._utils import check_finite
from ..diffusion.random import Generator, randn


@dataclass(frozen=True)
class System:
    """A named vector field with its variable names, default step sizes and initial-state law."""

    name: str
    variables: tuple[str, ...]
    rhs: Callable[[Tensor], Tensor]
    dt: float  # internal RK4 step
    save_every: int  # saved time step = dt * save_every
    burn_in: int  # RK4 steps discarded before the first saved state
    init_scale: float = 1.0
    init_mean: tuple[float, ...] | None = None
    params: dict = field(default_factory=dict)

    @property
    def dim(self) -> int:
        return len(self.variables)

    def initial_states(self, n: int, generator: Generator = None) -> Tensor:
        """``n`` starting states ``mean + scale * N(0, I)`` in float64 (before the burn-in)."""
        x = randn((n, self.dim), generator, dtype=torch.float64) * self.init_scale
        if self.init_mean is not None:
            x = x + torch.tensor(self.init_mean, dtype=torch.float64)
        return x


def lorenz63_rhs(x: Tensor, sigma: float = 10.0, rho: float = 28.0, beta: float = 8.0 / 3.0) -> Tensor:
    """Lorenz (1963): ``(sigma (y - x), x (rho - z) - y, x y - beta z)``."""
    u, v, w = x.unbind(-1)
    return torch.stack([sigma * (v - u), u * (rho - w) - v, u * v - beta * w], dim=-1)


FHN = {"a": -0.025794, "b": (0.0065, 0.0135), "c": 0.02, "k": 0.128}


def fitzhugh_nagumo_rhs(x: Tensor) -> Tensor:
    """Two FitzHugh--Nagumo neurons coupled through the voltage (Finzi et al. 2023, after Rabinovich et al.).

    State ``(v1, v2, w1, w2)``: ``dv_i = v_i (a - v_i)(v_i - 1) - w_i + k (v_j - v_i)``, ``dw_i = b_i v_i - c w_i``.
    """
    a, c, k = FHN["a"], FHN["c"], FHN["k"]
    b = x.new_tensor(FHN["b"])
    v, w = x[..., :2], x[..., 2:]
    coupling = k * (v.flip(-1) - v)
    dv = v * (a - v) * (v - 1) - w + coupling
    dw = b * v - c * w
    return torch.cat([dv, dw], dim=-1)


def lorenz96_rhs(x: Tensor, forcing: float = 8.0) -> Tensor:
    """Lorenz (1996): ``dx_i/dt = (x_{i+1} - x_{i-2}) x_{i-1} - x_i + F`` with periodic indices."""
    return (x.roll(-1, -1) - x.roll(2, -1)) * x.roll(1, -1) - x + forcing


def _lorenz96(num_variables: int = 40, forcing: float = 8.0) -> System:
    n = int(num_variables)
    if n < 4:
        raise ValueError(f"Lorenz-96 needs at least 4 variables, got {n}")
    return System(
        name="lorenz96", variables=tuple(f"x{i}" for i in range(n)), rhs=lambda x: lorenz96_rhs(x, float(forcing)),
        dt=0.01, save_every=5, burn_in=1000, init_scale=1.0, init_mean=(float(forcing),) * n,
        params={"F": float(forcing), "num_variables": n},
    )


SYSTEMS: dict[str, Callable[..., System]] = {
    "lorenz63": lambda: System(
        name="lorenz63", variables=("x", "y", "z"), rhs=lorenz63_rhs, dt=0.01, save_every=5, burn_in=3000,
        init_scale=1.0, params={"sigma": 10.0, "rho": 28.0, "beta": 8.0 / 3.0},
    ),
    "fitzhugh_nagumo": lambda: System(
        # 16 000 steps (8 000 time units): from 0.2 N(0, I) every trajectory fires a first spike together, and the
        # law of the time to the next extreme spike relaxes over about 5 400 time units (datasets/lorenz.md)
        name="fitzhugh_nagumo", variables=("v1", "v2", "w1", "w2"), rhs=fitzhugh_nagumo_rhs, dt=0.5,
        save_every=12, burn_in=16000, init_scale=0.2, params=dict(FHN),
    ),
    "lorenz96": _lorenz96,
}


def get_system(name: str, **kwargs) -> System:
    """The named system (``lorenz63``, ``fitzhugh_nagumo``, ``lorenz96``; Lorenz-96 takes ``num_variables`` and ``forcing``)."""
    if name not in SYSTEMS:
        raise ValueError(f"unknown dynamical system {name!r}; available: {sorted(SYSTEMS)}")
    return SYSTEMS[name](**kwargs)


def rk4_step(rhs: Callable[[Tensor], Tensor], x: Tensor, dt: float) -> Tensor:
    """One classical Runge--Kutta step (fourth order)."""
    k1 = rhs(x)
    k2 = rhs(x + 0.5 * dt * k1)
    k3 = rhs(x + 0.5 * dt * k2)
    k4 = rhs(x + dt * k3)
    return x + dt / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)


def integrate(
    rhs: Callable[[Tensor], Tensor], x0: Tensor, dt: float, steps: int, save_every: int = 1, *, progress: bool = False
) -> Tensor:
    """RK4 from ``x0`` ``(B, n)`` for ``steps`` saved states: returns ``(B, steps, n)``, the first being ``x0``."""
    if not dt > 0:
        raise ValueError(f"dt must be positive, got {dt}")
    if steps < 1 or save_every < 1:
        raise ValueError(f"steps and save_every must be >= 1; got steps={steps}, save_every={save_every}")
    check_finite(x0, "initial state x0")
    out = [x0]
    x = x0
    for _ in tqdm(range(steps - 1), disable=not progress, desc="rk4", leave=False):
        for _ in range(save_every):
            x = rk4_step(rhs, x, dt)
        out.append(x)
    traj = torch.stack(out, dim=1)
    check_finite(traj, "trajectory (the integration diverged: reduce dt)")
    return traj


def simulate(
    system: System | str,
    n: int,
    steps: int,
    *,
    dt: float | None = None,
    save_every: int | None = None,
    burn_in: int | None = None,
    generator: Generator = None,
    progress: bool = False,
    device: str | torch.device | None = None,
) -> Tensor:
    """``n`` trajectories of ``steps`` saved states after a burn-in, ``(n, steps, dim)`` float64.

    With per-sample generators (:func:`~scidiff.diffusion.seeded_generators`) trajectory ``i`` does not depend on
    ``n``: its initial state is drawn from its own generator and the integration is per-row. The initial states
    are drawn on the host and integrated on ``device`` (e.g. ``"cuda"`` for millions of trajectories at once).
    """
    system = get_system(system) if isinstance(system, str) else system
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    dt = system.dt if dt is None else float(dt)
    save_every = system.save_every if save_every is None else int(save_every)
    burn_in = system.burn_in if burn_in is None else int(burn_in)
    if burn_in < 0:
        raise ValueError(f"burn_in must be >= 0, got {burn_in}")
    x = system.initial_states(n, generator).to(device)
    for _ in range(burn_in):
        x = rk4_step(system.rhs, x, dt)
    return integrate(system.rhs, x, dt, steps, save_every, progress=progress)
