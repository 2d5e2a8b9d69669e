"""NetCDF writing that never leaves a partial file looking complete."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_netcdf(ds, path) -> Path:
    """Write an ``xarray.Dataset`` to ``path`` via a temporary file in the same folder, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    try:
        ds.to_netcdf(tmp, engine="h5netcdf")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path
