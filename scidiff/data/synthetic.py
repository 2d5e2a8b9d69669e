"""Synthetic physical fields generated in the project: Gaussian random fields on a periodic grid.

A stationary Gaussian random field with power spectrum ``S(k) ∝ (tau^2 + |2 pi k|^2)^(-alpha)`` (a Matérn-type
spectrum, as used for the coefficient fields of Darcy/Navier-Stokes benchmarks) is exactly Gaussian, so its
covariance -- and hence the exact denoiser and exact posteriors -- are known. That makes it the reference
problem for checking trained priors.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from ..diffusion.random import Generator, randn


def grf_spectrum(res: int, alpha: float = 2.0, tau: float = 3.0, dims: int = 2) -> Tensor:
    """Power spectrum on the FFT grid, scaled so that the field has unit marginal variance."""
    if res < 2 or dims not in (1, 2, 3):
        raise ValueError(f"need res >= 2 and dims in (1, 2, 3); got res={res}, dims={dims}")
    k = torch.fft.fftfreq(res, d=1.0 / res, dtype=torch.float64)
    grids = torch.meshgrid(*([k] * dims), indexing="ij")
    k2 = sum(g**2 for g in grids)
    spec = (tau**2 + 4 * math.pi**2 * k2) ** (-alpha)
    return spec / spec.mean()


def gaussian_random_field(
    n: int, res: int, *, alpha: float = 2.0, tau: float = 3.0, dims: int = 2, generator: Generator = None
) -> Tensor:
    """``n`` fields of shape ``(1, res, ..., res)``: white noise filtered by ``sqrt(S)`` (real, zero mean, unit variance)."""
    spec = grf_spectrum(res, alpha, tau, dims)
    white = randn((n, *([res] * dims)), generator, dtype=torch.float64)
    axes = tuple(range(1, dims + 1))
    field = torch.fft.ifftn(spec.sqrt() * torch.fft.fftn(white, dim=axes), dim=axes).real
    return field[:, None].float()


def grf_covariance(res: int, alpha: float = 2.0, tau: float = 3.0, dims: int = 2) -> Tensor:
    """The exact covariance matrix ``(d, d)`` of :func:`gaussian_random_field` (``d = res^dims``), circulant."""
    spec = grf_spectrum(res, alpha, tau, dims)
    d = res**dims
    basis = torch.eye(d, dtype=torch.float64).reshape(d, *([res] * dims))
    axes = tuple(range(1, dims + 1))
    return torch.fft.ifftn(spec * torch.fft.fftn(basis, dim=axes), dim=axes).real.reshape(d, d)


def make_grf_dataset(n: int = 2000, res: int = 32, *, alpha: float = 2.0, tau: float = 3.0, seed: int = 0):
    """A CF-style ``xarray.Dataset`` of 2D GRF samples: variable ``u`` with dims ``(sample, y, x)``."""
    import xarray as xr

    from .. import __version__

    # Values may arrive as strings from a command line override of a generator spec.
    n, res, alpha, tau, seed = int(n), int(res), float(alpha), float(tau), int(seed)
    u = gaussian_random_field(n, res, alpha=alpha, tau=tau, generator=torch.Generator().manual_seed(seed))[:, 0]
    coord = np.arange(res) / res
    return xr.Dataset(
        {"u": (("sample", "y", "x"), u.numpy(), {"long_name": "Gaussian random field", "units": "1"})},
        coords={
            "y": ("y", coord, {"units": "1", "long_name": "y (periodic unit square)"}),
            "x": ("x", coord, {"units": "1", "long_name": "x (periodic unit square)"}),
        },
        attrs={
            "title": "Gaussian random field, spectrum (tau^2 + |2 pi k|^2)^-alpha, unit variance",
            "alpha": alpha,
            "tau": tau,
            "seed": seed,
            "source": f"scidiff {__version__} scidiff.data.synthetic.make_grf_dataset",
            "Conventions": "CF-1.10",
        },
    )


def _phantom_slices(**kwargs):
    # axial slices of 3D phantoms (scidiff.volumes), imported only when asked for
    from ..volumes.phantoms import make_slice_dataset

    return make_slice_dataset(**kwargs)


def _phantoms(**kwargs):
    # 2D ellipse phantoms for CT (scidiff.data.phantoms), imported only when asked for
    from .phantoms import make_phantom_dataset

    return make_phantom_dataset(**kwargs)


GENERATORS = {"grf": make_grf_dataset, "phantom_slices": _phantom_slices, "phantoms": _phantoms}


def _register_trajectory_datasets() -> None:
    # Trajectories of ODEs (scidiff.dynamics); the module is imported only when a generator is called.
    def lazy(name):
        def make(**kwargs):
            from ..dynamics.datasets import make_trajectory_dataset

            return make_trajectory_dataset(name, **kwargs)

        return make

    for name in ("lorenz63", "fitzhugh_nagumo", "lorenz96"):
        GENERATORS[name] = lazy(name)


_register_trajectory_datasets()


def register_generator(name: str, fn) -> None:
    """Make a dataset generator ``fn(**kwargs) -> xarray.Dataset`` available to data modules and the CLI."""
    GENERATORS[name] = fn


def available() -> list[str]:
    """Names accepted by :func:`generate`: the registered generators and the PDE datasets of :mod:`scidiff.pde`."""
    from ..pde.datasets import NAMES

    return sorted({*GENERATORS, *NAMES})


def generate(name: str, **kwargs):
    """Build the named dataset (``n``, ``res``, ``seed`` and generator-specific keyword arguments)."""
    if name in GENERATORS:
        return GENERATORS[name](**kwargs)
    from ..pde.datasets import NAMES, make_dataset

    if name in NAMES:
        return make_dataset(name, **kwargs)
    raise ValueError(f"unknown dataset generator {name!r}; available: {available()}")
