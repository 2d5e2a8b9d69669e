import pytest
import torch

from scidiff.volumes import TISSUE, make_slice_dataset, random_ellipsoids, shepp_logan_3d


def test_shepp_logan_tissues_and_symmetry():
    v = shepp_logan_3d(32)
    assert v.shape == (32, 32, 32)
    # attenuation of air .. cortical bone, skull present, brain values inside
    assert float(v.min()) == 0.0 and float(v.max()) == pytest.approx(TISSUE["bone"])
    # the two ventricles (x = +-0.22 in the unit head) hold CSF; the brain around them grey matter
    assert float(v[16, 16, 19]) == pytest.approx(TISSUE["csf"]) and float(v[16, 16, 12]) == pytest.approx(TISSUE["csf"])
    assert float(v[16, 16, 16]) == pytest.approx(TISSUE["grey"])


def test_random_ellipsoids_seeded_and_partial_volume():
    a = random_ellipsoids((8, 16, 16), generator=torch.Generator().manual_seed(3))
    b = random_ellipsoids((8, 16, 16), generator=torch.Generator().manual_seed(3))
    c = random_ellipsoids((8, 16, 16), generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert 0 <= float(a.min()) and float(a.max()) <= TISSUE["bone"] + 1e-6
    # supersampling leaves partial-volume values between tissue levels on edges
    levels = torch.tensor(sorted(set(TISSUE.values())))
    off = (a.flatten()[:, None] - levels[None]).abs().min(1).values > 1e-3
    assert off.any()


def test_units_mu():
    assert torch.allclose(shepp_logan_3d(8, units="mu"), 0.193 * shepp_logan_3d(8))


@pytest.mark.parametrize("bad", [(8, 8), (1, 8, 8), (8, 8, 8, 8)])
def test_bad_shape(bad):
    with pytest.raises(ValueError, match="shape"):
        shepp_logan_3d(bad)


def test_bad_units():
    with pytest.raises(ValueError, match="units"):
        shepp_logan_3d(8, units="hu")


def test_slice_dataset():
    ds = make_slice_dataset(n_volumes=2, res=8, depth=4, seed=1)
    assert ds.mu.shape == (8, 8, 8) and ds.mu.dims == ("sample", "y", "x")
    assert make_slice_dataset(n_volumes=2, res=8, depth=4, seed=1).mu.equals(ds.mu)
