"""Small tensor helpers shared by every sampler: broadcasting sigma and validating inputs."""

from __future__ import annotations

import torch
from torch import Tensor


def append_dims(x: Tensor, ndim: int) -> Tensor:
    """Append trailing singleton dims so ``x`` broadcasts against a tensor of rank ``ndim``.

    This is what lets one sampler run on 1D signals, 2D fields and 3D volumes alike.
    """
    missing = ndim - x.ndim
    if missing < 0:
        raise ValueError(f"cannot broadcast a rank-{x.ndim} tensor to rank {ndim}")
    return x.reshape(*x.shape, *(1,) * missing)


def as_sigma_batch(sigma: Tensor | float, x: Tensor) -> Tensor:
    """Return sigma as a ``(B,)`` tensor on ``x``'s device and dtype.

    Accepts a Python float, a 0-d tensor or a ``(B,)`` tensor; anything else is an error, since a
    silently broadcast ``(B, 1)`` sigma is a classic source of wrong results.
    """
    batch = x.shape[0]
    sigma = torch.as_tensor(sigma, device=x.device, dtype=x.dtype)
    if sigma.ndim == 0:
        sigma = sigma.expand(batch)
    if sigma.shape != (batch,):
        raise ValueError(
            f"sigma must be a scalar or have shape ({batch},) to match x of shape {tuple(x.shape)}; "
            f"got shape {tuple(sigma.shape)}"
        )
    # Values are checked where that costs no device sync: on the host. Samplers pass host floats from a
    # validated schedule, so an accelerator run skips a redundant round trip per network call.
    if sigma.device.type == "cpu" and (not torch.isfinite(sigma).all() or (sigma < 0).any()):
        raise ValueError("sigma must be finite and non-negative")
    return sigma


def check_finite(x: Tensor, name: str = "x") -> None:
    """Raise a ValueError naming ``name`` if it holds NaN or inf."""
    if not torch.isfinite(x).all():
        bad = (~torch.isfinite(x)).sum().item()
        raise ValueError(f"{name} contains {bad} non-finite value(s) (NaN or inf)")


def check_sigmas(sigmas: Tensor) -> Tensor:
    """Validate a noise schedule: 1D, finite, non-negative, strictly decreasing."""
    sigmas = torch.as_tensor(sigmas)
    if sigmas.ndim != 1 or sigmas.numel() < 2:
        raise ValueError(f"sigmas must be a 1D tensor with at least 2 entries; got shape {tuple(sigmas.shape)}")
    check_finite(sigmas, "sigmas")
    if (sigmas < 0).any():
        raise ValueError("sigmas must be non-negative")
    if not (sigmas[1:] < sigmas[:-1]).all():
        raise ValueError("sigmas must be strictly decreasing (from sigma_max down to sigma_min or 0)")
    return sigmas


def host_sigmas(sigmas: Tensor) -> list[float]:
    """The validated schedule as Python floats, read once on the host (no device sync inside sampling loops)."""
    return [float(s) for s in check_sigmas(torch.as_tensor(sigmas).detach().cpu())]
