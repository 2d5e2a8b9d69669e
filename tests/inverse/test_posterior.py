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


def test_coverage_of_exact_samples():
    g = torch.Generator().manual_seed(3)
    # unweighted: many problems with exact posterior samples -> 90% intervals hold 90% of truths
    truth = torch.randn(2000, generator=g, dtype=torch.float64)
    samples = torch.randn(400, 2000, generator=g, dtype=torch.float64)
    post = Posterior(samples)
    assert abs(post.coverage(truth, 0.9) - 0.9) < 0.03
    assert post.coverage(truth, 0.5) < post.coverage(truth, 0.9)
    # weighted: particles from N(0, 2^2) reweighted to N(0, 1)
    wide = 2 * torch.randn(4000, 500, generator=g, dtype=torch.float64)
    lw = -0.5 * wide[:, 0] ** 2 * (1 - 0.25)  # weights depend on entry 0 only
    lo, hi = Posterior(wide[:, :1], lw).credible_interval(0.9)
    assert abs(float(hi) - 1.645) < 0.15 and abs(float(lo) + 1.645) < 0.15
    with pytest.raises(ValueError, match="does not match"):
        post.coverage(torch.zeros(3))
    with pytest.raises(ValueError, match="level"):
        post.coverage(truth, 1.5)
