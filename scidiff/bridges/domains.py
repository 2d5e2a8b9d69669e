"""Bounded domains with vectorised specular reflection for Euler steps of reflected SDEs.

A reflected SDE ``dX = f dt + g dW + n(X) dL`` (``L`` the boundary local time, ``n`` the inward push)
is simulated by an Euler proposal ``x_new = x_old + f dt + g sqrt(dt) xi`` followed by the reflection
map ``R``: the straight segment ``x_old -> x_new`` is followed until it first hits the boundary, the
remainder is mirrored about the tangent plane there (``r <- r - 2 <r, n> n``) and the walk goes on,
bounce after bounce, until the whole step length is spent (Lou & Ermon, ICML 2023, Sec. 3; Deng et al.,
"Reflected Schrodinger Bridge for Constrained Generative Modeling", UAI 2024, Sec. 4). Every domain
here does this for the whole batch at once; the only loop is over bounces, capped by ``max_bounces``.

``project`` is the Euclidean projection (nearest point of the domain). It is *not* used to simulate
reflected dynamics: clamping an Euler step to the boundary puts a point mass there. It is offered for
the clamped baseline and as a guard against round-off of a few ulp on boundary hit points.

Points are ``(B, d)`` tensors (``Box`` also accepts any ``(B, *dims)``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from ..diffusion._utils import check_finite
from ..diffusion.random import Generator, rand


def _mirror(r: Tensor, normal: Tensor) -> Tensor:
    """Specular reflection of displacement ``r`` about the plane with unit normal ``normal``."""
    return r - 2.0 * (r * normal).sum(-1, keepdim=True) * normal


class Domain:
    """Base class: ``contains``, ``check_inside``, ``reflect``, ``project``, ``sample_uniform``.

    Subclasses with flat ``(B, d)`` points implement ``_level`` (a function that is ``<= 0`` exactly inside,
    scaled like a distance), ``_first_hit`` (fraction of the segment to the first boundary hit and the
    outward unit normal there) and ``project``; the multi-bounce walk is shared.
    """

    dim: int
    max_bounces: int = 64

    def __init__(self, dim: int, scale: float, tol: float | None = None, bounds: tuple[Tensor, Tensor] | None = None):
        if dim < 1:
            raise ValueError(f"domain dimension must be >= 1, got {dim}")
        if not (scale > 0 and math.isfinite(scale)):
            raise ValueError(f"domain size must be positive and finite, got {scale}")
        self.dim = int(dim)
        self.scale = float(scale)
        # Boundary hit points carry round-off of a few ulp of the coordinates; tolerate that, not more.
        self.tol = 1e-5 * self.scale if tol is None else float(tol)
        self._bounds = None if bounds is None else tuple(torch.as_tensor(b, dtype=torch.float64) for b in bounds)

    # ---- input checks ---------------------------------------------------------------------------
    def _check_points(self, x: Tensor, name: str) -> Tensor:
        if not isinstance(x, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"{name} must have shape (B, {self.dim}); got {tuple(x.shape)}")
        check_finite(x, name)
        return x

    def check_inside(self, x: Tensor, name: str = "x") -> None:
        """Raise a ValueError if any point of ``x`` lies outside the domain (beyond ``tol``)."""
        inside = self.contains(x)
        if not bool(inside.all()):
            bad = int((~inside).sum())
            raise ValueError(f"{name}: {bad} of {inside.numel()} point(s) lie outside the {type(self).__name__}")

    # ---- geometry -------------------------------------------------------------------------------
    def contains(self, x: Tensor, tol: float | None = None) -> Tensor:
        """Boolean ``(B,)``: is each point inside (boundary included, up to ``tol``)?"""
        x = self._check_points(x, "x")
        return self._level(x) <= (self.tol if tol is None else tol)

    def on_boundary(self, x: Tensor, tol: float | None = None) -> Tensor:
        """Boolean ``(B,)``: does each point lie on the boundary (within ``tol``, default the domain's)? For a
        box, a field with any value at a bound. A reflected process puts no mass there; clamping does."""
        x = self._check_points(x, "x")
        return self._level(x).abs() <= (self.tol if tol is None else tol)

    def _level(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def _first_hit(self, pos: Tensor, rem: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Return ``(s, hit_point, normal)``: segment fraction in [0, 1] (``inf`` if no hit)."""
        raise NotImplementedError

    def project(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def reflect(self, x_old: Tensor, x_new: Tensor) -> Tensor:
        """Specular multi-bounce reflection of the Euler step ``x_old -> x_new`` (``x_old`` must be inside)."""
        self._check_points(x_new, "x_new")
        if x_old.shape != x_new.shape:
            raise ValueError(f"x_old {tuple(x_old.shape)} and x_new {tuple(x_new.shape)} must have the same shape")
        self.check_inside(x_old, "x_old")
        pos, rem = x_old.clone(), x_new - x_old
        active = torch.arange(pos.shape[0], device=pos.device)
        # Only the points still bouncing are carried to the next round.
        for _ in range(self.max_bounces):
            p, r = pos[active], rem[active]
            s, hit_point, normal = self._first_hit(p, r)
            hit = s < 1.0
            # No hit: spend the whole remainder. Hit: stop at the wall, mirror what is left.
            free = active[~hit]
            pos[free], rem[free] = p[~hit] + r[~hit], 0.0
            active = active[hit]
            if active.numel() == 0:
                break
            s = s[hit].clamp(0.0, 1.0)[:, None]
            pos[active] = hit_point[hit]
            rem[active] = _mirror((1.0 - s) * r[hit], normal[hit])
        # Past the bounce cap the point stays at its last wall hit (inside up to round-off).
        return self._guard(pos)

    def _guard(self, x: Tensor) -> Tensor:
        """Send points that round-off left just outside back to the nearest point of the domain."""
        inside = self._level(x) <= 0.0
        if bool(inside.all()):
            return x
        return torch.where(inside[:, None], x, self.project(x))

    # ---- sampling -------------------------------------------------------------------------------
    def bounds(self) -> tuple[Tensor, Tensor]:
        """Axis-aligned bounding box ``(lo, hi)`` as float64 ``(d,)`` tensors."""
        if self._bounds is None:
            raise ValueError(f"{type(self).__name__} has no bounding box; pass bounds=(lo, hi)")
        return self._bounds

    def sample_uniform(self, n: int, generator: Generator = None, dtype: torch.dtype = torch.float32) -> Tensor:
        """``n`` uniform points by rejection from the bounding box (a fixed number of rounds, then an error)."""
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive int, got {n!r}")
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError("sample_uniform takes a single torch.Generator (or None)")
        lo, hi = (b.to(dtype) for b in self.bounds())
        chunks, have = [], 0
        for _ in range(1000):
            u = rand((max(2 * n, 1024), self.dim), generator, dtype=dtype)
            cand = lo + u * (hi - lo)
            cand = cand[self._level(cand) <= 0.0]
            chunks.append(cand)
            have += cand.shape[0]
            if have >= n:
                return torch.cat(chunks)[:n]
        raise RuntimeError("rejection sampling accepted too few points: is the domain almost empty?")


class Box(Domain):
    """Axis-aligned box ``lo <= x <= hi``; reflection is the exact mod-2 fold of each coordinate.

    The fold ``y -> y mod 2, then 2 - y where y > 1`` (for ``y`` in box units) is the reflection map of a
    straight segment of any length, without bounces (Lou & Ermon 2023, ``cube.py``). ``lo``/``hi`` are
    scalars or tensors broadcastable to the event shape, so images ``(B, C, H, W)`` work too.
    """

    def __init__(self, lo, hi, dim: int | None = None, tol: float | None = None):
        lo = torch.as_tensor(lo, dtype=torch.float64)
        hi = torch.as_tensor(hi, dtype=torch.float64)
        if not (torch.isfinite(lo).all() and torch.isfinite(hi).all()):
            raise ValueError("box bounds must be finite")
        if (hi <= lo).any():
            raise ValueError("box needs hi > lo in every coordinate")
        if dim is None:
            dim = max(lo.numel(), hi.numel()) if (lo.ndim <= 1 and hi.ndim <= 1) else int(torch.broadcast_shapes(lo.shape, hi.shape).numel())
        self.lo, self.hi = lo, hi
        super().__init__(dim, float((hi - lo).max()), tol)

    def _cast(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.lo.to(x.device, x.dtype), self.hi.to(x.device, x.dtype)

    def _check_points(self, x: Tensor, name: str) -> Tensor:
        if not isinstance(x, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
        if x.ndim < 2:
            raise ValueError(f"{name} must be batched, shape (B, *dims); got {tuple(x.shape)}")
        try:
            torch.broadcast_shapes(x.shape[1:], self.lo.shape, self.hi.shape)
        except RuntimeError as err:
            raise ValueError(f"{name} event shape {tuple(x.shape[1:])} does not match the box bounds") from err
        check_finite(x, name)
        return x

    def _level(self, x: Tensor) -> Tensor:
        lo, hi = self._cast(x)
        return torch.maximum(lo - x, x - hi).flatten(1).amax(1)

    def reflect(self, x_old: Tensor, x_new: Tensor) -> Tensor:
        """Exact fold of ``x_new`` into the box (the segment from ``x_old`` is straight, so only its end matters)."""
        self._check_points(x_new, "x_new")
        if x_old.shape != x_new.shape:
            raise ValueError(f"x_old {tuple(x_old.shape)} and x_new {tuple(x_new.shape)} must have the same shape")
        self.check_inside(x_old, "x_old")
        return self.fold(x_new)

    def fold(self, x: Tensor) -> Tensor:
        """The reflection map of the box applied to any point (identity inside)."""
        lo, hi = self._cast(x)
        y = torch.remainder((x - lo) / (hi - lo), 2.0)
        y = torch.where(y > 1.0, 2.0 - y, y)
        # A final clamp only removes round-off of the rescaling (y is already in [0, 1]).
        return torch.minimum(torch.maximum(lo + y * (hi - lo), lo), hi)

    def project(self, x: Tensor) -> Tensor:
        lo, hi = self._cast(x)
        return torch.minimum(torch.maximum(x, lo), hi)

    def bounds(self) -> tuple[Tensor, Tensor]:
        shape = (self.dim,)
        return self.lo.expand(shape).clone(), self.hi.expand(shape).clone()


class Ball(Domain):
    """Euclidean ball ``|x - center| <= radius``; exact segment-sphere hits, specular bounces."""

    def __init__(self, center, radius: float, tol: float | None = None):
        center = torch.as_tensor(center, dtype=torch.float64).reshape(-1)
        if not torch.isfinite(center).all():
            raise ValueError("ball center must be finite")
        if not (radius > 0 and math.isfinite(radius)):
            raise ValueError(f"ball radius must be positive and finite, got {radius}")
        self.center, self.radius = center, float(radius)
        super().__init__(center.numel(), 2 * self.radius, tol, bounds=(center - radius, center + radius))

    def _level(self, x: Tensor) -> Tensor:
        return (x - self.center.to(x)).norm(dim=-1) - self.radius

    def _first_hit(self, pos, rem):
        # Solve |p + s r - c|^2 = R^2 for the positive root s (p is inside so c0 <= 0).
        p = pos - self.center.to(pos)
        a = (rem * rem).sum(-1)
        b = 2.0 * (p * rem).sum(-1)
        c0 = (p * p).sum(-1) - self.radius**2
        disc = (b * b - 4.0 * a * c0).clamp_min(0.0)
        # Positive root without cancellation: -2 c0 / (b + sqrt(disc)) when b > 0 (outward motion).
        sq = disc.sqrt()
        s = torch.where(b > 0, -2.0 * c0 / (b + sq).clamp_min(1e-30), (-b + sq) / (2.0 * a).clamp_min(1e-30))
        s = torch.where(a > 0, s, torch.full_like(s, math.inf))
        hit_point = pos + s.clamp(0, 1)[:, None] * rem
        normal = hit_point - self.center.to(pos)
        normal = normal / normal.norm(dim=-1, keepdim=True).clamp_min(1e-30)
        return s, hit_point, normal

    def project(self, x: Tensor) -> Tensor:
        c = self.center.to(x)
        r = (x - c).norm(dim=-1, keepdim=True)
        factor = torch.where(r > self.radius, self.radius / r.clamp_min(1e-30), torch.ones_like(r))
        return c + (x - c) * factor


class Polytope(Domain):
    """Convex polytope ``{x : A x <= b}`` with iterative face reflection.

    First crossing ``alpha_i = (b_i - a_i.x) / (a_i.r)`` over faces with ``a_i.r > 0``, move there,
    mirror the remainder about face ``i``, repeat (anchors §4.2; the box loop of HighDimPDE.jl ``reflect``).
    ``interior_point`` (a strictly interior point, default the origin when ``b > 0``) anchors the
    round-off guard of ``project``.
    """

    def __init__(self, A, b, interior_point=None, bounds=None, tol: float | None = None):
        A = torch.as_tensor(A, dtype=torch.float64)
        b = torch.as_tensor(b, dtype=torch.float64).reshape(-1)
        if A.ndim != 2 or A.shape[0] != b.shape[0]:
            raise ValueError(f"A must be (m, d) and b (m,); got A {tuple(A.shape)}, b {tuple(b.shape)}")
        if not (torch.isfinite(A).all() and torch.isfinite(b).all()):
            raise ValueError("A and b must be finite")
        norms = A.norm(dim=1)
        if (norms == 0).any():
            raise ValueError("every row of A must be non-zero")
        # Normalised rows make the level function a true (signed, face-wise) distance.
        self.A, self.b = A / norms[:, None], b / norms
        if interior_point is None:
            if not (self.b > 0).all():
                raise ValueError("the origin is not strictly inside {A x <= b}; pass interior_point")
            interior_point = torch.zeros(A.shape[1], dtype=torch.float64)
        self.interior = torch.as_tensor(interior_point, dtype=torch.float64).reshape(-1)
        if not (self.A @ self.interior < self.b).all():
            raise ValueError("interior_point is not strictly inside {A x <= b}")
        scale = float((self.b - self.A @ self.interior).max()) * 2.0
        if bounds is not None:
            scale = float((torch.as_tensor(bounds[1]) - torch.as_tensor(bounds[0])).max())
        super().__init__(A.shape[1], scale, tol, bounds=bounds)

    def _level(self, x: Tensor) -> Tensor:
        return (x @ self.A.to(x).T - self.b.to(x)).amax(-1)

    def _first_hit(self, pos, rem):
        A, b = self.A.to(pos), self.b.to(pos)
        slack = b - pos @ A.T
        rate = rem @ A.T
        alpha = torch.where(rate > 0, slack.clamp_min(0.0) / rate.clamp_min(1e-30), torch.full_like(rate, math.inf))
        s, face = alpha.min(dim=-1)
        hit_point = pos + s.clamp(0, 1)[:, None] * rem
        return s, hit_point, A[face]

    def project(self, x: Tensor, n_iter: int = 200) -> Tensor:
        """Nearest point by Dykstra's alternating projections onto the faces, then a ray guard."""
        A, b = self.A.to(x), self.b.to(x)
        y, corr = x, torch.zeros(A.shape[0], *x.shape, dtype=x.dtype, device=x.device)
        for _ in range(n_iter):
            for i in range(A.shape[0]):
                z = y + corr[i]
                excess = (z @ A[i] - b[i]).clamp_min(0.0)
                new = z - excess[:, None] * A[i]
                corr[i] = z - new
                y = new
        return self._ray_to_interior(y)

    def _ray_to_interior(self, x: Tensor) -> Tensor:
        """Move points still outside along the ray to the interior point until they are inside."""
        A, b, c = self.A.to(x), self.b.to(x), self.interior.to(x)
        d = x - c
        rate = d @ A.T
        lam = torch.where(rate > 0, (b - c @ A.T) / rate.clamp_min(1e-30), torch.full_like(rate, math.inf)).amin(-1)
        lam = (lam * (1 - 1e-6)).clamp(max=1.0)[:, None]
        return c + lam * d


class Simplex(Polytope):
    """The corner simplex ``{x in R^d : x >= 0, sum(x) <= 1}``.

    Choice of chart: a composition ``p`` of ``d + 1`` parts (``p >= 0, sum p = 1``) is stored as its first
    ``d`` coordinates; the last part is ``1 - sum(x)``. The sum constraint is then a face like any other,
    so reflection is the polytope walk and the process never needs a tangent-space projection.
    Use :meth:`to_composition` / :meth:`from_composition` to switch views.
    """

    def __init__(self, dim: int, tol: float | None = None):
        if not isinstance(dim, int) or dim < 1:
            raise ValueError(f"simplex dimension must be a positive int, got {dim!r}")
        A = torch.cat([-torch.eye(dim, dtype=torch.float64), torch.ones(1, dim, dtype=torch.float64)])
        b = torch.cat([torch.zeros(dim, dtype=torch.float64), torch.ones(1, dtype=torch.float64)])
        interior = torch.full((dim,), 1.0 / (dim + 1), dtype=torch.float64)
        bounds = (torch.zeros(dim, dtype=torch.float64), torch.ones(dim, dtype=torch.float64))
        super().__init__(A, b, interior_point=interior, bounds=bounds, tol=tol)

    def project(self, x: Tensor) -> Tensor:
        """Exact Euclidean projection: clamp at 0, and if the sum exceeds 1, project onto ``sum = 1``."""
        y = x.clamp_min(0.0)
        over = y.sum(-1) > 1.0
        if not bool(over.any()):
            return y
        return torch.where(over[:, None], _project_probability_simplex(x), y)

    @staticmethod
    def to_composition(x: Tensor) -> Tensor:
        """``(B, d) -> (B, d + 1)``: append the last part ``1 - sum(x)``."""
        return torch.cat([x, 1.0 - x.sum(-1, keepdim=True)], dim=-1)

    @staticmethod
    def from_composition(p: Tensor) -> Tensor:
        """``(B, d + 1) -> (B, d)``; ``p`` must be a composition (non-negative, rows summing to 1)."""
        if (p < -1e-6).any() or not torch.allclose(p.sum(-1), torch.ones_like(p[:, 0]), atol=1e-5):
            raise ValueError("compositions must be non-negative with rows summing to 1")
        return p[:, :-1]


def _project_probability_simplex(x: Tensor) -> Tensor:
    """Projection onto ``{p >= 0, sum p = 1}`` (sort-based; Duchi et al., ICML 2008)."""
    u, _ = torch.sort(x, dim=-1, descending=True)
    css = u.cumsum(-1) - 1.0
    k = torch.arange(1, x.shape[-1] + 1, device=x.device, dtype=x.dtype)
    rho = ((u - css / k) > 0).sum(-1, keepdim=True)
    theta = css.gather(-1, rho - 1) / rho.to(x.dtype)
    return (x - theta).clamp_min(0.0)


class SDFDomain(Domain):
    """Domain ``{x : phi(x) <= 0}`` from a signed distance (or any level) function ``phi``.

    The first exit of a segment is found by sampling ``n_search`` points along it (so thin protrusions
    of non-convex shapes are not tunnelled through by long steps), then ``n_bisect`` bisections that
    keep the inner end; the normal is ``grad phi / |grad phi|`` (autograd unless ``grad`` is given).
    Because the walk always stops at the inner end of the bracket, a reflected point can never be outside.

    Args:
        sdf: ``(B, d) -> (B,)``, negative inside; a true signed distance makes ``tol`` meaningful.
        dim: space dimension.
        bounds: bounding box ``(lo, hi)`` for ``sample_uniform``.
        interior_point: a point inside, used by ``project`` as a last resort (default: origin).
        grad: optional ``(B, d) -> (B, d)`` gradient of ``sdf``.
    """

    def __init__(
        self,
        sdf: Callable[[Tensor], Tensor],
        dim: int,
        bounds=None,
        interior_point=None,
        grad: Callable[[Tensor], Tensor] | None = None,
        n_search: int = 8,
        n_bisect: int = 20,
        scale: float | None = None,
        tol: float | None = None,
    ):
        if not callable(sdf):
            raise TypeError("sdf must be callable")
        if n_search < 1 or n_bisect < 1:
            raise ValueError("n_search and n_bisect must be >= 1")
        self.sdf, self.grad_fn, self.n_search, self.n_bisect = sdf, grad, int(n_search), int(n_bisect)
        if scale is None:
            scale = float((torch.as_tensor(bounds[1]) - torch.as_tensor(bounds[0])).max()) if bounds is not None else 1.0
        super().__init__(dim, scale, tol, bounds=bounds)
        self.interior = torch.zeros(dim, dtype=torch.float64) if interior_point is None else (
            torch.as_tensor(interior_point, dtype=torch.float64).reshape(-1))
        if float(self._level(self.interior[None])) >= 0:
            raise ValueError("interior_point (default: origin) is not strictly inside the domain")

    def _level(self, x: Tensor) -> Tensor:
        out = self.sdf(x)
        if out.shape != x.shape[:1]:
            raise ValueError(f"sdf must return shape ({x.shape[0]},); got {tuple(out.shape)}")
        return out

    def normal(self, x: Tensor) -> Tensor:
        """Outward unit normal ``grad phi / |grad phi|`` at ``x``."""
        if self.grad_fn is not None:
            g = self.grad_fn(x)
        else:
            with torch.enable_grad():
                xr = x.detach().requires_grad_(True)
                (g,) = torch.autograd.grad(self.sdf(xr).sum(), xr)
        return g / g.norm(dim=-1, keepdim=True).clamp_min(1e-30)

    def _first_hit(self, pos, rem):
        B, K = pos.shape[0], self.n_search
        fracs = torch.arange(1, K + 1, device=pos.device, dtype=pos.dtype) / K
        probes = pos[:, None] + fracs[None, :, None] * rem[:, None]
        outside = (self._level(probes.reshape(B * K, -1)) > 0).reshape(B, K)
        any_out = outside.any(-1)
        first = torch.where(any_out, outside.to(torch.int8).argmax(-1), torch.full_like(any_out, K - 1, dtype=torch.long))
        hi = (first + 1).to(pos.dtype) / K
        lo = first.to(pos.dtype) / K
        for _ in range(self.n_bisect):
            mid = 0.5 * (lo + hi)
            out = self._level(pos + mid[:, None] * rem) > 0
            lo, hi = torch.where(out, lo, mid), torch.where(out, mid, hi)
        s = torch.where(any_out, lo, torch.full_like(lo, math.inf))
        hit_point = pos + lo[:, None] * rem
        normal = self.normal(pos + hi[:, None] * rem)
        return s, hit_point, normal

    def project(self, x: Tensor, n_iter: int = 20) -> Tensor:
        """Newton steps ``x <- x - phi grad phi / |grad phi|^2`` for outside points, then a bisection guard."""
        y = x
        for _ in range(n_iter):
            phi = self._level(y)
            out = phi > 0
            if not bool(out.any()):
                return y
            g = self.normal(y)
            y = torch.where(out[:, None], y - phi[:, None] * g, y)
        return self._bisect_to_interior(y)

    def _bisect_to_interior(self, x: Tensor) -> Tensor:
        c = self.interior.to(x).expand_as(x)
        lo = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        hi = torch.ones_like(lo)
        inside = self._level(x) <= 0
        for _ in range(self.n_bisect + 10):
            mid = 0.5 * (lo + hi)
            out = self._level(c + mid[:, None] * (x - c)) > 0
            lo, hi = torch.where(out, lo, mid), torch.where(out, mid, hi)
        return torch.where(inside[:, None], x, c + lo[:, None] * (x - c))


# ---- ready-made 2D shapes (the kinds of domains of Deng et al. 2024, Fig. 1) ----------------------
def flower(petals: int = 5, radius: float = 1.0, amplitude: float = 0.3) -> SDFDomain:
    """Star-shaped flower ``|x| <= radius (1 + amplitude cos(petals theta))`` (non-convex)."""
    if petals < 1 or not (0 <= amplitude < 1) or radius <= 0:
        raise ValueError("flower needs petals >= 1, 0 <= amplitude < 1, radius > 0")

    def phi(x: Tensor) -> Tensor:
        theta = torch.atan2(x[..., 1], x[..., 0])
        return x.norm(dim=-1) - radius * (1.0 + amplitude * torch.cos(petals * theta))

    r = radius * (1 + amplitude)
    return SDFDomain(phi, 2, bounds=(torch.full((2,), -r), torch.full((2,), r)), scale=2 * r)


def regular_polygon(corners: int = 8, radius: float = 1.0) -> Polytope:
    """Regular polygon with ``corners`` vertices on the circle of ``radius`` (a 2D polytope)."""
    if corners < 3 or radius <= 0:
        raise ValueError("a polygon needs at least 3 corners and a positive radius")
    angles = (torch.arange(corners, dtype=torch.float64) + 0.5) * (2 * math.pi / corners)
    A = torch.stack([angles.cos(), angles.sin()], dim=1)
    b = torch.full((corners,), radius * math.cos(math.pi / corners), dtype=torch.float64)
    return Polytope(A, b, bounds=(torch.full((2,), -radius), torch.full((2,), radius)))


def make_domain(spec: dict) -> Domain:
    """Build a domain from a plain config dict, e.g. ``{"type": "flower", "petals": 5}``."""
    if not isinstance(spec, dict) or "type" not in spec:
        raise ValueError("a domain spec is a dict with a 'type' key")
    kind, kwargs = spec["type"], {k: v for k, v in spec.items() if k != "type"}
    makers: dict[str, Callable[..., Domain]] = {
        "box": Box, "ball": Ball, "simplex": Simplex, "polytope": Polytope,
        "flower": flower, "polygon": regular_polygon,
    }
    if kind not in makers:
        raise ValueError(f"unknown domain type {kind!r}; choose from {sorted(makers)}")
    return makers[kind](**kwargs)


__all__: Sequence[str] = [
    "Domain", "Box", "Ball", "Polytope", "Simplex", "SDFDomain", "flower", "regular_polygon", "make_domain",
]
