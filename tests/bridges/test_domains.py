import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import stats

from scidiff.bridges import Ball, Box, Polytope, SDFDomain, Simplex, flower, make_domain, regular_polygon

SETTINGS = settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _domain(kind: str, size: float, dim: int):
    if kind == "box":
        return Box(torch.full((dim,), -0.3 * size), torch.full((dim,), 0.7 * size))
    if kind == "ball":
        return Ball(torch.full((dim,), 0.1 * size), size)
    if kind == "simplex":
        return Simplex(dim)
    if kind == "polytope":  # a rotated, stretched box written as {Ax <= b}
        q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=torch.Generator().manual_seed(dim), dtype=torch.float64))
        A = torch.cat([q, -q]) * torch.linspace(1, 3, 2 * dim, dtype=torch.float64)[:, None]
        b = torch.full((2 * dim,), size, dtype=torch.float64) * torch.linspace(1, 3, 2 * dim)
        r = size * math.sqrt(dim)  # each row is a unit normal at distance `size` after normalisation
        return Polytope(A, b, bounds=(torch.full((dim,), -r), torch.full((dim,), r)))
    if kind == "polygon":
        return regular_polygon(5, size)
    return flower(5, size, 0.4)


KINDS = ["box", "ball", "simplex", "polytope", "polygon", "flower"]


def _starts(domain, n, seed):
    """Uniform interior points, boundary points and, for polytopes, corners."""
    g = torch.Generator().manual_seed(seed)
    inner = domain.sample_uniform(n, g, dtype=torch.float64)
    lo, hi = domain.bounds()
    far = lo + (hi - lo) * (3 * torch.rand(n, domain.dim, generator=g, dtype=torch.float64) - 1)
    on_boundary = domain.project(far)
    pts = [inner, on_boundary]
    if isinstance(domain, Simplex):
        pts.append(torch.cat([torch.zeros(1, domain.dim, dtype=torch.float64), torch.eye(domain.dim, dtype=torch.float64)]))
    if isinstance(domain, Box):
        corners = torch.tensor([[int(c) for c in format(k, f"0{domain.dim}b")] for k in range(2**domain.dim)], dtype=torch.float64)
        pts.append(lo + corners * (hi - lo))
    return torch.cat(pts)


@SETTINGS
@given(
    kind=st.sampled_from(KINDS),
    size=st.sampled_from([1e-3, 0.05, 1.0, 30.0]),
    dim=st.integers(1, 4),
    step=st.floats(1e-3, 30.0),
    outward=st.floats(0.0, 50.0),
    seed=st.integers(0, 2**16),
)
def test_reflected_paths_never_leave(kind, size, dim, step, outward, seed):
    if kind in ("polygon", "flower"):
        dim = 2
    if kind == "simplex":
        size = 1.0
    domain = _domain(kind, size, dim)
    x = _starts(domain, 32, seed)
    assert domain.contains(x).all()
    g = torch.Generator().manual_seed(seed + 1)
    for _ in range(3):
        # Steps up to 100x the domain size, plus an adversarial push straight away from the centre.
        away = x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        prop = x + step * domain.scale * torch.randn(x.shape, generator=g, dtype=x.dtype) + outward * domain.scale * away
        x = domain.reflect(x, prop)
        assert domain.contains(x).all(), f"{int((~domain.contains(x)).sum())} escaped"


@pytest.mark.parametrize("kind", ["box", "ball", "simplex", "polytope", "polygon"])
def test_reflection_is_identity_inside_convex_domains(kind):
    domain = _domain(kind, 1.0, 3 if kind not in ("polygon",) else 2)
    g = torch.Generator().manual_seed(0)
    a = domain.sample_uniform(200, g, dtype=torch.float64)
    b = domain.sample_uniform(200, g, dtype=torch.float64)
    torch.testing.assert_close(domain.reflect(a, b), b)


def test_polytope_reflection_equals_box_fold():
    box = Box(torch.zeros(3), torch.ones(3))
    A = torch.cat([torch.eye(3), -torch.eye(3)])
    poly = Polytope(A, torch.cat([torch.ones(3), torch.zeros(3)]), interior_point=torch.full((3,), 0.5))
    g = torch.Generator().manual_seed(1)
    x = box.sample_uniform(500, g, dtype=torch.float64)
    y = x + 4 * torch.randn(x.shape, generator=g, dtype=torch.float64)
    torch.testing.assert_close(poly.reflect(x, y), box.reflect(x, y), atol=1e-9, rtol=0)


def test_box_fold_is_idempotent_and_folds_gaussian_to_uniform():
    box = Box(torch.zeros(3), torch.ones(3))
    g = torch.Generator().manual_seed(2)
    y = box.fold(0.3 + 3 * torch.randn(20000, 3, generator=g, dtype=torch.float64))
    torch.testing.assert_close(box.fold(y), y)
    for k in range(3):
        assert stats.kstest(y[:, k].numpy(), "uniform").pvalue > 0.01


def test_ball_specular_angle_and_sdf_agrees():
    ball = Ball(torch.zeros(2), 1.0)
    # From the centre straight through the wall: back along the diameter.
    out = ball.reflect(torch.zeros(1, 2, dtype=torch.float64), torch.tensor([[1.5, 0.0]], dtype=torch.float64))
    torch.testing.assert_close(out, torch.tensor([[0.5, 0.0]], dtype=torch.float64))
    # Hitting (0, 1) at 45 degrees mirrors the vertical component only.
    out = ball.reflect(torch.tensor([[-0.5, 0.5]], dtype=torch.float64), torch.tensor([[0.5, 1.5]], dtype=torch.float64))
    torch.testing.assert_close(out, torch.tensor([[0.5, 0.5]], dtype=torch.float64))
    sdf = SDFDomain(lambda x: x.norm(dim=-1) - 1.0, 2, bounds=(-torch.ones(2), torch.ones(2)))
    g = torch.Generator().manual_seed(3)
    x = ball.sample_uniform(300, g, dtype=torch.float64)
    y = x + 0.3 * torch.randn(x.shape, generator=g, dtype=torch.float64)
    torch.testing.assert_close(sdf.reflect(x, y), ball.reflect(x, y), atol=1e-5, rtol=0)


def test_reflected_brownian_motion_in_ball_is_uniform():
    # r^3 ~ U(0, 1) for the uniform law on the unit 3-ball, the stationary law of reflected BM.
    ball = Ball(torch.zeros(3), 1.0)
    g = torch.Generator().manual_seed(4)
    x = torch.zeros(1000, 3, dtype=torch.float64)
    for _ in range(120):
        x = ball.reflect(x, x + 0.2 * torch.randn(x.shape, generator=g, dtype=torch.float64))
    assert stats.kstest((x.norm(dim=-1) ** 3).numpy(), "uniform").pvalue > 0.01


def test_simplex_projection_matches_dykstra_and_compositions():
    simplex = Simplex(3)
    generic = Polytope(simplex.A, simplex.b, interior_point=simplex.interior)
    x = 2 * torch.randn(200, 3, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    torch.testing.assert_close(simplex.project(x), generic.project(x), atol=1e-6, rtol=0)
    p = simplex.to_composition(simplex.project(x))
    assert (p >= -1e-12).all() and torch.allclose(p.sum(-1), torch.ones(200, dtype=torch.float64))
    torch.testing.assert_close(simplex.from_composition(p), simplex.project(x))
    with pytest.raises(ValueError, match="compositions"):
        simplex.from_composition(torch.tensor([[0.5, 0.7]]))


def test_projection_lands_inside_and_is_nearest_for_box_and_ball():
    g = torch.Generator().manual_seed(6)
    x = 3 * torch.randn(100, 2, generator=g, dtype=torch.float64)
    for d in (Ball(torch.zeros(2), 1.0), Box(-torch.ones(2), torch.ones(2)), flower(), regular_polygon(6)):
        assert d.contains(d.project(x)).all()
    torch.testing.assert_close(Ball(torch.zeros(2), 1.0).project(x), x / x.norm(dim=-1, keepdim=True).clamp_min(1.0))


def test_bad_inputs_raise():
    box = Box(torch.zeros(2), torch.ones(2))
    with pytest.raises(ValueError, match="outside"):
        box.reflect(torch.full((3, 2), 2.0), torch.zeros(3, 2))
    with pytest.raises(ValueError, match="non-finite"):
        box.contains(torch.tensor([[math.nan, 0.5]]))
    with pytest.raises(ValueError, match="hi > lo"):
        Box(torch.ones(2), torch.zeros(2))
    with pytest.raises(ValueError, match="radius"):
        Ball(torch.zeros(2), -1.0)
    with pytest.raises(ValueError, match="shape"):
        Ball(torch.zeros(2), 1.0).contains(torch.zeros(4, 3))
    with pytest.raises(ValueError, match="interior_point"):
        Polytope(torch.eye(2), -torch.ones(2))
    with pytest.raises(ValueError, match="interior_point"):
        SDFDomain(lambda x: x.norm(dim=-1) - 1.0, 2, interior_point=torch.tensor([3.0, 0.0]))
    with pytest.raises(ValueError, match="same shape"):
        box.reflect(torch.full((3, 2), 0.5), torch.zeros(2, 2))
    with pytest.raises(ValueError, match="unknown domain"):
        make_domain({"type": "torus"})
    with pytest.raises(TypeError):
        box.contains([[0.5, 0.5]])
