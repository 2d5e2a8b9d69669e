"""Volumes as xarray with voxel spacing; NIfTI (nibabel) and DICOM-series (pydicom) readers and writers.

A volume in memory is an ``xarray.DataArray`` with dims ``("z", "y", "x")`` (axial slices first) and
coordinates at voxel centres in millimetres. Values are attenuation relative to water (``mu / mu_water``,
see :mod:`scidiff.volumes.phantoms`); DICOM stores Hounsfield units, ``HU = 1000 (mu / mu_water - 1)``, and
the readers convert back, recording the conversion in ``attrs``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from .._files import atomic_path


def to_xarray(volume, spacing: Sequence[float] = (1.0, 1.0, 1.0), *, origin=(0.0, 0.0, 0.0), name: str = "mu", attrs=None):
    """``(D, H, W)`` tensor/array (or ``(1, 1, D, H, W)``) -> ``DataArray`` on dims ``z, y, x`` with mm coordinates."""
    import xarray as xr

    v = volume.detach().cpu().numpy() if isinstance(volume, torch.Tensor) else np.asarray(volume)
    while v.ndim > 3 and v.shape[0] == 1:
        v = v[0]
    if v.ndim != 3:
        raise ValueError(f"a volume must be (D, H, W) (or (1, 1, D, H, W)); got shape {tuple(v.shape)}")
    spacing = tuple(float(s) for s in spacing)
    if len(spacing) != 3 or min(spacing) <= 0:
        raise ValueError(f"spacing must be three positive voxel sizes (dz, dy, dx) in mm; got {spacing}")
    coords = {
        d: (d, o + s * np.arange(n), {"units": "mm"}) for d, o, s, n in zip(("z", "y", "x"), origin, spacing, v.shape)
    }
    meta = {"long_name": "attenuation relative to water", "units": "1", **(attrs or {})}
    return xr.DataArray(v.astype(np.float32), dims=("z", "y", "x"), coords=coords, name=name, attrs=meta)


def spacing_of(da) -> tuple[float, float, float]:
    """Voxel sizes ``(dz, dy, dx)`` from the coordinates (1 mm for an axis of length one)."""
    out = []
    for d in ("z", "y", "x"):
        c = np.asarray(da[d].values, dtype=float)
        out.append(float(c[1] - c[0]) if c.size > 1 else 1.0)
    return tuple(out)


def write_nifti(da, path: str | Path) -> Path:
    """Write a ``(z, y, x)`` volume as NIfTI-1 (array axes ``x, y, z``; the affine carries spacing and origin)."""
    import nibabel as nib

    dz, dy, dx = spacing_of(da)
    affine = np.diag([dx, dy, dz, 1.0])
    affine[:3, 3] = [float(da.x[0]), float(da.y[0]), float(da.z[0])]
    img = nib.Nifti1Image(np.asarray(da.transpose("x", "y", "z").values, dtype=np.float32), affine)
    img.header.set_xyzt_units("mm")
    path = Path(path)
    with atomic_path(path) as tmp:
        # nibabel picks gzip from the file name, so give the temporary file the same suffixes
        tmp_named = tmp + "".join(path.suffixes)
        nib.save(img, tmp_named)
        Path(tmp_named).replace(tmp)
    return path


def read_nifti(path: str | Path, *, name: str = "mu"):
    """Read a NIfTI volume into a ``(z, y, x)`` DataArray with spacing and origin from the affine (axis-aligned)."""
    import nibabel as nib

    img = nib.load(str(path))
    data = np.asarray(img.dataobj, dtype=np.float32)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise ValueError(f"{path}: expected a 3D NIfTI volume; got array shape {data.shape}")
    affine = img.affine
    if not np.allclose(affine[:3, :3], np.diag(np.diag(affine[:3, :3]))):
        raise ValueError(f"{path}: oblique affine; resample to an axis-aligned grid before reconstructing")
    spacing = np.abs(np.diag(affine)[:3])
    origin = affine[:3, 3]
    return to_xarray(
        data.transpose(2, 1, 0), (spacing[2], spacing[1], spacing[0]), origin=(origin[2], origin[1], origin[0]),
        name=name, attrs={"source_file": str(path)},
    )


def write_dicom_series(da, folder: str | Path, *, patient_id: str = "PHANTOM", series_description: str = "scidiff") -> list[Path]:
    """Write one CT image per axial slice (Hounsfield units, int16 with rescale) into ``folder``."""
    from pydicom.dataset import FileMetaDataset, Dataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    dz, dy, dx = spacing_of(da)
    hu = np.clip(np.rint(1000.0 * (np.asarray(da.values, dtype=np.float64) - 1.0)), -1024, 32767 - 1024)
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    paths = []
    for k in range(hu.shape[0]):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.Modality, ds.PatientID, ds.SeriesDescription = "CT", patient_id, series_description
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [float(da.x[0]), float(da.y[0]), float(da.z[k])]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing = [dy, dx]
        ds.SliceThickness = dz
        ds.Rows, ds.Columns = hu.shape[1], hu.shape[2]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = -1024, 1, "HU"
        ds.PixelData = (hu[k] + 1024).astype(np.uint16).tobytes()
        path = folder / f"slice_{k:04d}.dcm"
        with atomic_path(path) as tmp:
            ds.save_as(tmp, enforce_file_format=True)
        paths.append(path)
    return paths


def read_dicom_series(folder: str | Path, *, name: str = "mu"):
    """Read every CT slice in ``folder`` (one series), sorted by position along z, as attenuation relative to water."""
    import pydicom

    files = sorted(p for p in Path(folder).iterdir() if p.is_file())
    slices = []
    for p in files:
        try:
            ds = pydicom.dcmread(p)
        except pydicom.errors.InvalidDicomError:
            continue
        if "PixelData" in ds:
            slices.append(ds)
    if not slices:
        raise ValueError(f"{folder}: no DICOM images found")
    series = {str(s.get("SeriesInstanceUID", "")) for s in slices}
    if len(series) > 1:
        raise ValueError(f"{folder}: holds {len(series)} series; put one series per folder")
    slices.sort(key=lambda s: float(s.ImagePositionPatient[2]))
    hu = np.stack([s.pixel_array * float(s.get("RescaleSlope", 1)) + float(s.get("RescaleIntercept", 0)) for s in slices])
    z = np.array([float(s.ImagePositionPatient[2]) for s in slices])
    dz = float(np.median(np.diff(z))) if len(z) > 1 else float(slices[0].get("SliceThickness", 1.0))
    dy, dx = (float(v) for v in slices[0].PixelSpacing)
    x0, y0 = (float(v) for v in slices[0].ImagePositionPatient[:2])
    return to_xarray(
        hu / 1000.0 + 1.0, (dz, dy, dx), origin=(z[0], y0, x0), name=name,
        attrs={"source_file": str(folder), "conversion": "mu/mu_water = HU/1000 + 1"},
    )


def read_volume(path: str | Path, *, variable: str | None = None):
    """Read a volume from NIfTI (``.nii``/``.nii.gz``), NetCDF (``.nc``) or a folder of DICOM files."""
    path = Path(path)
    if path.is_dir():
        return read_dicom_series(path)
    if path.name.endswith((".nii", ".nii.gz")):
        return read_nifti(path)
    if path.suffix == ".nc":
        import xarray as xr

        with xr.open_dataset(path) as ds:
            var = variable or next(iter(ds.data_vars))
            da = ds[var].load()
        if set(da.dims) != {"z", "y", "x"}:
            raise ValueError(f"{path}: variable {var!r} has dims {da.dims}; expected ('z', 'y', 'x')")
        return da.transpose("z", "y", "x")
    raise ValueError(f"{path}: unknown volume format; use .nii, .nii.gz, .nc or a DICOM folder")


def write_volume(da, path: str | Path) -> Path:
    """Write a volume as NIfTI or NetCDF, chosen by the file name."""
    path = Path(path)
    if path.name.endswith((".nii", ".nii.gz")):
        return write_nifti(da, path)
    if path.suffix == ".nc":
        with atomic_path(path) as tmp:
            da.to_dataset(name=da.name or "mu").to_netcdf(tmp, engine="h5netcdf")
        return path
    raise ValueError(f"{path}: unknown volume format; use .nii, .nii.gz or .nc")
