import pytest
import torch

from scidiff.likelihoods import PointSensors


def _grid(shape):
    # non-uniform spacing on the first axis to exercise the search
    axes = [torch.linspace(0.0, 2.0, n) for n in shape]
    axes[0] = axes[0] ** 1.5
    return axes


def _affine_field(grid, coef):
    mesh = torch.meshgrid(*grid, indexing="ij")
    return (1.0 + sum(c * m for c, m in zip(coef, mesh)))[None, None].double()


@pytest.mark.parametrize("shape", [(9,), (6, 7), (4, 5, 6)])
def test_multilinear_interpolation_is_exact_for_affine_fields(shape):
    grid = _grid(shape)
    coef = [0.5, -1.0, 2.0][: len(shape)]
    g = torch.Generator().manual_seed(0)
    hi = torch.tensor([float(a[-1]) for a in grid])
    coords = torch.rand(20, len(shape), generator=g, dtype=torch.float64) * hi
    coords[0] = hi  # a sensor exactly on the upper corner
    truth = 1.0 + coords @ torch.tensor(coef, dtype=torch.float64)
    sensors = PointSensors(coords, truth, 0.1, grid)
    x = _affine_field(grid, coef)
    assert torch.allclose(sensors.A(x), truth[None, None], atol=1e-10)
    assert torch.allclose(sensors.energy(x), torch.zeros(1, dtype=torch.float64), atol=1e-8)


@pytest.mark.parametrize("shape", [(9,), (6, 7), (4, 5, 6)])
def test_adjoint(shape):
    grid = _grid(shape)
    g = torch.Generator().manual_seed(1)
    coords = torch.rand(15, len(shape), generator=g, dtype=torch.float64) * torch.tensor([float(a[-1]) for a in grid])
    sensors = PointSensors(coords, torch.zeros(2, 15), 0.1, grid)  # two channels
    u = torch.randn(3, 2, *shape, generator=g, dtype=torch.float64)
    v = torch.randn(3, 2, 15, generator=g, dtype=torch.float64)
    assert torch.allclose((sensors.A(u) * v).sum(), (u * sensors.A_adjoint(v)).sum())
    dinv = pytest.importorskip("deepinv")  # noqa: F841
    assert sensors.to_physics().adjointness_test(u).abs() < 1e-10


def test_gradient_matches_autograd_and_pinv_fits_data():
    grid = _grid((6, 7))
    coords = torch.tensor([[0.3, 0.4], [1.1, 1.9], [2.0, 0.0]], dtype=torch.float64)
    values = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    sensors = PointSensors(coords, values, 0.2, grid)
    x = torch.randn(2, 1, 6, 7, dtype=torch.float64)
    xr = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(((values - sensors.A(xr)) ** 2).sum() / (2 * 0.04), xr)
    assert torch.allclose(sensors.grad(x), g)
    assert torch.allclose(sensors.A(sensors.A_dagger(sensors.y)), sensors.y, atol=1e-5)


def test_errors():
    grid = _grid((6, 7))
    ok = torch.tensor([[0.5, 0.5]])
    with pytest.raises(ValueError, match="outside the grid"):
        PointSensors(torch.tensor([[0.5, 2.5]]), torch.zeros(1), 0.1, grid)
    with pytest.raises(ValueError, match="non-finite"):
        PointSensors(ok, torch.tensor([float("nan")]), 0.1, grid)
    with pytest.raises(ValueError, match="non-finite"):
        PointSensors(torch.tensor([[float("nan"), 0.5]]), torch.zeros(1), 0.1, grid)
    with pytest.raises(ValueError, match="coords must be"):
        PointSensors(torch.tensor([0.5, 0.5]), torch.zeros(1), 0.1, grid)
    with pytest.raises(ValueError, match="values must be"):
        PointSensors(ok, torch.zeros(2), 0.1, grid)
    with pytest.raises(ValueError, match="strictly increasing"):
        PointSensors(ok, torch.zeros(1), 0.1, [torch.tensor([0.0, 0.0, 1.0]), grid[1]])
    sensors = PointSensors(ok, torch.zeros(1), 0.1, grid)
    with pytest.raises(ValueError, match="grid has shape"):
        sensors.energy(torch.zeros(1, 1, 7, 6))
