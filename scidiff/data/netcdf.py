"""NetCDF writing that never leaves a partial file looking complete."""

from __future__ import annotations

from pathlib import Path

from .._files import atomic_path


def write_netcdf(ds, path) -> Path:
    """Write an ``xarray.Dataset`` to ``path`` via a temporary file in the same folder, then rename."""
    with atomic_path(path) as tmp:
        ds.to_netcdf(tmp, engine="h5netcdf")
    return Path(path)
