"""Where a volume reconstruction's error lives: by spatial frequency, in the range or the null space of the
operator, at edges or in flat regions.

These answer "what limits the gain of a prior over TV?": a prior can only act on the part of the error the data
do not fix. For a slice-wise operator ``A`` the error ``e = x_rec - x_true`` splits orthogonally into its
*range* part ``P_R e`` (the row space of ``A``: what the measurements see, fixed by data consistency up to the
measurement/model error) and its *null-space* part ``P_N e = e - P_R e`` (invisible to ``A``: only a prior can
reduce it). The projector comes from the SVD of the explicit 2D slice matrix (small slices only), so the split
is exact, not a CG approximation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor



def _check_pair(rec: Tensor, truth: Tensor) -> None:
    if not isinstance(rec, Tensor) or rec.ndim != 5 or rec.shape != truth.shape:
        raise ValueError(f"rec and truth must be volumes (B, 1, D, H, W) of one shape; got "
                         f"{tuple(getattr(rec, 'shape', ()))} and {tuple(truth.shape)}")


@dataclass
class RowSpace:
    """An orthonormal basis ``V (H W, r)`` of the row space of a slice-wise operator's 2D matrix, its singular
    values ``s (r,)`` and left singular vectors ``U (m, r)``; ``rank / (H W)`` is the fraction of each slice the data determine."""

    V: Tensor  # noqa: N815
    s: Tensor
    U: Tensor  # noqa: N815
    slice_shape: tuple[int, int]

    @property
    def rank(self) -> int:
        return self.V.shape[1]

    def project(self, v: Tensor) -> Tensor:
        """``P_R v`` for volumes ``(B, C, D, H, W)`` (every axial slice projected)."""
        flat = v.reshape(-1, self.V.shape[0]).double()
        return ((flat @ self.V) @ self.V.T).to(v.dtype).reshape(v.shape)

    def pinv(self, r: Tensor) -> Tensor:
        """``A^+ r = V S^-1 U^T r`` (``A = U S V^T``, in float64) for measurements ``(B, C, D, a, b)``: the
        minimum-norm volume ``(B, 1, D, H, W)`` whose measurements best fit ``r``."""
        b, c, d = r.shape[:3]
        flat = r.permute(0, 2, 1, 3, 4).reshape(b * d, -1).double()  # rows ordered as slice_matrix's
        x = ((flat @ self.U) / self.s) @ self.V.T
        return x.to(r.dtype).reshape(b, d, 1, *self.slice_shape).permute(0, 2, 1, 3, 4)


def row_space(physics, rtol: float = 1e-6, max_pixels: int = 4096) -> RowSpace:
    """The row space of ``physics``'s 2D slice operator, from the SVD of its matrix (built by applying ``A`` to
    every unit slice; one column per pixel). Singular values below ``rtol`` times the largest count as zero.
    At 8 views on 64 x 64 slices the spectrum has a clear gap (0.9 then 3e-14, relative 1e-15), so the rank
    does not depend on ``rtol`` over many decades."""
    u, s, vh = torch.linalg.svd(slice_matrix(physics, max_pixels), full_matrices=False)
    keep = s > rtol * s[0]
    return RowSpace(vh[keep].T.contiguous(), s[keep], u[:, keep].contiguous(), tuple(physics.slice_shape))


def slice_matrix(physics, max_pixels: int = 4096) -> Tensor:
    """The matrix ``(m, H W)`` (float64) of a slice-wise operator's 2D map, one column per pixel (``A`` applied to
    every unit slice at once: the unit slices are the slices of one tall volume)."""
    h, w = physics.slice_shape
    n = h * w
    if n > max_pixels:
        raise ValueError(f"slices of {h} x {w} = {n} pixels are too large for an explicit matrix (max_pixels={max_pixels})")
    cols = physics.A(torch.eye(n).reshape(1, 1, n, h, w))  # (1, C, n, a, b): slice k is A of unit pixel k
    return cols[0].transpose(0, 1).reshape(n, -1).T.double()


def range_null_split(rows: RowSpace, e: Tensor) -> tuple[Tensor, Tensor]:
    """``(P_R e, P_N e)``: the parts of ``e`` the operator sees and does not see; they sum to ``e`` and are orthogonal."""
    r = rows.project(e)
    return r, e - r


def edge_mask(truth: Tensor, rel: float = 0.01, width: int = 0) -> Tensor:
    """Voxels on either side of an in-plane jump (and ``width`` voxels more) of a jump of ``truth`` larger than ``rel`` times its range: where
    partial-volume values and edge placement dominate. Boolean, shaped like ``truth``."""
    if truth.ndim != 5:
        raise ValueError(f"truth must be a volume (B, 1, D, H, W); got {tuple(truth.shape)}")
    thr = rel * float(truth.max() - truth.min())
    jump = torch.zeros_like(truth, dtype=torch.bool)
    jump[..., 1:, :] |= (truth.diff(dim=-2).abs() > thr)
    jump[..., :-1, :] |= (truth.diff(dim=-2).abs() > thr)
    jump[..., :, 1:] |= (truth.diff(dim=-1).abs() > thr)
    jump[..., :, :-1] |= (truth.diff(dim=-1).abs() > thr)
    if width > 0:
        b, c, d, h, w = truth.shape
        flat = jump.reshape(b * c * d, 1, h, w).float()
        jump = torch.nn.functional.max_pool2d(flat, 2 * width + 1, stride=1, padding=width).bool().reshape(truth.shape)
    return jump


#: Radial wavenumber bands (cycles per slice width) for :func:`error_bands`; at 64 x 64 slices k = 4 is a
#: structure of 16 voxels, k = 16 one of 4 voxels, k = 32 the Nyquist limit.
BANDS = ((0, 4), (4, 8), (8, 16), (16, 64))


def error_spectrum(rec: Tensor, truth: Tensor) -> tuple[Tensor, Tensor]:
    """Radially averaged power spectrum of the error over all axial slices: shells ``k = round(|k|)`` up to the
    corner of the Fourier square (unlike :func:`scidiff.analysis.radial_power_spectrum`, which stops at the
    inscribed circle), normalised so that the sum over shells is the mean squared error per voxel (Parseval)."""
    _check_pair(rec, truth)
    e = (rec - truth).double().reshape(-1, *rec.shape[-2:])
    h, w = e.shape[-2:]
    power = torch.fft.fft2(e).abs().pow(2).mean(0) / (h * w) ** 2
    ky, kx = torch.fft.fftfreq(h, d=1.0 / h), torch.fft.fftfreq(w, d=1.0 / w)
    shell = torch.sqrt(ky[:, None] ** 2 + kx[None] ** 2).round().long()
    k = torch.arange(int(shell.max()) + 1)
    return k, torch.zeros(len(k), dtype=power.dtype).index_add_(0, shell.flatten(), power.flatten())


def error_bands(rec: Tensor, truth: Tensor, bands=BANDS) -> dict[str, float]:
    """Mean squared error per voxel in each band ``[k_lo, k_hi)`` of radial wavenumber (they sum to the MSE)."""
    k, spec = error_spectrum(rec, truth)
    return {f"k{lo}-{hi}": float(spec[(k >= lo) & (k < hi)].sum()) for lo, hi in bands}


def z_incoherence(rec: Tensor, truth: Tensor) -> float:
    """How much the error jumps between neighbouring axial slices against how much it varies within a slice:
    ``rms(D_z e) / rms(D_xy e)``, ``e = rec - truth``, ``D`` forward differences (in-plane: both axes pooled).

    The slice inconsistency that DiffusionMBIR's z-prior targets (Chung et al. 2023, sec. 3) is an error that
    is smooth within each slice but independent from one slice to the next: the ratio is then large. An error
    field that looks the same along every axis gives 1, one constant along z gives 0. A 3D method with no
    slices (ADMM-TV) gives the level the object's own anisotropy sets, the reference to compare against."""
    _check_pair(rec, truth)
    e = (rec - truth).double()
    dz = e.diff(dim=2).pow(2).mean()
    dxy = 0.5 * (e.diff(dim=3).pow(2).mean() + e.diff(dim=4).pow(2).mean())
    return float(torch.sqrt(dz / dxy.clamp_min(1e-300)))


ORIENTATIONS = {"axial": 2, "coronal": 3, "sagittal": 4}  # the axis each orientation's slices are taken along


def orientation_psnr(rec: Tensor, truth: Tensor, *, region: str = "box", data_range: float | None = None
                     ) -> dict[str, float]:
    """Mean slice PSNR of ``rec`` (clamped to ``truth``'s range) over the axial, coronal and sagittal slices.

    Comparing the three shows slice inconsistency (Chung et al. 2023, fig. 1): an error whose size changes from
    one axial slice to the next is spread evenly over every coronal and sagittal slice, and a mean of logarithms
    is lower for even errors (Jensen), so those views score lower than axial. The comparison is fair only over
    the same voxels, which ``region`` sets:

    * ``"box"``: the bounding box of ``truth != 0`` (the object), one voxel set for all three orientations;
    * ``"nonempty"``: every slice with some ``truth > 0``. Slices all in air drop out, so each orientation keeps
      other voxels: when the object is flatter along y than along z, coronal slices lose the air that axial
      slices keep, and a method whose error lies inside the object (a prior that knows air is zero) scores
      lower on them although nothing differs between slices.

    ``data_range`` defaults to ``truth.max() - truth.min()``. Returns ``{"axial": dB, "coronal": dB, "sagittal": dB}``
    (slice PSNRs averaged over slices and batch items)."""
    _check_pair(rec, truth)
    if region not in ("box", "nonempty"):
        raise ValueError(f"region must be 'box' or 'nonempty'; got {region!r}")
    lo, hi = float(truth.min()), float(truth.max())
    peak = hi - lo if data_range is None else float(data_range)
    rec = rec.clamp(lo, hi)
    per_slice = {name: [] for name in ORIENTATIONS}
    for v, t in zip(rec[:, 0], truth[:, 0]):
        if region == "box":
            inside = (t != 0).nonzero()
            if not len(inside):
                raise ValueError("region='box' needs a truth with some nonzero voxels in every volume")
            box = tuple(slice(int(a), int(b) + 1) for a, b in zip(inside.amin(0), inside.amax(0)))
            v, t = v[box], t[box]
        for name, axis in ORIENTATIONS.items():
            a, b = v.movedim(axis - 2, 0).flatten(1), t.movedim(axis - 2, 0).flatten(1)
            keep = b.amax(1) > 0 if region == "nonempty" else torch.ones(len(b), dtype=torch.bool)
            mse = (a[keep] - b[keep]).pow(2).mean(1).clamp_min(1e-12)
            per_slice[name].append(10 * torch.log10(peak**2 / mse))
    return {name: torch.cat(p).mean().item() for name, p in per_slice.items()}


def psnr_of_mse(mse: float, peak: float) -> float:
    return 10 * math.log10(peak**2 / max(mse, 1e-30))


def error_breakdown(rec: Tensor, truth: Tensor, rows: RowSpace | None = None, *, physics=None, y: Tensor | None = None,
                    bands=BANDS) -> dict[str, float]:
    """The MSE of ``rec`` (clamped to ``truth``'s range, as the benchmark's PSNR) and how it splits: frequency bands
    (``mse_k*``), range / null space of the operator (``mse_range``, ``mse_null``; needs ``rows``), edge / flat
    voxels (``mse_edge``, ``mse_flat``: contributions to the total MSE, so they sum to it; ``edge_fraction`` of the
    voxels are edges), and the data residual ``|A rec - y| / |y|`` when ``physics`` and ``y`` are given."""
    _check_pair(rec, truth)
    lo, hi = float(truth.min()), float(truth.max())
    rec = rec.clamp(lo, hi)
    e = (rec - truth).double()
    n = e.numel()
    out = {"mse": float(e.pow(2).mean()), "psnr": psnr_of_mse(float(e.pow(2).mean()), hi - lo)}
    out.update({f"mse_{b}": v for b, v in error_bands(rec, truth, bands).items()})
    if rows is not None:
        e_r, e_n = range_null_split(rows, e)
        out["mse_range"], out["mse_null"] = float(e_r.pow(2).sum() / n), float(e_n.pow(2).sum() / n)
    mask = edge_mask(truth)
    out["edge_fraction"] = float(mask.double().mean())
    out["mse_edge"] = float(e[mask].pow(2).sum() / n)
    out["mse_flat"] = float(e[~mask].pow(2).sum() / n)
    if physics is not None and y is not None:
        out["data_residual"] = float((physics.A(rec) - y).norm() / y.norm())
    return out
