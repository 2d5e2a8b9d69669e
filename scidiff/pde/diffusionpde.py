"""DiffusionPDE: solving PDEs from sparse observations with a joint diffusion prior.

Huang, Yang, Wang, Park, "DiffusionPDE: Generative PDE-Solving Under Partial Observation", NeurIPS 2024.
The prior is an unconditional diffusion model over the joint field (coefficient, solution) stacked as
channels. Sampling runs EDM's deterministic Heun steps; after each step the state is pushed down the gradient
(taken through the denoiser, with respect to the step's input ``x_i``) of

* the observation misfits ``L_c = || M_c * (x0_hat_c - y_c) ||_2`` -- *un-squared* L2 norms, the step size of
  DPS normalised by the misfit -- one per observed channel, weight ``zeta_c``;
* the PDE residual ``L_pde = || R(x0_hat) ||_2 / (number of residual points)``, weight ``zeta_pde``;

evaluated at the Tweedie estimate ``x0_hat`` of the step's last denoiser call. The observation terms act alone
for steps ``i <= 0.8 N``; afterwards the PDE term is switched on and the observation weights drop to ``0.1 zeta``.
Both switches are expressed as weights that depend on the step's noise level, so the problem is an ordinary
:class:`~scidiff.likelihoods.Likelihood` (a weighted sum), and :func:`sample_diffusionpde` works with any
Denoiser and any Likelihood.

The prior usually works on normalised channels; :class:`ChannelAffine` maps them to physical units, in which
observations and residuals are computed (residuals with the physical grid spacing, see :mod:`scidiff.pde`).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..diffusion._utils import check_sigmas, host_sigmas
from ..diffusion.random import Generator, rand, randn
from ..inverse.posterior import Posterior
from ..kernels.tv import gradient, gradient_adjoint
from ..likelihoods.base import Likelihood
from .burgers import burgers_residual
from .elliptic import darcy_residual, helmholtz_residual, laplacian_power, poisson_residual, solve_elliptic_torch
from .navier_stokes import ns_residual


class ChannelAffine:
    """Per-channel normalisation ``normalised = scale * physical + shift`` (DiffusionPDE: Darcy ``a' = 0.2 a - 1.5``)."""

    def __init__(self, scale: Sequence[float], shift: Sequence[float]):
        self.scale = torch.as_tensor(scale, dtype=torch.float64).reshape(-1)
        self.shift = torch.as_tensor(shift, dtype=torch.float64).reshape(-1)
        if self.scale.shape != self.shift.shape:
            raise ValueError(f"scale and shift need one entry per channel; got {self.scale.shape}, {self.shift.shape}")
        if not (torch.isfinite(self.scale).all() and torch.isfinite(self.shift).all()) or (self.scale == 0).any():
            raise ValueError("scale must be finite and non-zero, shift finite")

    def _bc(self, v: Tensor, x: Tensor) -> Tensor:
        if x.ndim < 2 or x.shape[1] != v.numel():
            raise ValueError(f"expected {v.numel()} channels on dim 1; got x of shape {tuple(x.shape)}")
        return v.to(device=x.device, dtype=x.dtype).reshape(1, -1, *([1] * (x.ndim - 2)))

    def to_physical(self, x: Tensor) -> Tensor:
        return (x - self._bc(self.shift, x)) / self._bc(self.scale, x)

    def to_normalised(self, x: Tensor) -> Tensor:
        return x * self._bc(self.scale, x) + self._bc(self.shift, x)


def _identity(x: Tensor) -> Tensor:
    return x


def random_mask(
    shape: Sequence[int], n_points: int | None = None, *, fraction: float | None = None, generator: Generator = None
) -> Tensor:
    """A boolean mask of ``shape`` with exactly ``n_points`` (or ``round(fraction * size)``) points, uniformly at random.

    DiffusionPDE observes 500 of the 128^2 points (3.05 %) of each observed field.
    """
    size = math.prod(shape)
    if (n_points is None) == (fraction is None):
        raise ValueError("give exactly one of n_points or fraction")
    if fraction is not None:
        if not 0 < fraction <= 1:
            raise ValueError(f"fraction must be in (0, 1], got {fraction}")
        n_points = max(1, round(fraction * size))
    if not 1 <= n_points <= size:
        raise ValueError(f"n_points must be between 1 and {size}, got {n_points}")
    order = rand((size,), generator, dtype=torch.float64).argsort()
    mask = torch.zeros(size, dtype=torch.bool)
    mask[order[:n_points]] = True
    return mask.reshape(*shape)


class SparseObservation(Likelihood):
    """Point observations of one channel: energy ``|| mask * (phys(x)[:, channel] - values) ||_2`` (un-squared).

    Args:
        values: observed values in physical units, shaped like one channel (``(*spatial)``, or ``(1, *spatial)``);
            entries off the mask are ignored (they may be NaN).
        mask: boolean, same shape; at least one point.
        channel: which channel of the state is observed.
        transform: maps the (normalised) state to physical units, e.g. ``ChannelAffine(...).to_physical``.
    """

    def __init__(
        self, values: Tensor, mask: Tensor, channel: int = 0, transform: Callable[[Tensor], Tensor] | None = None
    ):
        values, mask = torch.as_tensor(values), torch.as_tensor(mask)
        if mask.dtype != torch.bool:
            raise TypeError(f"mask must be boolean, got {mask.dtype}")
        if values.shape != mask.shape:
            raise ValueError(f"values {tuple(values.shape)} and mask {tuple(mask.shape)} must have the same shape")
        if not mask.any():
            raise ValueError("the mask observes nothing: at least one point must be observed")
        if not torch.isfinite(values[mask]).all():
            raise ValueError(f"{int((~torch.isfinite(values[mask])).sum())} observed value(s) are NaN or inf")
        if channel < 0:
            raise ValueError(f"channel must be non-negative, got {channel}")
        self.mask, self.channel, self.transform = mask, int(channel), transform or _identity
        self.values = torch.where(mask, values, torch.zeros_like(values)).to(torch.float64)

    @classmethod
    def from_points(
        cls, points: Tensor, values: Tensor, shape: Sequence[int], channel: int = 0, transform=None
    ) -> SparseObservation:
        """Sensors at integer grid indices ``points`` ``(m, len(shape))`` with readings ``values`` ``(m,)``."""
        points, values = torch.as_tensor(points), torch.as_tensor(values, dtype=torch.float64)
        shape = tuple(shape)
        if points.ndim != 2 or points.shape[1] != len(shape) or points.is_floating_point():
            raise ValueError(
                f"points must be an integer (m, {len(shape)}) tensor of grid indices; got {tuple(points.shape)} {points.dtype}"
            )
        if values.shape != (points.shape[0],):
            raise ValueError(f"values must have shape ({points.shape[0]},), got {tuple(values.shape)}")
        outside = ((points < 0) | (points >= torch.tensor(shape))).any(1)
        if outside.any():
            raise ValueError(
                f"{int(outside.sum())} observation point(s) lie outside the grid {shape}, e.g. {points[outside][0].tolist()}"
            )
        if not torch.isfinite(values).all():
            raise ValueError(f"{int((~torch.isfinite(values)).sum())} sensor value(s) are NaN or inf")
        mask = torch.zeros(shape, dtype=torch.bool)
        grid = torch.zeros(shape, dtype=torch.float64)
        idx = tuple(points.T)
        mask[idx] = True
        grid[idx] = values
        return cls(grid, mask, channel, transform)

    @classmethod
    def stack(cls, observations: Sequence[SparseObservation], repeats: int = 1) -> SparseObservation:
        """One observation set per batch item: item ``i`` of a batch of ``len(observations) * repeats`` is scored
        against ``observations[i // repeats]`` (e.g. several test cases x posterior samples in one sampler run)."""
        first = observations[0]
        if any(o.channel != first.channel or o.mask.shape != first.mask.shape for o in observations):
            raise ValueError("stacked observations must share the channel and the grid")
        out = cls.__new__(cls)
        out.channel, out.transform = first.channel, first.transform
        out.mask = torch.stack([o.mask for o in observations]).repeat_interleave(repeats, 0)
        out.values = torch.stack([o.values for o in observations]).repeat_interleave(repeats, 0)
        return out

    def energy(self, x: Tensor, sigma: Tensor | None = None) -> Tensor:
        field = self.transform(x)
        spatial = field.shape[2:]
        per_item = self.mask.ndim == field.ndim - 1 and self.mask.shape[0] > 1  # from stack(): one set per item
        grid = self.mask.shape[1:] if per_item else self.mask.shape[-(field.ndim - 2) :]
        if field.ndim < 2 or self.channel >= field.shape[1] or spatial != grid:
            raise ValueError(
                f"the state of shape {tuple(x.shape)} does not carry channel {self.channel} on a grid {tuple(grid)}"
            )
        if per_item and self.mask.shape[0] != field.shape[0]:
            raise ValueError(f"{self.mask.shape[0]} stacked observation sets for a batch of {field.shape[0]}")
        shape = self.mask.shape if per_item else spatial
        mask = self.mask.to(field.device).reshape(shape)
        diff = (field[:, self.channel] - self.values.to(field).reshape(shape)) * mask
        return _norm(diff)


class SolvedState:
    """The joint (a, u) state in physical units with the solution channel replaced by the solver's:
    ``x -> (a, S(a))``, ``a`` = the state's coefficient (physical units; for Darcy clipped to ``a_range``) and
    ``S`` the reference solver of ``pde`` (:func:`~scidiff.pde.elliptic.solve_elliptic_torch`: Darcy by the
    adjoint state, Poisson and Helmholtz, linear in ``a``, by a second solve with the same LU factors).

    As the ``transform`` of a :class:`SparseObservation` of ``u`` (see :func:`solved_observation`) it scores the
    observed ``u`` against the solution *for the sampled coefficient*: the guidance then moves ``a`` only, with
    the gradient of the data misfit through the PDE (``u`` of the state is left to the prior), which is how the
    inverse problem is posed in PDE-constrained optimisation (e.g. Plessix 2006). Clipping keeps Darcy's
    coefficient positive (early Tweedie estimates can leave the range of its two values); ``a_range=None`` (the
    linear PDEs, whose solve exists for any ``a``) does not clip. ``params``: the PDE's ``f`` (Darcy) or ``k``.
    """

    def __init__(self, affine: ChannelAffine, a_range: tuple | None = (3.0, 12.0), f: float = 1.0,
                 pde: str = "darcy", **params):
        if affine.scale.numel() != 2:
            raise ValueError(f"the joint state has 2 channels (a, u); the normaliser has {affine.scale.numel()}")
        if pde not in ("darcy", "poisson", "helmholtz"):
            raise ValueError(f"solved observations need an elliptic PDE (darcy, poisson, helmholtz); got {pde!r}")
        if a_range is None and pde == "darcy":
            raise ValueError("Darcy's solve needs a positive coefficient: give a_range (lo, hi) with 0 < lo < hi")
        if a_range is not None and not (len(a_range) == 2 and 0 < a_range[0] < a_range[1]):
            raise ValueError(f"a_range must be (lo, hi) with 0 < lo < hi, got {a_range}")
        self.affine, self.f, self.pde, self.params = affine, float(f), pde, params
        self.a_range = None if a_range is None else (float(a_range[0]), float(a_range[1]))

    def __call__(self, x: Tensor) -> Tensor:
        a = self.affine.to_physical(x)[:, 0]
        if self.a_range is not None:
            a = a.clamp(*self.a_range)
        return torch.stack([a, solve_elliptic_torch(self.pde, a, self.f, **self.params)], 1)


def solved_observation(obs: SparseObservation, affine: ChannelAffine, a_range: tuple | None = (3.0, 12.0),
                       pde: str = "darcy", **params) -> SparseObservation:
    """The observations of ``u`` in ``obs`` (one set or :meth:`SparseObservation.stack`-ed), scored on the
    solver's ``u`` for the state's coefficient (:class:`SolvedState`) instead of the state's ``u`` channel."""
    if obs.channel != 1:
        raise ValueError(f"solved observations are of the solution u (channel 1); these observe channel {obs.channel}")
    out = copy.copy(obs)
    out.transform = SolvedState(affine, a_range, pde=pde, **params)
    return out


def _norm(r: Tensor) -> Tensor:
    """Per-item L2 norm whose gradient is 0 (not NaN) at r = 0."""
    sq = r.flatten(1).pow(2).sum(1)
    return torch.where(sq > 0, sq.clamp_min(1e-300).sqrt(), sq)


#: Norms of the PDE residual: the power of the Dirichlet ``-lap_h`` applied before the L2 norm.
PDE_NORMS = {"l2": 0.0, "h-1": -0.5, "h-2": -1.0}


class PDEResidual(Likelihood):
    """DiffusionPDE's PDE loss ``|| P R(phys(x)) ||_2 / (number of residual points)``.

    ``residual`` maps the physical state ``(B, C, ...)`` to residuals ``(B, ...)``; see :func:`joint_residual`.

    ``norm`` chooses ``P = (-lap_h)^s`` (:func:`~scidiff.pde.elliptic.laplacian_power`):

    * ``"l2"`` (default, the paper's loss): ``s = 0``. With the physical ``1/h^2`` the residual of an elliptic
      PDE is dominated by the finest grid modes: the Gauss-Newton matrix ``J^T J`` of the residual in ``u`` has
      the squared spectrum of ``-lap_h`` (condition number ~ ``(2n / pi)^4``, 1.5e5 at 32^2), so a weight small enough to keep
      the high modes stable barely moves the smooth ones.
    * ``"h-1"``: ``s = -1/2``, the discrete ``H^-1`` norm ``<R, (-lap_h)^-1 R>^(1/2)``; ``J^T P^2 J`` has the
      spectrum of ``-lap_h`` itself (condition number ~ ``(2n / pi)^2``, 400 at 32^2).
    * ``"h-2"``: ``s = -1``, the residual mapped back to solution units by the inverse of the constant-coefficient
      operator. For Poisson ``P R = u* - u`` exactly (``u*`` the discrete solution for the sampled source), so
      the term pulls ``u`` straight at ``u*`` with condition number 1; for Darcy ``P`` is spectrally equivalent
      to the inverse of ``-div(a grad)`` up to the range of ``a`` (factor 4 for a in {3, 12}); for Helmholtz
      (``k = 1``) up to ``1 / (1 - k^2 / (2 pi^2))``.

    The preconditioned norms are the usual remedy for least-squares PDE losses (operator preconditioning,
    e.g. Bramble, Lazarov, Pasciak 1997, "A least-squares approach based on a discrete minus one inner
    product for first order systems"); they apply to residuals on the interior nodes of the Dirichlet unit
    square (Darcy, Poisson, Helmholtz), not to the periodic Burgers / Navier--Stokes residuals.

    The weights of the three norms differ in scale (``P`` changes the residual's units); tune each.
    """

    def __init__(
        self, residual: Callable[[Tensor], Tensor], transform: Callable[[Tensor], Tensor] | None = None,
        norm: str = "l2",
    ):
        if norm not in PDE_NORMS:
            raise ValueError(f"unknown PDE residual norm {norm!r}; use one of {sorted(PDE_NORMS)}")
        self.residual, self.transform, self.norm = residual, transform or _identity, norm

    def energy(self, x: Tensor, sigma: Tensor | None = None) -> Tensor:
        r = self.residual(self.transform(x))
        if self.norm != "l2":
            if r.ndim != 3 or r.shape[-1] != r.shape[-2]:
                raise ValueError(f"the {self.norm} norm needs residuals (B, m, m) on the interior of a square "
                                 f"Dirichlet grid (darcy, poisson, helmholtz); got {tuple(r.shape)}")
            r = laplacian_power(r, PDE_NORMS[self.norm])
        return _norm(r) / r[0].numel()


class PreconditionedPDEStep(Likelihood):
    """A preconditioned residual step on the solution channel of an elliptic joint state ``(a, u)``.

    Writing the PDE as ``A(a) u = f`` with ``A`` symmetric positive definite (Darcy ``-div(a grad)``, Poisson
    ``-lap``, Helmholtz ``-lap - k^2``), the gradient of this term with respect to the normalised ``u`` is
    the preconditioned Richardson direction

        ``d = M^-1 (A(a) u - f) / std_u``,   ``M = a_ref (-lap_h)`` (zero Dirichlet data),

    on interior nodes, and ``u / std_u`` on the boundary nodes (the Dirichlet data ``u = 0``). ``a`` enters
    detached: the term makes ``u`` solve the PDE for the sampled coefficient and leaves ``a`` to the prior and
    the observations. One guided step ``u <- u - zeta d`` contracts the inconsistency ``u - A(a)^-1 f`` by the
    eigenvalues ``1 - zeta lambda`` of ``I - zeta M^-1 A``: for Poisson ``M = A`` (``a_ref = 1``) and
    ``zeta = 1`` is the exact Newton step onto the solution; for Darcy ``lambda`` lies in
    ``[min a, max a] / a_ref`` (spectral equivalence of ``-div(a grad)`` and ``-lap``), so the step converges
    for ``zeta < 2 a_ref / max a`` at any resolution -- unlike the gradient of the squared residual, whose
    Gauss--Newton matrix has the squared spectrum of ``-lap_h`` (condition number ``~ (2 n / pi)^4``).

    The gradient (through the denoiser, like every DiffusionPDE term) is passed with a detached direction
    (``d . u`` plus a constant), so the energy's *value* is ``0.5 || d ||^2``, the squared inconsistency in
    normalised units. Preconditioned Richardson iteration: e.g. Saad, *Iterative Methods for Sparse Linear
    Systems*, 2nd ed. (2003), preconditioned iterations; the constant-coefficient operator as preconditioner:
    Axelsson & Karatson 2009, "Equivalent operator preconditioning for elliptic problems", Numer. Algorithms 50.

    Args:
        pde: ``darcy``, ``poisson`` or ``helmholtz`` (``params`` go to :func:`joint_residual`, e.g. ``k=``).
        affine: the prior's normaliser (channel 0 = a, channel 1 = u).
        a_ref: the constant coefficient of ``M``; Darcy: a typical ``a`` (the normaliser's mean of a), else 1.
        a_range: ``(lo, hi)``: clip the (detached) sampled ``a`` to this range before the step, e.g. Darcy's
            ``(3, 12)``: a sampled ``a`` overshooting the known values would otherwise pull ``u`` towards the
            solution of a coefficient no data set holds.
    """

    _SIGN = {"darcy": 1.0, "poisson": -1.0, "helmholtz": -1.0}  # residual = sign * (A u - f)

    def __init__(self, pde: str, affine: ChannelAffine, a_ref: float = 1.0, a_range: tuple | None = None, **params):
        if pde not in self._SIGN:
            raise ValueError(f"the preconditioned PDE step needs an elliptic joint (a, u) PDE "
                             f"({', '.join(self._SIGN)}); got {pde!r}")
        if not (math.isfinite(a_ref) and a_ref > 0):
            raise ValueError(f"a_ref must be positive and finite, got {a_ref}")
        if a_range is not None and not (len(a_range) == 2 and a_range[0] < a_range[1]):
            raise ValueError(f"a_range must be (lo, hi) with lo < hi, got {a_range}")
        if affine.scale.numel() != 2:
            raise ValueError(f"the joint state has 2 channels (a, u); the normaliser has {affine.scale.numel()}")
        self.residual, self.sign = joint_residual(pde, **params), self._SIGN[pde]
        self.affine, self.a_ref = affine, float(a_ref)
        self.a_range = None if a_range is None else (float(a_range[0]), float(a_range[1]))

    def energy(self, x: Tensor, sigma: Tensor | None = None) -> Tensor:
        phys = self.affine.to_physical(torch.stack([x[:, 0].detach(), x[:, 1]], 1))
        if self.a_range is not None:
            phys = torch.stack([phys[:, 0].clamp(*self.a_range), phys[:, 1]], 1)
        u, std_u = phys[:, 1], 1.0 / float(self.affine.scale[1])
        with torch.no_grad():
            d = torch.zeros_like(u)
            d[:, 1:-1, 1:-1] = laplacian_power(self.sign * self.residual(phys), -1.0) / self.a_ref
            edge = torch.ones_like(u, dtype=torch.bool)
            edge[:, 1:-1, 1:-1] = False
            d = torch.where(edge, u, d) / std_u  # boundary: the Dirichlet data u = 0
        value = 0.5 * d.flatten(1).pow(2).sum(1)
        linear = (x[:, 1] * d).flatten(1).sum(1)
        return value + linear - linear.detach()


class CoefficientGNStep(Likelihood):
    """A regularised Gauss--Newton (Levenberg--Marquardt) step on the coefficient channel of an elliptic joint
    state ``(a, u)``, for the sampled ``u`` (detached): the step that moves ``a`` in the inverse problem.

    For fixed ``u`` the residual is *linear* in ``a``: ``R(a + v, u) = R(a, u) + J_u v`` (Darcy
    ``J_u v = -div(v grad u)`` with the stencil's face means; Poisson and Helmholtz ``J_u = -I`` on the interior).
    The gradient of this term with respect to the normalised ``a`` is ``-delta``, the Tikhonov-regularised
    Gauss--Newton step

        ``delta = argmin_v || R + J v ||^2 + lambda || v ||^2 = -(J^T J + lambda I)^-1 J^T R``,

    in normalised units (``J`` includes the normaliser's ``std_a``), solved by conjugate gradients. So one guided
    step ``a <- a + zeta delta`` removes the share ``zeta s^2 / (s^2 + lambda)`` of the residual along each
    singular direction ``s`` of ``J``; with ``lambda -> 0`` and ``zeta = 1`` it is the orthogonal projection of
    ``a`` onto the coefficients that ``u`` solves the PDE for (Gauss--Newton's minimum-norm step), and it leaves
    the components of ``a`` that ``u`` does not determine (``J``'s null space) to the prior and the observations.

    Darcy's ``J`` is weak where ``|grad u|`` is small (``-div(a grad u) = f`` is a transport equation for ``a``
    along the gradient lines of ``u``, degenerate at its critical points): there the ``lambda`` term dominates and
    ``a`` moves little. ``lambda = damping * mean(diag(J^T J))`` makes the damping dimensionless; the mean
    diagonal is ``||J||_F^2 / N``, computed exactly from five probes (the five-point stars of nodes with equal
    ``(i + 2 j) mod 5`` do not overlap). For Poisson the step is ``delta = std_a (lap_h u - a) / (std_a^2 +
    lambda)``: ``a`` is pulled toward ``lap_h u``.

    Levenberg 1944, Quart. Appl. Math. 2(2); Marquardt 1963, SIAM J. Appl. Math. 11(2); Tikhonov regularisation
    of the coefficient-identification problem: e.g. Engl, Hanke, Neubauer, *Regularization of Inverse Problems*
    (1996), ch. 10.

    The gradient passes through the denoiser with a detached direction (``d . a`` plus a constant), as
    :class:`PreconditionedPDEStep`; the energy's value is ``0.5 || delta ||^2``.

    Args:
        pde: ``darcy``, ``poisson`` or ``helmholtz`` (``params`` go to :func:`joint_residual`).
        affine: the prior's normaliser (channel 0 = a, channel 1 = u).
        damping: ``lambda`` relative to the mean diagonal of ``J^T J`` (positive).
        cg_iters: conjugate-gradient iterations per step (the system's condition number is at most
            ``1 + max diag / (damping * mean diag)``-ish; 40 reach a few per cent at ``damping = 0.01``).
        smoothing: ``beta >= 0``: the penalty becomes ``lambda (|| v ||^2 + beta || grad v ||^2)`` (first
            differences in grid units, Neumann ends; a discrete H^1 Tikhonov term), so the step on a is low-passed:
            for Poisson ``delta_k = std_a R_k / (std_a^2 + lambda (1 + beta mu_k))`` on the cosine modes ``mu_k``
            of the grid Laplacian, which keeps the rough part of ``lap_h u`` of a sampled u out of a.
    """

    def __init__(self, pde: str, affine: ChannelAffine, damping: float = 1e-2, cg_iters: int = 40,
                 smoothing: float = 0.0, **params):
        if pde not in PreconditionedPDEStep._SIGN:
            raise ValueError(f"the coefficient step needs an elliptic joint (a, u) PDE "
                             f"({', '.join(PreconditionedPDEStep._SIGN)}); got {pde!r}")
        if not (math.isfinite(damping) and damping > 0):
            raise ValueError(f"damping must be positive and finite, got {damping}")
        if int(cg_iters) < 1:
            raise ValueError(f"cg_iters must be at least 1, got {cg_iters}")
        if not (math.isfinite(smoothing) and smoothing >= 0):
            raise ValueError(f"smoothing must be non-negative and finite, got {smoothing}")
        if affine.scale.numel() != 2:
            raise ValueError(f"the joint state has 2 channels (a, u); the normaliser has {affine.scale.numel()}")
        self.residual, self.affine = joint_residual(pde, **params), affine
        self.damping, self.cg_iters, self.smoothing = float(damping), int(cg_iters), float(smoothing)

    def step(self, x: Tensor) -> Tensor:
        """``delta`` (normalised units of a, ``(B, n, n)``) for the state ``x`` (normalised, ``(B, 2, n, n)``)."""
        from ..kernels.cg import conjugate_gradient

        phys = self.affine.to_physical(x.detach())
        u, std_a = phys[:, 1], 1.0 / float(self.affine.scale[0])
        r0 = self.residual(torch.stack([torch.zeros_like(u), u], 1))

        def jac(v):  # J v: the residual is affine in a
            return std_a * (self.residual(torch.stack([v, u], 1)) - r0)

        def jac_t(r):  # J^T r by reverse mode through the (linear) residual
            with torch.enable_grad():
                v = torch.zeros_like(u, requires_grad=True)
                (g,) = torch.autograd.grad((jac(v) * r).sum(), v)
            return g

        n = u.shape[-1]
        i, j = torch.meshgrid(torch.arange(n, device=u.device), torch.arange(n, device=u.device), indexing="ij")
        colour = (i + 2 * j) % 5
        frob = sum(jac((colour == c).to(u).expand_as(u)).flatten(1).pow(2).sum(1) for c in range(5))
        lam = (self.damping * frob / (n * n)).reshape(-1, 1, 1)
        rhs = -jac_t(self.residual(phys))

        def penalty(v):  # (I + beta grad^T grad) v
            if self.smoothing == 0:
                return v
            return v + self.smoothing * gradient_adjoint(gradient(v, (-2, -1)), (-2, -1))

        return conjugate_gradient(lambda v: jac_t(jac(v)) + lam * penalty(v), rhs, max_iter=self.cg_iters, tol=1e-6)

    def energy(self, x: Tensor, sigma: Tensor | None = None) -> Tensor:
        with torch.no_grad():
            d = -self.step(x)
        value = 0.5 * d.flatten(1).pow(2).sum(1)
        linear = (x[:, 0] * d).flatten(1).sum(1)
        return value + linear - linear.detach()


def joint_residual(name: str, **params) -> Callable[[Tensor], Tensor]:
    """The residual of DiffusionPDE's joint state for ``name``, physical units, correct grid spacing.

    * ``darcy``, ``poisson``, ``helmholtz`` (``k=``): state ``(B, 2, n, n)`` = (a, u);
    * ``burgers`` (``nu=``, ``t_final=``): state ``(B, 1, T, n)`` = the space-time field;
    * ``navier_stokes`` (``dt=`` snapshot spacing, ``nu=``): state ``(B, T, n, n)`` = a vorticity trajectory
      (at least two snapshots; the initial/final pair 1 time unit apart cannot carry an NS residual).
    """
    two = {"darcy": darcy_residual, "poisson": poisson_residual, "helmholtz": helmholtz_residual}
    if name in two:
        fn = two[name]
        return lambda s: fn(s[:, 0], s[:, 1], **params)
    if name == "burgers":
        return lambda s: burgers_residual(s[:, 0], **params)
    if name == "navier_stokes":
        if "dt" not in params:
            raise ValueError("the Navier-Stokes residual needs the snapshot spacing dt=")
        return lambda s: ns_residual(s, **params)
    raise ValueError(f"unknown PDE {name!r}; available: darcy, poisson, helmholtz, burgers, navier_stokes")


def step_weight(
    sigmas: Tensor, zeta: float, *, early: float, late: float, switch: float = 0.8
) -> Callable[[Tensor], Tensor]:
    """``zeta * early`` for steps ``i <= switch * N`` and ``zeta * late`` afterwards, as a function of sigma_i.

    ``N = len(sigmas) - 1`` steps; step ``i`` is early iff ``sigma_i >= sigma_{floor(switch N)}``.
    """
    s = check_sigmas(torch.as_tensor(sigmas).detach().cpu())
    n = len(s) - 1
    if not 0 <= switch <= 1:
        raise ValueError(f"switch must be in [0, 1], got {switch}")
    threshold = float(s[min(int(math.floor(switch * n)), n - 1)])

    def weight(sigma: Tensor) -> Tensor:
        sigma = torch.as_tensor(sigma, dtype=torch.float64)
        return zeta * torch.where(sigma >= threshold, early, late)

    return weight


def diffusionpde_likelihood(
    observations: Sequence[tuple[SparseObservation, float]],
    pde: PDEResidual | None,
    zeta_pde: float,
    sigmas: Tensor,
    *,
    switch: float = 0.8,
    late_obs_factor: float = 0.1,
) -> Likelihood:
    """DiffusionPDE's guidance energy: ``sum_c w_c(sigma) L_c + w_pde(sigma) L_pde`` with the paper's schedule.

    ``observations`` pairs each :class:`SparseObservation` with its weight ``zeta_c`` (e.g. Darcy forward:
    ``zeta_a = 5``; inverse ``zeta_u = 5000``; ``zeta_pde = 100`` at 128^2 and 2000 steps). Observation weights
    are ``zeta_c`` for ``i <= switch N`` and ``late_obs_factor * zeta_c`` after; the PDE weight is 0 then ``zeta_pde``.
    """
    if not observations and (pde is None or zeta_pde == 0):
        raise ValueError("nothing to guide with: give at least one observation or a PDE residual with zeta_pde > 0")
    terms = []
    for obs, zeta in observations:
        if not isinstance(obs, SparseObservation):
            raise TypeError(f"observations must be (SparseObservation, weight) pairs; got {type(obs).__name__}")
        terms.append(step_weight(sigmas, float(zeta), early=1.0, late=late_obs_factor, switch=switch) * obs)
    if pde is not None and zeta_pde != 0:
        terms.append(step_weight(sigmas, float(zeta_pde), early=0.0, late=1.0, switch=switch) * pde)
    return terms[0] if len(terms) == 1 else sum(terms[1:], terms[0])


def sample_diffusionpde(
    denoiser,
    likelihood: Likelihood,
    shape: Sequence[int],
    sigmas: Tensor,
    *,
    generator: Generator = None,
    progress: bool = True,
    callback: Callable[[dict], None] | None = None,
    dtype: torch.dtype = torch.float32,
    device=None,
    cond: dict | None = None,
) -> Posterior:
    """DiffusionPDE's guided sampler (Huang et al. 2024, Algorithm 1; EDM Heun steps, no churn).

    For each step ``i``: a Heun step ``x_i -> x'`` (Euler on the last step), ``x0_hat`` = the output of the
    step's last denoiser call, ``g = grad_{x_i} likelihood.energy(x0_hat, sigma_i)`` (through the denoiser),
    ``x_{i+1} = x' - g``. ``shape = (N, *event_shape)`` draws ``N`` independent samples. Returns a
    :class:`~scidiff.inverse.Posterior`.
    """
    s = host_sigmas(sigmas)
    cond = cond or {}
    x = randn(tuple(shape), generator, device=device, dtype=dtype) * s[0]
    n_steps, nfe, t0 = len(s) - 1, 0, time.perf_counter()
    # The first step whose state is non-finite, kept on the device: a per-step check would sync every step.
    first_bad = torch.full((), -1, dtype=torch.long, device=x.device)
    for i in tqdm(range(n_steps), disable=not progress, desc="diffusionpde", leave=False):
        with torch.enable_grad():
            x_cur = x.detach().requires_grad_(True)
            sig = x.new_full((x.shape[0],), s[i])
            x0 = denoiser(x_cur, sig, **cond)
            d = (x_cur - x0) / s[i]
            x_next = x_cur + (s[i + 1] - s[i]) * d
            nfe += 1
            if s[i + 1] > 0:
                x0 = denoiser(x_next, x.new_full((x.shape[0],), s[i + 1]), **cond)
                x_next = x_cur + (s[i + 1] - s[i]) * 0.5 * (d + (x_next - x0) / s[i + 1])
                nfe += 1
            energy = likelihood.energy(x0, sig)
            (g,) = torch.autograd.grad(energy.sum(), x_cur)
        x = (x_next - g).detach()
        first_bad = torch.where((first_bad < 0) & ~torch.isfinite(x).all(), i, first_bad)
        if callback is not None:
            callback({"x": x, "i": i, "sigma": s[i], "denoised": x0.detach(), "energy": energy.detach()})
    if not bool(first_bad < 0):  # one read at the end
        raise ValueError(f"the state turned non-finite (NaN or inf) at step {int(first_bad)} of {n_steps}: "
                         "lower the guidance weights")
    info = {"method": "diffusionpde", "steps": n_steps, "nfe": nfe, "wall_time_s": time.perf_counter() - t0}
    return Posterior(x, info=info)
