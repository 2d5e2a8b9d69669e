"""3D volumes: generated phantoms, xarray views with voxel spacing, NIfTI and DICOM-series I/O."""

from .io import read_dicom_series, read_nifti, read_volume, to_xarray, write_dicom_series, write_nifti, write_volume
from .phantoms import MU_WATER_70KEV, TISSUE, make_slice_dataset, random_ellipsoids, shepp_logan_3d

__all__ = [
    "MU_WATER_70KEV",
    "TISSUE",
    "make_slice_dataset",
    "random_ellipsoids",
    "read_dicom_series",
    "read_nifti",
    "read_volume",
    "shepp_logan_3d",
    "to_xarray",
    "write_dicom_series",
    "write_nifti",
    "write_volume",
]
