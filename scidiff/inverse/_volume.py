"""Shared pieces of the 3D solvers (ADMM-TV, DiffusionMBIR, DDS): checks, TV directions, slice-wise denoising."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ..diffusion._utils import check_finite
from ..kernels.tv import ADMMTV

#: TV directions on ``(B, 1, D, H, W)``: DiffusionMBIR's z-only TV, or all three (anisotropic 3D TV).
TV_DIMS = {"z": (-3,), "all": (-3, -2, -1), "none": ()}


def check_problem(physics, y: Tensor) -> None:
    """``y`` must be finite measurements of the operator (a volume operator from :mod:`scidiff.likelihoods.volume`)."""
    for cap in ("A", "A_adjoint", "norm2", "slice_shape"):
        if not hasattr(physics, cap):
            raise TypeError(
                f"physics must be a volume operator with A, A_adjoint and norm2 (e.g. SliceTomography); "
                f"{type(physics).__name__} has no {cap!r}"
            )
    if not isinstance(y, Tensor) or y.ndim != 5:
        raise ValueError(f"y must be volume measurements (B, C, D, ., .); got {getattr(y, 'shape', type(y))}")
    check_finite(y, "measurements y")


def volume_shape(physics, y: Tensor) -> tuple[int, ...]:
    return (y.shape[0], 1, y.shape[2], *physics.slice_shape)


def admm_state(physics, y: Tensor, lam: float, rho: float, tv: str, boundary: str, isotropic: bool = False) -> ADMMTV:
    """An :class:`~scidiff.kernels.tv.ADMMTV` with ``lam``, ``rho`` given relative to ``|A|^2``."""
    if tv not in TV_DIMS:
        raise ValueError(f"tv must be one of {sorted(TV_DIMS)}; got {tv!r}")
    norm2 = physics.norm2()
    lam_abs = lam * norm2 if tv != "none" else 0.0
    return ADMMTV(
        lambda v: physics.A_adjoint(physics.A(v)), physics.A_adjoint(y), lam_abs, rho * norm2,
        TV_DIMS[tv] or (-3,), boundary, isotropic=isotropic,
    )


def slicewise_denoiser(denoiser, max_slices: int, mean: float = 0.0, std: float = 1.0) -> Callable[[Tensor, float], Tensor]:
    """Run a 2D denoiser ``denoiser(x, sigma)`` on every axial slice of ``(B, 1, D, H, W)``, ``max_slices`` at a time.

    ``mean``/``std`` map physical units to the prior's normalised units (``x_model = (x - mean) / std``);
    ``sigma`` is in physical units. Only one chunk of slices is inside the network at any time.
    """
    if int(max_slices) < 1:
        raise ValueError(f"max_slices must be >= 1; got {max_slices}")

    def denoise(x: Tensor, sigma: float) -> Tensor:
        b, c, d, h, w = x.shape
        flat = x.permute(0, 2, 1, 3, 4).reshape(b * d, c, h, w)
        out = []
        for chunk in flat.split(int(max_slices)):
            s = chunk.new_full((chunk.shape[0],), sigma / std)
            out.append(mean + std * denoiser((chunk - mean) / std, s))
        return torch.cat(out).reshape(b, d, c, h, w).permute(0, 2, 1, 3, 4)

    return denoise


def prior_units(denoiser) -> tuple[float, float]:
    """The normaliser of a trained :class:`~scidiff.priors.DiffusionPrior` (``(0, 1)`` for plain denoisers)."""
    if hasattr(denoiser, "norm_mean") and hasattr(denoiser, "norm_std"):
        if denoiser.norm_mean.numel() != 1:
            raise ValueError("the slice prior must have one channel")
        return float(denoiser.norm_mean), float(denoiser.norm_std)
    return 0.0, 1.0


def prior_sigma_range(denoiser, sigma_min: float | None, sigma_max: float | None, std: float) -> tuple[float, float]:
    """Noise range in physical units: given values, else the prior's own (its ``hparams``), else EDM's."""
    hp = getattr(denoiser, "hparams", None) or {}
    lo = float(sigma_min) if sigma_min is not None else float(hp.get("sigma_min", 0.002)) * std
    hi = float(sigma_max) if sigma_max is not None else float(hp.get("sigma_max", 80.0)) * std
    if not 0 < lo < hi:
        raise ValueError(f"need 0 < sigma_min < sigma_max; got {lo}, {hi}")
    return lo, hi
