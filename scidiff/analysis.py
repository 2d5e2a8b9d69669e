"""Diagnostics for generated fields: radially averaged power spectra."""

from __future__ import annotations

import torch
from torch import Tensor


def radial_power_spectrum(fields: Tensor) -> tuple[Tensor, Tensor]:
    """Mean radially averaged power spectrum of periodic 2D fields ``(N, H, W)`` or ``(N, 1, H, W)``.

    Returns integer wavenumbers ``k = 0 .. min(H, W) // 2`` and the power in each shell, normalised so that
    the sum over all Fourier modes equals the mean of ``u^2`` per pixel (Parseval).
    """
    if fields.ndim == 4:
        fields = fields[:, 0]
    if fields.ndim != 3:
        raise ValueError(f"expected fields of shape (N, H, W) or (N, 1, H, W); got {tuple(fields.shape)}")
    h, w = fields.shape[-2:]
    power = torch.fft.fft2(fields.double()).abs().pow(2).mean(0) / (h * w) ** 2
    ky = torch.fft.fftfreq(h, d=1.0 / h)
    kx = torch.fft.fftfreq(w, d=1.0 / w)
    shell = torch.sqrt(ky[:, None] ** 2 + kx[None] ** 2).round().long()
    kmax = min(h, w) // 2
    k = torch.arange(kmax + 1)
    spec = torch.stack([power[shell == kk].sum() for kk in k])
    return k, spec
