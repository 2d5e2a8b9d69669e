"""scidiff.volumes.diagnostics: the range/null split is an exact orthogonal projection, the bands and the
edge/flat split add up to the MSE, and each part lands where it should on errors built to live there."""

import math

import pytest
import torch

from scidiff.likelihoods.volume import SliceMRI, SliceTomography
from scidiff.volumes.diagnostics import (
    edge_mask, error_bands, error_breakdown, orientation_psnr, range_null_split, row_space, slice_matrix,
    z_incoherence,
)


def _rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def ct():
    op = SliceTomography.sparse_view(3, 12)
    return op, row_space(op)


def test_slice_matrix_is_the_operator(ct):
    op, _ = ct
    x = _rand(1, 1, 3, 12, 12)
    m = slice_matrix(op)
    y = (x.reshape(3, -1).double() @ m.T).float()
    torch.testing.assert_close(y, op.A(x)[0, 0].reshape(3, -1), atol=1e-4, rtol=1e-4)


def test_range_null_split_is_orthogonal_and_null_part_is_unseen(ct):
    op, rows = ct
    assert 0 < rows.rank <= 3 * op.n_det and rows.rank < 144
    e = _rand(2, 1, 4, 12, 12, seed=1)
    r, n = range_null_split(rows, e)
    torch.testing.assert_close(r + n, e)
    assert abs(float((r * n).sum())) < 1e-4 * float(e.pow(2).sum())
    assert float(op.A(n).norm()) < 1e-4 * float(op.A(e).norm())  # the data do not see the null part
    torch.testing.assert_close(op.A(r), op.A(e), atol=1e-3, rtol=1e-3)
    torch.testing.assert_close(rows.project(r), r, atol=1e-5, rtol=1e-5)  # idempotent


def test_pinv_inverts_on_the_range(ct):
    op, rows = ct
    x = _rand(1, 1, 2, 12, 12, seed=2)
    torch.testing.assert_close(rows.pinv(op.A(x)), rows.project(x), atol=1e-4, rtol=1e-3)


def test_mri_null_space_is_the_unsampled_frequencies():
    mask = torch.zeros(8, 8)
    mask[:, :3] = 1  # centred k-space columns kx = -4, -3, -2
    op = SliceMRI(mask)
    rows = row_space(op)
    # real images: the Nyquist column kx = -4 is its own conjugate (8 real dims); kx = -3, -2 have their conjugates
    # unsampled, so each of their 16 complex values carries 2 real dims
    assert rows.rank == 8 + 2 * 16
    _, n = range_null_split(rows, _rand(1, 1, 2, 8, 8, seed=3))
    assert float(op.A(n).norm()) < 1e-5


def test_error_bands_add_up_and_find_the_frequency():
    truth = torch.zeros(1, 1, 2, 32, 32)
    x = torch.arange(32.0)
    rec = truth + 0.1 * torch.cos(2 * math.pi * 6 * x / 32)[None, :] * torch.ones(32, 1)  # k = 6 along one axis
    b = error_bands(rec, truth)
    assert sum(b.values()) == pytest.approx(float((rec - truth).pow(2).mean()), rel=1e-6)
    assert b["k4-8"] == pytest.approx(sum(b.values()), rel=1e-6)


def test_edge_mask_marks_both_sides_of_a_jump():
    truth = torch.zeros(1, 1, 1, 6, 6)
    truth[..., 3:] = 1.0
    mask = edge_mask(truth)
    assert mask[0, 0, 0, :, 2:4].all() and mask.sum() == 12
    assert edge_mask(truth, width=1)[0, 0, 0, :, 1:5].all()


def test_breakdown_parts_sum_to_the_mse(ct):
    op, rows = ct
    truth = torch.zeros(1, 1, 2, 12, 12)
    truth[..., 3:9, 3:9] = 1.0
    rec = (truth + 0.1 * _rand(1, 1, 2, 12, 12, seed=4)).clamp(0, 1)
    y = op.A(truth)
    b = error_breakdown(rec, truth, rows, physics=op, y=y)
    assert b["mse_range"] + b["mse_null"] == pytest.approx(b["mse"], rel=1e-5)
    assert b["mse_edge"] + b["mse_flat"] == pytest.approx(b["mse"], rel=1e-5)
    assert sum(v for k, v in b.items() if k.startswith("mse_k")) == pytest.approx(b["mse"], rel=1e-5)
    assert b["psnr"] == pytest.approx(10 * math.log10(1 / b["mse"]))
    assert 0 < b["data_residual"] < 1
    assert error_breakdown(truth, truth, rows, physics=op, y=y)["data_residual"] == 0


def test_z_incoherence_separates_slice_jumps_from_3d_errors():
    truth = torch.zeros(1, 1, 8, 8, 8)
    z, y, x = torch.meshgrid(*(torch.linspace(0, 1, 8),) * 3, indexing="ij")
    f = lambda t: torch.sin(3 * t)  # noqa: E731
    # the same profile along every axis of a cube: equal differences along z and in-plane
    assert z_incoherence((f(z) + f(y) + f(x))[None, None], truth) == pytest.approx(1.0)
    # constant along z: no jumps between slices
    assert z_incoherence((f(y) * f(x))[None, None], truth) == pytest.approx(0.0, abs=1e-12)
    # smooth within each slice, an independent offset per slice (slice inconsistency): far above 1
    offsets = _rand(8, 1, 1, seed=1)
    assert z_incoherence((0.1 * f(y) + offsets)[None, None], truth) > 5


def test_orientation_psnr_compares_the_same_voxels_in_the_object_box():
    # An object flat in y (rows 2-5 of 8) in air, the same error size in every object voxel and none in air.
    truth = torch.zeros(1, 1, 8, 8, 8)
    truth[..., 2:6, :] = 1.0
    rec = truth - 0.1 * (truth > 0)
    # Over the slices holding some object, axial and sagittal slices keep half their voxels in air (error 0),
    # coronal slices none: coronal scores 10 log10(2) dB lower with nothing differing between slices.
    plain = orientation_psnr(rec, truth, region="nonempty")
    assert plain["axial"] == pytest.approx(plain["sagittal"]) == pytest.approx(20 + 10 * math.log10(2), abs=1e-4)
    assert plain["coronal"] == pytest.approx(20.0, abs=1e-4)
    # The object's box: one voxel set, the same 20 dB in every orientation.
    box = orientation_psnr(rec, truth)
    assert box == pytest.approx({"axial": 20.0, "coronal": 20.0, "sagittal": 20.0}, abs=1e-4)


def test_orientation_psnr_shows_slice_inconsistency_as_a_lower_coronal_and_sagittal():
    # An error whose size changes from one axial slice to the next (c_k in slice k): each coronal or sagittal
    # slice holds all of them, so it scores the PSNR of the mean square, below the mean of the axial PSNRs.
    truth = torch.full((1, 1, 6, 6, 6), 0.2)
    truth[..., 1::2] = 0.8
    c = torch.tensor([0.01, 0.02, 0.05, 0.01, 0.03, 0.02])
    sign = torch.where(truth > 0.5, -1.0, 1.0)
    rec = truth + sign * c[:, None, None]
    m = orientation_psnr(rec, truth)
    peak2 = 0.6**2
    assert m["axial"] == pytest.approx(float((10 * torch.log10(peak2 / c**2)).mean()), abs=1e-3)
    coronal = 10 * math.log10(peak2 / float((c**2).mean()))
    assert m["coronal"] == pytest.approx(coronal, abs=1e-3) and m["sagittal"] == pytest.approx(coronal, abs=1e-3)
    assert m["axial"] - m["coronal"] > 1.0


def test_errors(ct):
    op, _ = ct
    with pytest.raises(ValueError, match="too large"):
        row_space(SliceTomography.sparse_view(2, 80))
    with pytest.raises(ValueError, match="one shape"):
        error_breakdown(torch.zeros(1, 1, 2, 12, 12), torch.zeros(1, 1, 3, 12, 12))
    with pytest.raises(ValueError, match="one shape"):
        z_incoherence(torch.zeros(1, 1, 2, 4, 4), torch.zeros(1, 1, 3, 4, 4))
    with pytest.raises(ValueError, match="volume"):
        edge_mask(torch.zeros(12, 12))
    with pytest.raises(ValueError, match="one shape"):
        orientation_psnr(torch.zeros(1, 1, 2, 4, 4), torch.zeros(1, 1, 3, 4, 4))
    with pytest.raises(ValueError, match="region"):
        orientation_psnr(torch.zeros(1, 1, 2, 4, 4), torch.ones(1, 1, 2, 4, 4), region="all")
    with pytest.raises(ValueError, match="nonzero"):
        orientation_psnr(torch.zeros(1, 1, 2, 4, 4), torch.zeros(1, 1, 2, 4, 4))
