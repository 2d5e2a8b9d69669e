"""A PNG of the orthogonal mid-slices (axial, coronal, sagittal) of one or more volumes."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .._files import atomic_path


def _numpy(v) -> np.ndarray:
    if hasattr(v, "detach"):  # a torch tensor (whose .values is a method, not the data)
        v = v.detach().cpu().numpy()
    elif hasattr(v, "dims"):  # an xarray DataArray
        v = v.values
    return np.asarray(v, dtype=np.float32).squeeze()


def orthogonal_slices_png(volumes: dict, path: str | Path, *, vmin: float | None = None, vmax: float | None = None,
                          own_scale: tuple[str, ...] = ()) -> Path:
    """One row per volume (``{"title": (D, H, W) array or DataArray}``), columns axial / coronal / sagittal; all rows
    share the first volume's grey scale except those titled in ``own_scale`` (e.g. an uncertainty map)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arrays = {k: _numpy(v) for k, v in volumes.items()}
    for k, a in arrays.items():
        if a.ndim != 3:
            raise ValueError(f"volume {k!r} must be (D, H, W); got shape {a.shape}")
    first = next(iter(arrays.values()))
    lo = float(first.min()) if vmin is None else vmin
    hi = float(first.max()) if vmax is None else vmax
    fig, axes = plt.subplots(len(arrays), 3, figsize=(7.5, 2.6 * len(arrays)), squeeze=False)
    for row, (title, a) in zip(axes, arrays.items()):
        d, h, w = a.shape
        views = {"axial": a[d // 2], "coronal": a[:, h // 2], "sagittal": a[:, :, w // 2]}
        scale = (float(a.min()), float(a.max())) if title in own_scale else (lo, hi)
        for ax, (name, img) in zip(row, views.items()):
            ax.imshow(img, cmap="gray", vmin=scale[0], vmax=scale[1], origin="upper", aspect="auto")
            ax.set_xticks([]), ax.set_yticks([])
            ax.set_title(f"{title} - {name}", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path
