"""The data term: a Likelihood is a differentiable energy ``-log p(y | x)`` on the clean signal.

Samplers ask a Likelihood for what they need and fail clearly when it is missing:

* always: :meth:`Likelihood.energy` ``(B,)`` and :meth:`Likelihood.grad` (autograd by default);
* SMC: :meth:`Likelihood.laplacian` (Hutchinson by default, exact where known);
* linear-Gaussian: ``A``, ``A_adjoint``, ``A_dagger``, ``sigma_y`` (and an SVD where the operator has one).

Energies may depend on the noise level ``sigma`` of the current diffusion step (twisted SMC, event
sampling, DiffusionPDE's step-dependent weights), so every method takes an optional ``sigma``.
Likelihoods add (``l1 + l2``) and scale (``w * l``, where ``w`` may be a function of ``sigma``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ..diffusion._utils import check_finite
from ..diffusion.random import Generator, randn_like


class MissingCapability(NotImplementedError):
    """Raised when a sampler asks a Likelihood for something it cannot provide (e.g. an SVD)."""


class Likelihood:
    """Base class. Subclasses implement :meth:`energy`; everything else has a generic default."""

    def energy(self, x: Tensor, sigma: Tensor | None = None) -> Tensor:
        """``-log p(y | x)`` up to a constant, one value per batch item, shape ``(B,)``."""
        raise NotImplementedError

    def grad(self, x: Tensor, sigma: Tensor | None = None) -> Tensor:
        """``grad_x energy``, same shape as ``x``. Default: autograd."""
        return self.energy_and_grad(x, sigma)[1]

    def energy_and_grad(self, x: Tensor, sigma: Tensor | None = None) -> tuple[Tensor, Tensor]:
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            e = self.energy(x, sigma)
            (g,) = torch.autograd.grad(e.sum(), x)
        return e.detach(), g

    def laplacian(
        self, x: Tensor, sigma: Tensor | None = None, *, generator: Generator = None, num_probes: int = 1
    ) -> Tensor:
        """``Delta_x energy`` per item, ``(B,)``. Default: Hutchinson's estimator ``E[v^T H v]``, Rademacher ``v``."""
        total = x.new_zeros(x.shape[0])
        for _ in range(num_probes):
            v = torch.sign(randn_like(x, generator))
            with torch.enable_grad():
                xr = x.detach().requires_grad_(True)
                (g,) = torch.autograd.grad(self.energy(xr, sigma).sum(), xr, create_graph=True)
                (hv,) = torch.autograd.grad((g * v).sum(), xr)
            total = total + (hv * v).flatten(1).sum(1)
        return total / num_probes

    def require(self, capability: str):
        """Return the named capability (``"A"``, ``"A_adjoint"``, ``"svd"``...) or raise :class:`MissingCapability`."""
        value = getattr(self, capability, None)
        if value is None:
            raise MissingCapability(
                f"{type(self).__name__} does not provide {capability!r}; this sampler needs a likelihood "
                f"that does (e.g. a linear-Gaussian likelihood{' with a decomposable operator' if capability == 'svd' else ''})"
            )
        return value

    def __add__(self, other: Likelihood) -> SumLikelihood:
        if not isinstance(other, Likelihood):
            return NotImplemented
        return SumLikelihood([self, other])

    def __rmul__(self, weight: float | Callable[[Tensor], Tensor]) -> WeightedLikelihood:
        return WeightedLikelihood(self, weight)


class SumLikelihood(Likelihood):
    """``sum_i energy_i``: independent data terms (observations + PDE residual, several sensors...)."""

    def __init__(self, terms: list[Likelihood]):
        flat: list[Likelihood] = []
        for t in terms:
            flat.extend(t.terms if isinstance(t, SumLikelihood) else [t])
        self.terms = flat

    def energy(self, x, sigma=None):
        return sum(t.energy(x, sigma) for t in self.terms)

    def grad(self, x, sigma=None):
        return sum(t.grad(x, sigma) for t in self.terms)

    def laplacian(self, x, sigma=None, *, generator=None, num_probes=1):
        return sum(t.laplacian(x, sigma, generator=generator, num_probes=num_probes) for t in self.terms)


class WeightedLikelihood(Likelihood):
    """``w(sigma) * energy``: a fixed weight, or one that follows the schedule (a function of ``sigma``)."""

    def __init__(self, base: Likelihood, weight: float | Callable[[Tensor], Tensor]):
        self.base, self.weight = base, weight

    def _w(self, x: Tensor, sigma: Tensor | None) -> Tensor:
        if callable(self.weight):
            if sigma is None:
                raise ValueError("this likelihood's weight depends on sigma; pass the current noise level")
            return torch.as_tensor(self.weight(sigma), dtype=x.dtype, device=x.device).expand(x.shape[0])
        return torch.full((x.shape[0],), float(self.weight), dtype=x.dtype, device=x.device)

    def energy(self, x, sigma=None):
        return self._w(x, sigma) * self.base.energy(x, sigma)

    def grad(self, x, sigma=None):
        w = self._w(x, sigma).reshape(-1, *([1] * (x.ndim - 1)))
        return w * self.base.grad(x, sigma)

    def laplacian(self, x, sigma=None, *, generator=None, num_probes=1):
        return self._w(x, sigma) * self.base.laplacian(x, sigma, generator=generator, num_probes=num_probes)


class GaussianLikelihood(Likelihood):
    """``y = forward(x) + sigma_y n``: energy ``|y - forward(x)|^2 / (2 sigma_y^2)`` for any differentiable forward.

    ``y`` has batch size 1 (broadcast over samples/particles) or the batch size of ``x``.
    """

    def __init__(self, forward: Callable[[Tensor], Tensor], y: Tensor, sigma_y: float):
        if not sigma_y > 0:
            raise ValueError(f"sigma_y must be positive, got {sigma_y}")
        check_finite(y, "measurements y")
        self.forward, self.y, self.sigma_y = forward, y, float(sigma_y)

    def residual(self, x: Tensor) -> Tensor:
        ax = self.forward(x)
        if ax.shape[1:] != self.y.shape[1:]:
            raise ValueError(
                f"the operator maps x of shape {tuple(x.shape)} to {tuple(ax.shape)}, "
                f"which does not match the measurements y of shape {tuple(self.y.shape)}"
            )
        if self.y.shape[0] not in (1, ax.shape[0]):
            raise ValueError(f"y has batch size {self.y.shape[0]}; expected 1 or {ax.shape[0]}")
        return self.y - ax

    def energy(self, x, sigma=None):
        return self.residual(x).pow(2).flatten(1).sum(1) / (2 * self.sigma_y**2)

    @property
    def num_measurements(self) -> int:
        """Entries of one measurement (``y[0].numel()``); operators that zero-fill unmeasured entries say less."""
        return self.y[0].numel()


class LinearGaussianLikelihood(GaussianLikelihood):
    """``y = A x + sigma_y n`` with a linear ``A`` and its adjoint: exact gradient, constant Laplacian."""

    def __init__(
        self,
        A: Callable[[Tensor], Tensor],
        A_adjoint: Callable[[Tensor], Tensor],
        y: Tensor,
        sigma_y: float,
        *,
        A_dagger: Callable[[Tensor], Tensor] | None = None,
        svd=None,
    ):
        super().__init__(A, y, sigma_y)
        self.A, self.A_adjoint = A, A_adjoint
        self.svd = svd
        self._A_dagger = A_dagger

    def A_dagger(self, y: Tensor) -> Tensor:  # noqa: N802
        """Pseudo-inverse ``A^+ y``: the operator's own if given, else conjugate gradients on ``A^T A x = A^T y``."""
        if self._A_dagger is not None:
            return self._A_dagger(y)
        from ..kernels.cg import conjugate_gradient

        return conjugate_gradient(lambda v: self.A_adjoint(self.A(v)), self.A_adjoint(y))

    def grad(self, x, sigma=None):
        return -self.A_adjoint(self.residual(x)) / self.sigma_y**2

    @property
    def num_measurements(self) -> int:
        """Measured entries of one ``y``: with an SVD, the entries along non-zero singular values.

        An inpainting operator returns a full image with zeros where nothing was measured; its singular values
        are the mask, so only the observed pixels count (what a mean over the measurements should divide by).
        """
        if self.svd is None or not isinstance(self.svd.singular_values, Tensor):
            return super().num_measurements
        observed = (self.svd.singular_values != 0).double().mean()
        return max(1, round(float(observed) * super().num_measurements))

    def laplacian(self, x, sigma=None, *, generator=None, num_probes=1):
        """``tr(A^T A) / sigma_y^2`` (constant in ``x``), by Hutchinson's ``E[|A v|^2]`` with Rademacher ``v``.

        The Hessian is ``A^T A / sigma_y^2``, so no second-order autograd is needed.
        """
        total = x.new_zeros(x.shape[0])
        for _ in range(num_probes):
            v = torch.sign(randn_like(x, generator))
            total = total + self.A(v).pow(2).flatten(1).sum(1)
        return total / (num_probes * self.sigma_y**2)

    def energy_and_grad(self, x, sigma=None):
        r = self.residual(x)
        return r.pow(2).flatten(1).sum(1) / (2 * self.sigma_y**2), -self.A_adjoint(r) / self.sigma_y**2

    @classmethod
    def from_matrix(cls, matrix: Tensor, y: Tensor, sigma_y: float, shape) -> LinearGaussianLikelihood:
        """A dense ``(m, d)`` matrix acting on ``x`` of event shape ``shape`` (``d = prod(shape)``).

        The likelihood carries the matrix's thin SVD, so SVD-space samplers (MCGdiff, RED-Diff's truncated
        pseudo-inverse) run on it.
        """
        shape = tuple(shape)
        matrix = torch.as_tensor(matrix)

        def A(x):  # noqa: N802
            return x.reshape(x.shape[0], -1) @ matrix.T.to(x.dtype)

        def A_adjoint(r):  # noqa: N802
            return (r @ matrix.to(r.dtype)).reshape(r.shape[0], *shape)

        pinv_t = torch.linalg.pinv(matrix.double()).T

        def A_dagger(v):  # noqa: N802
            return (v @ pinv_t.to(v.dtype)).reshape(v.shape[0], *shape)

        return cls(A, A_adjoint, y.reshape(-1, matrix.shape[0]), sigma_y, A_dagger=A_dagger,
                   svd=_dense_svd(matrix, shape))


def _dense_svd(matrix: Tensor, shape: tuple[int, ...]):
    """The thin SVD ``matrix = U diag(s) V^T`` as an :class:`~scidiff.likelihoods.physics.SVD`.

    Spectral coordinates are ``(B, r)`` with ``r = min(m, d)``: ``V`` has orthonormal columns, so ``V(V_adjoint(x))``
    is the projection of ``x`` on the row space (the rest of ``x`` is unobserved).
    """
    from .physics import SVD

    u, s, vh = torch.linalg.svd(matrix.double(), full_matrices=False)

    def U(c):  # noqa: N802
        return c @ u.T.to(c.dtype)

    def U_adjoint(r):  # noqa: N802
        return r.reshape(r.shape[0], -1) @ u.to(r.dtype)

    def V(c):  # noqa: N802
        return (c @ vh.to(c.dtype)).reshape(c.shape[0], *shape)

    def V_adjoint(x):  # noqa: N802
        return x.reshape(x.shape[0], -1) @ vh.T.to(x.dtype)

    return SVD(U, U_adjoint, V, V_adjoint, s)
