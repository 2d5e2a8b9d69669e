import pytest
import torch

from scidiff.kernels.tv import (
    ADMMTV,
    finite_diff,
    finite_diff_adjoint,
    gradient,
    gradient_adjoint,
    group_soft_threshold,
    soft_threshold,
    tv,
)


@pytest.mark.parametrize("boundary", ["neumann", "circular"])
@pytest.mark.parametrize("dim", [-3, -2, -1])
def test_difference_adjoint(boundary, dim):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 1, 4, 5, 6, generator=g, dtype=torch.float64)
    p = torch.randn(x.shape, generator=g, dtype=torch.float64)
    lhs = (finite_diff(x, dim, boundary) * p).sum()
    rhs = (x * finite_diff_adjoint(p, dim, boundary)).sum()
    assert float(lhs) == pytest.approx(float(rhs), rel=1e-12)
    q = torch.randn(3, *x.shape, generator=g, dtype=torch.float64)
    dims = (-3, -2, -1)
    assert float((gradient(x, dims, boundary) * q).sum()) == pytest.approx(
        float((x * gradient_adjoint(q, dims, boundary)).sum()), rel=1e-12
    )


def test_neumann_does_not_join_the_ends():
    x = torch.zeros(1, 1, 4, 1, 1)
    x[:, :, 0] = 1.0  # first slice bright, last slice dark
    assert float(finite_diff(x, -3, "neumann")[0, 0, -1]) == 0.0
    assert float(finite_diff(x, -3, "circular")[0, 0, -1]) == 1.0  # the wrap the reference code has
    assert float(tv(x, (-3,))) == 1.0


def test_shrinkage():
    v = torch.tensor([-2.0, -0.5, 0.5, 3.0])
    torch.testing.assert_close(soft_threshold(v, 1.0), torch.tensor([-1.0, 0.0, 0.0, 2.0]))
    w = torch.tensor([[3.0], [4.0]])  # |w| = 5
    torch.testing.assert_close(group_soft_threshold(w, 1.0), w * 0.8)


def test_admm_tv_denoising_objective_decreases_and_converges():
    # A = I: min 1/2|x - y|^2 + lam |D_z x|_1; 1D along z, known answer for a noisy step
    g = torch.Generator().manual_seed(0)
    clean = torch.zeros(1, 1, 16, 2, 2)
    clean[:, :, 8:] = 1.0
    y = clean + 0.1 * torch.randn(clean.shape, generator=g)
    lam = 0.2
    state = ADMMTV(lambda v: v, y.clone(), lam, rho=1.0)
    x, objs = y.clone(), []
    for _ in range(200):
        x = state.step(x, n_cg=5)
        objs.append(float(0.5 * (x - y).pow(2).sum() + lam * tv(x, (-3,))))
    assert objs[-1] < objs[0] < float(0.5 * 0 + lam * tv(y, (-3,)))
    assert objs[-1] <= min(objs) + 1e-4  # converged, no late increase
    assert float((x - clean).pow(2).mean()) < float((y - clean).pow(2).mean())


def test_admm_errors():
    with pytest.raises(ValueError, match="rho"):
        ADMMTV(lambda v: v, torch.zeros(1, 1, 2, 2, 2), 0.1, 0.0)
    with pytest.raises(ValueError, match="boundary"):
        finite_diff(torch.zeros(3), 0, "reflect")
