import numpy as np
import pytest
import torch

from scidiff.volumes import (
    random_ellipsoids,
    read_dicom_series,
    read_nifti,
    read_volume,
    to_xarray,
    write_dicom_series,
    write_nifti,
    write_volume,
)


@pytest.fixture
def volume():
    return to_xarray(random_ellipsoids((4, 8, 6), generator=torch.Generator().manual_seed(0)), (2.5, 1.0, 0.5), origin=(10, -4, 3))


@pytest.mark.parametrize("name", ["v.nii", "v.nii.gz", "v.nc"])
def test_roundtrip_nifti_netcdf(tmp_path, volume, name):
    path = write_volume(volume, tmp_path / name)
    back = read_volume(path)
    np.testing.assert_array_equal(back.values, volume.values)
    for d in ("z", "y", "x"):
        np.testing.assert_allclose(back[d].values, volume[d].values, atol=1e-5)


def test_nifti_axes(tmp_path, volume):
    import nibabel as nib

    write_nifti(volume, tmp_path / "v.nii.gz")
    img = nib.load(str(tmp_path / "v.nii.gz"))
    assert img.shape == (6, 8, 4)  # x, y, z
    np.testing.assert_allclose(img.header.get_zooms(), (0.5, 1.0, 2.5))
    assert read_nifti(tmp_path / "v.nii.gz").dims == ("z", "y", "x")


def test_dicom_series_roundtrip_in_hounsfield_units(tmp_path, volume):
    paths = write_dicom_series(volume, tmp_path / "dcm")
    assert len(paths) == 4
    back = read_dicom_series(tmp_path / "dcm")
    # stored as integer HU: one HU is 1e-3 relative attenuation
    np.testing.assert_allclose(back.values, volume.values, atol=5.1e-4)
    np.testing.assert_allclose(back.z.values, volume.z.values)
    assert "HU" in back.attrs["conversion"]


def test_errors(tmp_path):
    with pytest.raises(ValueError, match=r"\(D, H, W\)"):
        to_xarray(torch.zeros(4, 4))
    with pytest.raises(ValueError, match="spacing"):
        to_xarray(torch.zeros(2, 2, 2), (1, 0, 1))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no DICOM"):
        read_dicom_series(tmp_path / "empty")
    with pytest.raises(ValueError, match="unknown volume format"):
        read_volume(tmp_path / "v.mat")
