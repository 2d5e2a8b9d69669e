"""Random ellipse phantoms: CT-like attenuation images made in the project (no downloads).

Each phantom is a body ellipse (soft tissue) holding a few smaller ellipses (organs, lesions, bone) whose
attenuations add, as in the Shepp--Logan construction (Shepp & Logan 1974, IEEE Trans. Nucl. Sci. 21), with
random centres, axes, angles and intensities. Values are clipped to ``[0, 1]`` (attenuation relative to the
densest material), so a phantom is a non-negative image that a parallel-beam ``Tomography`` sees as usual.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from ..diffusion.random import Generator, rand


def _ellipse(yy: Tensor, xx: Tensor, cy, cx, ay, ax, theta) -> Tensor:
    """Indicator of ellipses with centres ``(cy, cx)``, semi-axes ``(ay, ax)`` and angle ``theta`` (each ``(n,)``)."""
    c, s = torch.cos(theta)[:, None, None], torch.sin(theta)[:, None, None]
    dy, dx = yy[None] - cy[:, None, None], xx[None] - cx[:, None, None]
    u, v = c * dx + s * dy, -s * dx + c * dy
    return ((u / ax[:, None, None]) ** 2 + (v / ay[:, None, None]) ** 2 <= 1.0).float()


def ellipse_phantoms(
    n: int, res: int = 32, *, num_inner: int = 5, generator: Generator = None, dtype: torch.dtype = torch.float32
) -> Tensor:
    """``n`` phantoms of shape ``(1, res, res)`` with values in ``[0, 1]``.

    Args:
        n: number of phantoms.
        res: side of the square grid on ``[-1, 1]^2``.
        num_inner: ellipses inside the body (each phantom draws between 1 and ``num_inner``).
        generator: ``None``, a ``torch.Generator`` or per-sample generators (a phantom then depends on its seed only).
    """
    if n < 1 or res < 4 or num_inner < 1:
        raise ValueError(f"need n >= 1, res >= 4 and num_inner >= 1; got n={n}, res={res}, num_inner={num_inner}")
    # All random numbers of a phantom in one draw: 6 for the body, 7 per inner ellipse (centre, axes, angle,
    # intensity, presence). Per-sample generators then give the same phantom whatever n is.
    u = rand((n, 6 + 7 * num_inner), generator, dtype=torch.float64)
    grid = torch.linspace(-1, 1, res, dtype=torch.float64)
    yy, xx = torch.meshgrid(grid, grid, indexing="ij")
    cy, cx = 0.1 * (u[:, 0] - 0.5), 0.1 * (u[:, 1] - 0.5)
    ay, ax = 0.7 + 0.2 * u[:, 2], 0.55 + 0.2 * u[:, 3]
    theta = (u[:, 4] - 0.5) * math.pi / 6
    body = _ellipse(yy, xx, cy, cx, ay, ax, theta)
    img = (0.3 + 0.2 * u[:, 5])[:, None, None] * body
    count = 1 + (u[:, 6] * num_inner).floor()  # number of inner ellipses, 1..num_inner
    for k in range(num_inner):
        v = u[:, 6 + 7 * k + 1 : 6 + 7 * (k + 1)]
        # centres inside the body, semi-axes 0.08--0.35 of the half-width
        r, phi = 0.6 * v[:, 0].sqrt(), 2 * math.pi * v[:, 1]
        ey, ex = cy + r * ay * torch.sin(phi), cx + r * ax * torch.cos(phi)
        eay, eax = 0.08 + 0.27 * v[:, 2], 0.08 + 0.27 * v[:, 3]
        angle = math.pi * v[:, 4]
        # intensities: mostly denser tissue, sometimes a darker cavity, rarely bone (1.0)
        value = torch.where(v[:, 5] > 0.9, torch.ones_like(v[:, 5]), 0.6 * v[:, 5] - 0.15)
        present = (k < count).double()
        img = img + (present * value)[:, None, None] * _ellipse(yy, xx, ey, ex, eay, eax, angle) * body
    return img.clamp(0.0, 1.0)[:, None].to(dtype)


def make_phantom_dataset(n: int = 2000, res: int = 32, *, num_inner: int = 5, seed: int = 0):
    """An ``xarray.Dataset`` of phantoms: variable ``mu`` (attenuation, dims ``(sample, y, x)``)."""
    import xarray as xr

    from .. import __version__

    n, res, num_inner, seed = int(n), int(res), int(num_inner), int(seed)
    mu = ellipse_phantoms(n, res, num_inner=num_inner, generator=torch.Generator().manual_seed(seed))[:, 0]
    coord = np.linspace(-1, 1, res)
    return xr.Dataset(
        {"mu": (("sample", "y", "x"), mu.numpy(), {"long_name": "relative attenuation", "units": "1"})},
        coords={"y": ("y", coord, {"units": "1"}), "x": ("x", coord, {"units": "1"})},
        attrs={
            "title": "random ellipse phantoms (Shepp-Logan-type construction)",
            "num_inner": num_inner,
            "seed": seed,
            "source": f"scidiff {__version__} scidiff.data.phantoms.make_phantom_dataset",
            "Conventions": "CF-1.10",
        },
    )

