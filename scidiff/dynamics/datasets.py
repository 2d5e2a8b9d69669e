"""Trajectory datasets as CF-style ``xarray.Dataset``: one data variable per state variable, dims ``(sample, time)``.

Stacking the data variables gives the ``(sample, time, variable)`` array (:func:`trajectories`); keeping them as
separate variables lets :class:`~scidiff.data.FieldDataModule` read them as channels of a ``(variables, time)``
field for a 1D temporal prior. Registered with ``scidiff datasets make lorenz63|fitzhugh_nagumo|lorenz96``.
"""

from __future__ import annotations

import numpy as np
import torch

from .systems import get_system, simulate

NAMES = ("lorenz63", "fitzhugh_nagumo", "lorenz96")


def make_trajectory_dataset(
    name: str, n: int = 1000, res: int = 64, *, seed: int = 0, dt: float | None = None,
    save_every: int | None = None, burn_in: int | None = None, **system_kwargs,
):
    """``n`` trajectories of ``res`` saved time steps of the named system (``res`` is the window length).

    Trajectory ``i`` uses seed ``seed + i`` for its initial state, so a dataset's first ``k`` trajectories do
    not depend on ``n``.
    """
    import xarray as xr

    from .. import __version__
    from ..diffusion.random import seeded_generators

    n, res, seed = int(n), int(res), int(seed)
    system = get_system(name, **system_kwargs)
    gens = seeded_generators(range(seed, seed + n))
    traj = simulate(system, n, res, dt=dt, save_every=save_every, burn_in=burn_in, generator=gens)
    step = (system.dt if dt is None else float(dt)) * (system.save_every if save_every is None else int(save_every))
    time = np.arange(res) * step
    data_vars = {
        v: (("sample", "time"), traj[..., i].float().numpy(), {"long_name": f"state variable {v}", "units": "1"})
        for i, v in enumerate(system.variables)
    }
    return xr.Dataset(
        data_vars,
        coords={
            "sample": ("sample", np.arange(n), {"standard_name": "realization", "long_name": "trajectory"}),
            "time": ("time", time, {"units": "1", "long_name": "time (model units)", "axis": "T"}),
        },
        attrs={
            "title": f"{system.name} trajectories (RK4, on the attractor after a burn-in)",
            "system": system.name,
            "variables": " ".join(system.variables),
            "dt_solver": system.dt if dt is None else float(dt),
            "dt_saved": step,
            "burn_in_steps": system.burn_in if burn_in is None else int(burn_in),
            "seed": seed,
            **{f"param_{k}": str(v) for k, v in system.params.items()},
            "source": f"scidiff {__version__} scidiff.dynamics.make_trajectory_dataset (classical RK4)",
            "Conventions": "CF-1.10",
        },
    )


def trajectories(ds, variables: list[str] | None = None) -> torch.Tensor:
    """The ``(sample, time, variable)`` array of a trajectory dataset as a float tensor."""
    variables = variables or ds.attrs.get("variables", "").split() or list(ds.data_vars)
    missing = [v for v in variables if v not in ds.data_vars]
    if missing:
        raise KeyError(f"variable(s) {missing} not in the dataset; it has {sorted(ds.data_vars)}")
    return torch.from_numpy(np.stack([ds[v].transpose("sample", "time").values for v in variables], axis=-1))
