import numpy as np
import pytest
import torch

from scidiff.inverse import Posterior


def test_weighted_moments_and_quantiles():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4000, 1, 3, generator=g, dtype=torch.float64)
    lw = torch.randn(4000, generator=g, dtype=torch.float64)
    post = Posterior(x, lw)
    w = torch.softmax(lw, 0).numpy()
    xn = x.numpy()
    mean = np.einsum("n,nij->ij", w, xn)
    assert np.allclose(post.mean().numpy(), mean)
    assert np.allclose(post.std().numpy(), np.sqrt(np.einsum("n,nij->ij", w, (xn - mean) ** 2)))
    q = post.quantile(torch.tensor([0.05, 0.5, 0.95]))
    assert q.shape == (3, 1, 3)
    # weighted quantile: fraction of weight below the 0.05 level is about 0.05
    below = (w[:, None, None] * (xn <= q[0].numpy())).sum(0)
    assert np.allclose(below, 0.05, atol=0.01)
    assert 1 < post.ess < 4000


def test_xarray_and_netcdf_roundtrip(tmp_path):
    post = Posterior(torch.randn(5, 1, 4, 6), ess_history=[5.0, 4.0], info={"method": "test", "nfe": 10})
    ds = post.to_xarray()
    assert ds["x"].dims == ("sample", "channel", "y", "x")
    post.save(tmp_path / "p.nc")
    back = Posterior.load(tmp_path / "p.nc")
    assert torch.allclose(back.samples, post.samples) and back.ess_history == [5.0, 4.0]
    assert back.info["method"] == "test"


def test_bad_weights_shape():
    with pytest.raises(ValueError, match="log_weights must have shape"):
        Posterior(torch.randn(5, 2), torch.zeros(4))
