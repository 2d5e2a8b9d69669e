"""3D phantoms the project generates: a Shepp--Logan-like head and seeded random-ellipsoid volumes.

Volumes are tensors ``(D, H, W)`` (axial slices along the first axis) or xarray ``DataArray`` with dims
``("z", "y", "x")`` and voxel-centre coordinates in millimetres (see :func:`to_xarray`). Values are linear
attenuation coefficients relative to water, ``mu / mu_water`` (water 1, air 0, cortical bone about 1.9 at
70 keV), or in ``1/cm`` with ``units="mu"``. Every random function takes ``generator=``.

Ellipsoids are evaluated on a ``supersample``-times finer grid and averaged, so edges carry partial-volume
values; simulate measurements on a finer grid than the reconstruction grid to avoid the inverse crime.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from ..diffusion.random import Generator, rand

#: Linear attenuation of water at 70 keV in 1/cm (NIST XCOM, Hubbell & Seltzer 2004).
MU_WATER_70KEV = 0.193

# Attenuation relative to water at ~70 keV (ICRU 44 compositions via NIST XCOM); bone is cortical bone.
TISSUE = {"air": 0.0, "fat": 0.91, "water": 1.0, "csf": 1.0, "white": 1.02, "grey": 1.04, "blood": 1.05, "bone": 1.9}

# 3D Shepp--Logan head (Kak & Slaney 1988, Table 3.2 geometry; 3D extension of Shepp & Logan 1974),
# each ellipsoid given as (tissue the region becomes, centre x, y, z, semi-axes a, b, c, rotation about z in degrees).
# Regions are painted in order, so each one *sets* its tissue rather than adding the original grey-level increments.
_SHEPP_LOGAN = (
    ("bone", 0.0, 0.0, 0.0, 0.69, 0.92, 0.90, 0.0),
    ("grey", 0.0, -0.0184, 0.0, 0.6624, 0.874, 0.88, 0.0),
    ("csf", 0.22, 0.0, 0.0, 0.11, 0.31, 0.22, -18.0),
    ("csf", -0.22, 0.0, 0.0, 0.16, 0.41, 0.28, 18.0),
    ("white", 0.0, 0.35, -0.15, 0.21, 0.25, 0.41, 0.0),
    ("blood", 0.0, 0.1, 0.25, 0.046, 0.046, 0.05, 0.0),
    ("blood", 0.0, -0.1, 0.25, 0.046, 0.046, 0.05, 0.0),
    ("white", -0.08, -0.605, 0.0, 0.046, 0.023, 0.05, 0.0),
    ("white", 0.0, -0.605, 0.0, 0.023, 0.023, 0.02, 0.0),
    ("white", 0.06, -0.605, 0.0, 0.023, 0.046, 0.02, 0.0),
)


def _axes(shape: Sequence[int], supersample: int) -> list[Tensor]:
    """Voxel-centre coordinates in [-1, 1] per axis (z, y, x) on a grid ``supersample`` times finer than ``shape``."""
    return [(torch.arange(n * supersample, dtype=torch.float32) + 0.5) / (n * supersample) * 2 - 1 for n in shape]


def _window(axis: Tensor, centre: float, half: float) -> slice:
    lo = int(torch.searchsorted(axis, torch.tensor(centre - half, dtype=axis.dtype)))
    hi = int(torch.searchsorted(axis, torch.tensor(centre + half, dtype=axis.dtype), right=True))
    return slice(lo, hi)


def _paint(v: Tensor, axes: list[Tensor], centre, semi, theta_deg: float, value: float, inside: Tensor | None = None):
    """Set ``v`` to ``value`` inside an ellipsoid rotated by ``theta`` about z, touching only its bounding box."""
    cx, cy, cz = centre
    a, b, c = semi
    t = math.radians(theta_deg)
    ct, st = math.cos(t), math.sin(t)
    half_x, half_y = math.hypot(a * ct, b * st), math.hypot(a * st, b * ct)
    box = (_window(axes[0], cz, c), _window(axes[1], cy, half_y), _window(axes[2], cx, half_x))
    z, y, x = (ax[s] for ax, s in zip(axes, box))
    if min(len(z), len(y), len(x)) == 0:
        return
    xs, ys = x[None, None, :] - cx, y[None, :, None] - cy
    xr, yr = xs * ct + ys * st, -xs * st + ys * ct
    mask = (xr / a) ** 2 + (yr / b) ** 2 + ((z[:, None, None] - cz) / c) ** 2 <= 1
    if inside is not None:
        mask = mask & inside[box]
    v[box][mask] = value


def _downsample(v: Tensor, k: int) -> Tensor:
    if k == 1:
        return v
    return torch.nn.functional.avg_pool3d(v[None, None], k)[0, 0]


def _check_shape(shape) -> tuple[int, int, int]:
    if isinstance(shape, int):
        shape = (shape, shape, shape)
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) < 2:
        raise ValueError(f"shape must be an int or (D, H, W) with every size >= 2; got {shape}")
    return shape


def _units(v: Tensor, units: str) -> Tensor:
    if units == "relative":
        return v
    if units == "mu":
        return v * MU_WATER_70KEV
    raise ValueError(f"units must be 'relative' (mu / mu_water) or 'mu' (1/cm); got {units!r}")


def shepp_logan_3d(
    shape: int | Sequence[int] = 64, *, supersample: int = 2, units: str = "relative", dtype=torch.float32
) -> Tensor:
    """The 3D Shepp--Logan head as ``(D, H, W)``, with tissue attenuation instead of the original grey levels.

    The ellipsoids are those of Kak & Slaney (1988); each region is assigned a tissue of :data:`TISSUE`
    (skull = cortical bone, ventricles = CSF, ...), so the contrasts are those a CT scanner sees: a few
    percent between soft tissues, nearly 2x for bone.
    """
    shape = _check_shape(shape)
    axes = _axes(shape, supersample)
    v = torch.zeros(*(len(a) for a in axes))
    for tissue, cx, cy, cz, a, b, c, theta in _SHEPP_LOGAN:
        # the table's y axis points up (anterior); image rows run downwards
        _paint(v, axes, (cx, -cy, cz), (a, b, c), -theta, TISSUE[tissue])
    return _units(_downsample(v, supersample), units).to(dtype)


def random_ellipsoids(
    shape: int | Sequence[int] = 64,
    *,
    n_ellipsoids: int = 30,
    supersample: int = 2,
    units: str = "relative",
    generator: Generator = None,
    dtype=torch.float32,
) -> Tensor:
    """A seeded random phantom ``(D, H, W)``: a body of soft tissue in a bony shell with ``n_ellipsoids`` inclusions.

    Inclusions are elongated along z (semi-axis 0.1--0.5 against 0.03--0.3 in-plane) so neighbouring axial
    slices are correlated, as in anatomy; each sets its region to an attenuation drawn between fat and
    bone-like values. All draws come from ``generator`` (one ``torch.Generator``), so a seed gives one volume.
    """
    shape = _check_shape(shape)
    if n_ellipsoids < 0:
        raise ValueError(f"n_ellipsoids must be >= 0; got {n_ellipsoids}")
    axes = _axes(shape, supersample)
    u = rand((6 + 8 * n_ellipsoids,), generator, dtype=torch.float64).tolist()
    # Body: an elliptic cylinder-like ellipsoid with a cortical shell of random thickness.
    a, b = 0.75 + 0.15 * u[0], 0.6 + 0.2 * u[1]
    shell = 0.04 + 0.04 * u[2]
    v = torch.zeros(*(len(ax) for ax in axes))
    _paint(v, axes, (0, 0, 0), (a, b, 1.3), 30 * (u[3] - 0.5), TISSUE["bone"])
    _paint(v, axes, (0, 0, 0), (a - shell, b - shell, 1.3 - shell), 30 * (u[3] - 0.5), TISSUE["white"])
    inner = v == TISSUE["white"]
    for k in range(n_ellipsoids):
        r = u[6 + 8 * k : 14 + 8 * k]
        centre = ((2 * r[0] - 1) * (a - 0.2), (2 * r[1] - 1) * (b - 0.2), 2 * r[2] - 1)
        semi = (0.03 + 0.27 * r[3], 0.03 + 0.27 * r[4], 0.1 + 0.4 * r[5])
        value = TISSUE["fat"] + (TISSUE["bone"] - TISSUE["fat"]) * r[6] ** 2  # mostly soft tissue, some dense
        _paint(v, axes, centre, semi, 180 * r[7], value, inside=inner)
    return _units(_downsample(v, supersample), units).to(dtype)


def make_slice_dataset(
    n_volumes: int = 16, res: int = 32, depth: int | None = None, *, n_ellipsoids: int = 30, seed: int = 0, **_
):
    """Axial slices of ``n_volumes`` random-ellipsoid volumes as an ``xarray.Dataset`` (variable ``mu``,
    dims ``(sample, y, x)``) -- the training set of the 2D slice prior used by DiffusionMBIR and DDS."""
    import numpy as np
    import xarray as xr

    from .. import __version__

    n_volumes, res, seed = int(n_volumes), int(res), int(seed)
    depth = res if depth is None else int(depth)
    g = torch.Generator().manual_seed(seed)
    vols = [random_ellipsoids((depth, res, res), n_ellipsoids=int(n_ellipsoids), generator=g) for _ in range(n_volumes)]
    slices = torch.cat(vols).numpy()
    coord = (np.arange(res) + 0.5) / res * 2 - 1
    return xr.Dataset(
        {"mu": (("sample", "y", "x"), slices, {"long_name": "attenuation relative to water", "units": "1"})},
        coords={"y": ("y", coord), "x": ("x", coord)},
        attrs={
            "title": "axial slices of seeded random-ellipsoid phantoms",
            "n_volumes": n_volumes,
            "depth": depth,
            "seed": seed,
            "source": f"scidiff {__version__} scidiff.volumes.phantoms.make_slice_dataset",
            "Conventions": "CF-1.10",
        },
    )
