"""User-defined events: conditional sampling and event probabilities with a diffusion prior.

Finzi, Boral, Wilson, Sha, Zepeda-Núñez, "User-defined Event Sampling and Uncertainty Quantification in Diffusion
Models for Physical Dynamical Systems" (ICML 2023, arXiv 2306.07526). An event is ``E = {x : C(x) > 0}`` for any
differentiable ``C``. The score of the event-conditioned law at noise level ``sigma`` is

    grad log p_sigma(x | E) = grad log p_sigma(x) + grad log P(E | x_sigma = x),

and the paper approximates ``x0 | x_sigma`` by a Gaussian around the Tweedie mean ``x0_hat = D(x, sigma)`` with
covariance ``sigma^2 dD/dx`` (Tweedie's second moment), linearising ``C`` at ``x0_hat``:

    P(E | x) ≈ Phi(C(x0_hat) / s),    s^2 = sigma^2 grad C(x0_hat)^T (dD/dx) grad C(x0_hat).

``s^2`` costs one vector-Jacobian product, ``grad_x C(D(x))``, which the guidance gradient needs anyway, so one
conditional step costs one denoiser forward and one backward pass (as DPS). The approximation is exact for a
Gaussian prior and a linear ``C`` and becomes exact as ``sigma -> 0``. scidiff uses the exact ``log Phi``
(``torch.special.log_ndtr``) where the paper's code uses ``Phi(z) ≈ sigmoid(1.6 z)``: the tails are what rare
events are about. ``s`` is treated as a constant when differentiating (a second derivative of the network
would be needed otherwise, and it vanishes in the Gaussian/linear case).

The conditional denoiser ``D_E(x) = D(x) + sigma^2 grad log P(E | x)`` is itself a Denoiser, so every sampler of
:mod:`scidiff.diffusion` samples ``p(x | E)`` with it, and the probability-flow likelihood of
:mod:`scidiff.diffusion.likelihood` gives ``log p(x | E)``; the event probability is then (paper, Sec. 4)

    log P(E) = log p(x) - log p(x | E)   for any x in E.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor
from torch.nn.attention import SDPBackend, sdpa_kernel
from tqdm.auto import tqdm

from ..diffusion import sample as _sample
from ..diffusion._utils import append_dims, as_sigma_batch, check_finite, host_sigmas
from ..diffusion.likelihood import probability_flow_log_likelihood
from ..diffusion.random import Generator, randn, randn_like

EventFn = Callable[[Tensor], Tensor]
LINKS = ("probit", "logistic")
VARIANCES = ("jacobian", "squared")


# --- event functions ------------------------------------------------------------------------------
def linear_event(a: Tensor, b: float) -> EventFn:
    """``C(x) = <a, x> - b`` (the event is ``a . x > b``); ``a`` has the event shape or is flat."""
    a = torch.as_tensor(a)
    check_finite(a, "event direction a")

    def event(x: Tensor) -> Tensor:
        return x.flatten(1) @ a.reshape(-1).to(x) - b

    return event


def threshold_event(
    variable: int,
    threshold: float,
    *,
    reduce: str = "max",
    times: slice | Sequence[int] = slice(None),
    above: bool = True,
) -> EventFn:
    """An event on one variable of a trajectory ``(B, variables, time)`` over a window of times.

    ``reduce="max"``: ``max_t x_v(t) > threshold`` (``above=False``: ``min_t x_v(t) < threshold``);
    ``reduce="mean"``: the time average crosses the threshold. The maximum is differentiable almost everywhere
    (its gradient picks the arg-max time), which is what the Tweedie linearisation needs.
    """
    if reduce not in ("max", "mean"):
        raise ValueError(f"reduce must be 'max' or 'mean', got {reduce!r}")
    index = times if isinstance(times, slice) else torch.as_tensor(list(times), dtype=torch.long)

    def event(x: Tensor) -> Tensor:
        if x.ndim != 3 or not 0 <= variable < x.shape[1]:
            raise ValueError(
                f"threshold_event expects trajectories (B, variables, time) with variable {variable} in range; "
                f"got x of shape {tuple(x.shape)}"
            )
        window = x[:, variable, index] if isinstance(index, slice) else x[:, variable].index_select(1, index.to(x.device))
        sign = 1.0 if above else -1.0
        value = sign * window
        stat = value.amax(1) if reduce == "max" else value.mean(1)
        return stat - sign * threshold

    return event


# --- a check of the Tweedie-probit approximation on data ---------------------------------------------
def guidance_calibration(
    denoiser,
    event: EventFn,
    x0: Tensor,
    sigmas: Sequence[float],
    *,
    transform: Callable[[Tensor], Tensor] | None = None,
    eps: float = 1e-6,
    batch_size: int = 512,
    generator: Generator = None,
) -> list[dict]:
    """How well ``Phi(C(x0_hat) / s)`` approximates ``P(E | x_sigma)``, checked on clean data ``x0`` (prior units).

    The exact ``P(E | x_sigma)`` obeys the law of total probability at every level, ``E_{x_sigma}[P(E | x_sigma)] =
    P(E)``, and is calibrated: among noised windows given probability ``p``, a share ``p`` of the clean windows lies
    in the event. With ``x_sigma = x0 + sigma n`` for data windows ``x0``, both are checked per level against the
    indicator ``C(x0) > 0``. For a Gaussian prior and a linear event the approximation is exact; for an event through
    a maximum over time, ``C(E[x0 | x]) < E[C(x0) | x]`` (Jensen) and the linearisation sees one time only, so at
    large ``sigma`` the approximation is far from the truth where the truth is nearly uninformative. A sampler that
    follows the probability-flow ODE transports these errors to ``sigma = 0``.

    Returns one row per level: ``{"sigma", "p_event"`` (share of ``x0`` in E), ``"mean_phi"`` (should equal
    ``p_event``), ``"mean_phi_in"``, ``"mean_phi_out"`` (means over windows inside/outside E), ``"log_score"``
    (mean Bernoulli log-likelihood of the indicators; ``p log p + (1-p) log(1-p)`` is that of the constant
    ``P(E)``)``}``.
    """
    check_finite(x0, "x0")
    cond = EventConditionedDenoiser(denoiser, event, transform=transform, eps=eps)
    with torch.no_grad():
        y = torch.cat([cond.event_value(chunk) > 0 for chunk in x0.split(batch_size)])
    if not 0 < int(y.sum()) < len(y):
        raise ValueError("the data must hold windows both inside and outside the event")
    rows = []
    for sigma in sigmas:
        if not float(sigma) > 0:
            raise ValueError(f"noise levels must be positive; got {sigma}")
        noise = randn(x0.shape, generator, device=x0.device, dtype=x0.dtype)
        log_phi = torch.cat([cond.guidance(chunk + float(sigma) * n, float(sigma))[2].double().cpu()
                             for chunk, n in zip(x0.split(batch_size), noise.split(batch_size))])
        phi, yc = log_phi.exp(), y.cpu()
        log_score = torch.where(yc, log_phi, torch.log1p(-phi.clamp_max(1 - 1e-12)))
        rows.append({"sigma": float(sigma), "p_event": float(yc.double().mean()), "mean_phi": float(phi.mean()),
                     "mean_phi_in": float(phi[yc].mean()), "mean_phi_out": float(phi[~yc].mean()),
                     "log_score": float(log_score.mean())})
    return rows


# --- the event-conditioned denoiser -------------------------------------------------------------
class EventConditionedDenoiser:
    """``D_E(x, sigma) = D(x, sigma) + sigma^2 grad_x log Phi(C(x0_hat) / s)``: a Denoiser of ``p(x | C(x) > 0)``.

    Args:
        denoiser: the prior's denoiser (differentiable in ``x``).
        event: ``C``, one value per batch item; evaluated on ``transform(x0_hat)``.
        transform: maps the denoiser's units to the event's (e.g. ``prior.denormalize`` for a prior trained on
            standardised data); must be differentiable.
        eps: floor added to ``grad C^T (dD/dx) grad C`` (the paper's code uses ``1e-3``); keeps ``s > 0`` where
            the denoiser's Jacobian annihilates ``grad C``.
        scale: multiplies the guidance term (1 is the paper's conditional score).
        link: ``"probit"`` -- the exact ``log Phi``; ``"logistic"`` -- the paper code's ``log sigmoid(1.6 z)``,
            whose slope is bounded by 1.6 far outside the event (a gentler pull, where ``log Phi``'s slope grows
            like ``|z|`` and acts as a projection onto the event's boundary).
        sigma_max: no guidance above this noise level (the prior's denoiser alone). There the exact
            ``P(E | x_sigma)`` is nearly the constant ``P(E)`` (zero guidance), while the approximation can be far
            from it for a nonlinear ``C`` (:func:`guidance_calibration` shows where: levels whose log score is
            worse than the constant's). ``inf``: the paper's guidance at every level.
        variance: ``"jacobian"`` -- the paper's ``s^2 = sigma^2 grad C^T (dD/dx) grad C``; ``"squared"`` --
            ``s^2 = sigma^2 |(dD/dx)^T grad C|^2``, free (the guidance's VJP) and never negative. For an exact
            denoiser ``dD/dx`` is symmetric with eigenvalues in ``[0, 1]``, so ``J^2 <= J`` and the two agree where
            ``J`` is a projection (data on a low-dimensional manifold at small ``sigma``); a trained network's
            ``grad C^T J grad C`` along a direction nearly orthogonal to the data (one time of a smooth trajectory)
            is a small difference of noisy terms, often negative (27-42 % of noised Lorenz-63 windows for a
            window maximum), which makes ``s`` erratic. Exact for a Gaussian prior and a linear event only with
            ``"jacobian"``.
        s_floor: a lower bound on ``s``, in the units of ``C``. ``s -> 0`` as ``sigma -> 0``, so at small levels
            ``Phi`` becomes a hard indicator of ``C(x0_hat) > 0`` and its ratios between levels swing the SMC
            weights by orders of magnitude wherever ``x0_hat`` is off; the floor makes the twist trust ``Phi``
            less there. Any positive twist keeps :func:`sample_event_smc` consistent (Wu et al. 2023), so the
            floor changes the spread of its weights, not its target; for the guided samplers alone it changes
            the law (weaker guidance at small ``sigma``).
    """

    def __init__(self, denoiser, event: EventFn, *, transform: Callable[[Tensor], Tensor] | None = None,
                 eps: float = 1e-6, scale: float = 1.0, link: str = "probit", sigma_max: float = math.inf,
                 variance: str = "jacobian", s_floor: float = 0.0):
        if not callable(event):
            raise TypeError("event must be a callable C(x) -> (B,) tensor")
        if eps < 0:
            raise ValueError(f"eps must be >= 0, got {eps}")
        if link not in LINKS:
            raise ValueError(f"link must be one of {LINKS}, got {link!r}")
        if not sigma_max > 0:
            raise ValueError(f"sigma_max must be positive, got {sigma_max}")
        if variance not in VARIANCES:
            raise ValueError(f"variance must be one of {VARIANCES}, got {variance!r}")
        if not (s_floor >= 0 and math.isfinite(s_floor)):
            raise ValueError(f"s_floor must be finite and >= 0, got {s_floor}")
        self.variance, self.s_floor = variance, float(s_floor)
        self.sigma_max = float(sigma_max)
        self.denoiser, self.event, self.transform = denoiser, event, transform
        self.eps, self.scale, self.link = float(eps), float(scale), link

    def event_value(self, x0: Tensor) -> Tensor:
        c = self.event(self.transform(x0) if self.transform is not None else x0)
        if c.shape != (x0.shape[0],):
            raise ValueError(f"the event function must return one value per batch item, shape ({x0.shape[0]},); "
                             f"got {tuple(c.shape)}")
        return c

    def _c_and_s(self, xr: Tensor, sigma: Tensor, cond: dict, create_graph: bool = False):
        """``x0_hat``, ``C(x0_hat)``, the paper's ``s`` and ``grad_x C(D(x))`` (one VJP through the network)."""
        x0 = self.denoiser(xr, sigma, **cond)
        c = self.event_value(x0)
        # grad C at x0_hat (no network) and grad_x C(D(x))
        (grad_c,) = torch.autograd.grad(c.sum(), x0, retain_graph=True)
        (grad_x,) = torch.autograd.grad(c.sum(), xr, create_graph=create_graph, retain_graph=create_graph)
        if self.variance == "jacobian":
            quad = (grad_c.detach() * grad_x.detach()).flatten(1).sum(1).abs()
        else:
            quad = grad_x.detach().flatten(1).square().sum(1)
        return x0, c, (sigma * (quad + self.eps).sqrt()).clamp_min(self.s_floor), grad_x

    def guidance(self, x: Tensor, sigma: Tensor | float, **cond) -> tuple[Tensor, Tensor, Tensor]:
        """``x0_hat``, ``grad_x log P(E | x)`` and ``log P(E | x)`` (differentiable in ``x`` when it needs grad)."""
        sigma = as_sigma_batch(sigma, x)
        outer = torch.is_grad_enabled() and x.requires_grad  # inside a divergence computation: keep the graph
        # The divergence of D_E differentiates a gradient: fused attention kernels have no double backward on
        # every device, the reference ("math") kernel does.
        with torch.enable_grad(), (sdpa_kernel(SDPBackend.MATH) if outer else contextlib.nullcontext()):
            xr = x if outer else x.detach().requires_grad_(True)
            x0, c, s, grad_x = self._c_and_s(xr, sigma, cond, create_graph=outer)
        z = c / s
        if self.link == "probit":
            log_phi = torch.special.log_ndtr(z)
            # d log Phi / dz = phi(z) / Phi(z), computed in logs so that it stays finite deep in the tail
            ratio = torch.exp(-0.5 * z**2 - 0.5 * torch.log(torch.tensor(2 * torch.pi, dtype=z.dtype)) - log_phi)
        else:
            log_phi = torch.nn.functional.logsigmoid(1.6 * z)
            ratio = 1.6 * torch.sigmoid(-1.6 * z)
        grad = append_dims(ratio / s, x.ndim) * grad_x
        if not outer:
            x0, grad, log_phi = x0.detach(), grad.detach(), log_phi.detach()
        return x0, grad, log_phi

    def __call__(self, x: Tensor, sigma: Tensor | float, **cond) -> Tensor:
        sig = append_dims(as_sigma_batch(sigma, x), x.ndim)
        x0, grad, _ = self.guidance(x, sigma, **cond)
        return x0 + self.scale * sig**2 * grad * (sig <= self.sigma_max)


def _twisted(cond: EventConditionedDenoiser, x: Tensor, sigma: float, weight: float):
    """``cond.guidance`` with the twist raised to ``weight``: ``(x0_hat, weight grad log Phi, weight log Phi)``;
    ``weight = 0`` is the prior alone (zeros, since ``log Phi`` may be ``-inf`` far outside the event)."""
    x0, grad, log_phi = cond.guidance(x, sigma)
    if weight == 0.0:
        return x0, torch.zeros_like(grad), torch.zeros_like(log_phi)
    return x0, weight * grad, weight * log_phi


@torch.no_grad()
def event_mala_move(
    cond: EventConditionedDenoiser,
    x: Tensor,
    sigma: float,
    step: float,
    *,
    state: tuple[Tensor, Tensor, Tensor] | None = None,
    twist_weight: float = 1.0,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, tuple[Tensor, Tensor, Tensor], Tensor]:
    """One Metropolis-adjusted Langevin move per particle at noise level ``sigma``, targeting ``p_sigma(x) psi(x)``.

    ``psi = Phi(C(x0_hat)/s)^twist_weight`` is the event twist of :class:`EventConditionedDenoiser`, so the target's
    score is the conditional denoiser's, ``(D(x) - x) / sigma^2 + grad log psi`` (Tweedie), and the proposal is the
    Langevin step ``x' = x + eps score(x) + sqrt(2 eps) n`` with ``eps = step sigma^2`` (Roberts & Tweedie 1996).
    The Metropolis ratio needs ``log p_sigma(x') - log p_sigma(x)``, which a score network does not give: it is the
    line integral of the score from ``x`` to ``x'``, taken by the trapezoid rule (Sjöberg et al. 2023,
    "MCMC-correction of score-based diffusion models for model composition"); exact when ``p_sigma`` is Gaussian,
    with an error of third order in the jump otherwise. ``log psi`` enters exactly.

    Used after resampling in :func:`sample_event_smc` (resample-move, Gilks & Berzuini 2001): the copies that
    resampling makes of one particle move apart while the level's target is kept.

    Args:
        cond: the conditional denoiser (its ``sigma_max`` is not applied here: ``twist_weight=0`` turns the twist off).
        x: ``(N, ...)`` particles in the denoiser's units.
        state: ``(x0_hat, grad log psi, log psi)`` at ``x`` if already known (saves one network call).
        generator: one ``torch.Generator`` for the whole batch.

    Returns:
        the moved particles, their ``(x0_hat, grad log psi, log psi)`` and the ``(N,)`` bool mask of accepted moves.
    """
    if not step > 0:
        raise ValueError(f"the Langevin step must be positive, got {step}")

    x0, grad, log_psi = _twisted(cond, x, sigma, twist_weight) if state is None else state
    eps, s2 = step * sigma**2, sigma**2
    score = (x0 - x) / s2 + grad
    proposal = x + eps * score + math.sqrt(2 * eps) * randn_like(x, generator)
    x0_p, grad_p, log_psi_p = _twisted(cond, proposal, sigma, twist_weight)
    score_p = (x0_p - proposal) / s2 + grad_p
    jump = (proposal - x).flatten(1)
    # log p_sigma(x') - log p_sigma(x): trapezoid rule for the prior's score along the segment
    log_p = 0.5 * (jump * ((x0 - x) / s2 + (x0_p - proposal) / s2).flatten(1)).sum(1)
    forward = (proposal - x - eps * score).flatten(1).square().sum(1)
    backward = (x - proposal - eps * score_p).flatten(1).square().sum(1)
    log_alpha = log_p + log_psi_p - log_psi + (forward - backward) / (4 * eps)
    u = torch.rand(log_alpha.shape, generator=generator, device=generator.device if generator is not None else x.device)
    accept = torch.log(u.to(log_alpha)) < log_alpha
    keep = append_dims(accept, x.ndim)
    moved = tuple(torch.where(append_dims(accept, a.ndim), b, a)
                  for a, b in ((x0, x0_p), (grad, grad_p), (log_psi, log_psi_p)))
    return torch.where(keep, proposal, x), moved, accept


@torch.no_grad()
def sample_event_smc(
    denoiser,
    event: EventFn,
    shape: Sequence[int],
    sigmas: Tensor,
    *,
    transform: Callable[[Tensor], Tensor] | None = None,
    threshold: float = 0.5,
    scheme: str = "systematic",
    base: str = "euler_maruyama",
    generator: torch.Generator | None = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float32,
    progress: bool = False,
    twist_levels: int = 1,
    rejuvenate: int = 0,
    langevin_step: float = 0.5,
    target_acceptance: float = 0.574,
    move_sigma_min: float = 0.0,
    late_threshold: float | None = None,
    late_sigma: float = 0.3,
    **guidance_kwargs,
) -> dict:
    """Event sampling corrected by sequential Monte Carlo: the paper's ``Phi(C(x0_hat)/s)`` as a twisting function.

    The twisted diffusion sampler (Wu, Trippe, Naesseth, Blei, Cunningham, NeurIPS 2023) applied to an event: the
    ``N = shape[0]`` particles follow a guided reverse chain (``base``, with the conditional denoiser) and carry
    weights that make the approximation of ``P(E | x_sigma)`` a proposal instead of an assumption. With
    ``Phi_i(x) = Phi(C(x0_hat)/s)`` at ``sigma_i``, the unguided transition ``p`` and the guided one ``q`` (same
    variance ``h = sigma_i^2 - sigma_{i+1}^2``, means ``h sigma_i^2 grad log Phi_i`` apart), each step multiplies
    the weight by ``p(x' | x) Phi_{i+1}(x') / (q(x' | x) Phi_i(x))``; the last step returns the prior's Tweedie
    mean ``D(x, sigma_min)`` with weight ``1[C > 0] / Phi_min(x)``. The weighted particles target ``p(x | E)``
    exactly as ``N`` grows, whatever the quality of the approximation, which only sets the variance of the weights
    (the effective sample size, returned). Resampling (``scheme``) when the ESS falls below ``threshold N``.
    ``base``: the unguided chain whose law (conditioned on E) is targeted -- ``"euler_maruyama"`` (the reverse SDE)
    or ``"ancestral"`` (DDPM steps given ``x0_hat``, as TDS); both are discretisations, exact as the steps shrink.
    On the Lorenz-63 prior with 24 levels the ancestral chain places rare-event particles on the event's boundary
    (its small step variance follows the twist's projection), which the weights cannot undo; the reverse SDE keeps
    them spread (``docs/events.md``).

    ``guidance_kwargs`` go to :class:`EventConditionedDenoiser` (``eps``, ``link``, ``variance``, ``sigma_max``:
    no twist above that level, where a confident wrong ``Phi`` would collapse the weights). Cost: one
    forward and one VJP per particle and level, as the guided samplers.

    The particles start from the chain's first level with weight ``Phi_0`` (one at and above ``sigma_max``), so
    the mean of the unnormalised final weights is an unbiased estimate of the base chain's ``P(E)`` (the
    normalising constant of SMC, Del Moral 2004; Wu et al. 2023), kept across resampling steps by adding
    ``log mean w`` whenever the weights are reset. The weights cannot show how many independent paths the final
    particles stand for: resampling copies particles, so after a step of low ESS the final ones descend from few
    ancestors. ``"lineages"`` counts the distinct particles of the first level among the final particles' ancestors
    (at most ``N``): a KS test of the draws is only as strong as that number allows.

    ``late_threshold``: the ESS threshold at levels below ``late_sigma`` (default: ``threshold``). Each resampling
    cuts lineages, and at small ``sigma`` the twist is a near-indicator whose weight swings come from the
    denoiser's error more than from the event; a lower threshold there resamples less often (any threshold keeps
    the estimator consistent: resampling only redistributes the weights, Del Moral 2004), at the price of a
    smaller final ESS. :func:`pool_event_smc` combines independent runs.

    Returns:
        ``{"samples"`` (``N`` draws from the final weighted particles, in the denoiser's units), ``"particles"``,
        ``"log_weights"`` (normalised), ``"ess"`` (after each step, before resampling), ``"resampled"`` (number of
        resampling steps), ``"in_event"`` (share of final particles inside E), ``"log_evidence"`` (``log`` of the
        estimate of ``P(E)``), ``"lineages"`` (distinct first-level ancestors of the final particles in E),
        ``"acceptance"`` (mean acceptance of the rejuvenation moves, NaN without them), ``"moves"`` (levels at which
        particles were moved), ``"langevin_step"`` (the tuned step, in units of ``sigma^2``)``}``.
    """
    from ..kernels.particles import gather_particles, normalize_log_weights, resample, resample_if

    if base not in ("ancestral", "euler_maruyama"):
        raise ValueError(f"base must be 'ancestral' or 'euler_maruyama', got {base!r}")
    cond = EventConditionedDenoiser(denoiser, event, transform=transform, **guidance_kwargs)
    s = host_sigmas(sigmas)
    if s[-1] != 0.0 or len(s) < 3:
        raise ValueError("sigmas must hold at least two positive levels and end with 0")
    if twist_levels < 1 or rejuvenate < 0:
        raise ValueError(f"twist_levels must be >= 1 and rejuvenate >= 0; got {twist_levels} and {rejuvenate}")
    if not 0 < target_acceptance < 1:
        raise ValueError(f"target_acceptance must lie in (0, 1), got {target_acceptance}")
    late_threshold = threshold if late_threshold is None else late_threshold
    if not (late_threshold >= 0 and late_sigma >= 0):
        raise ValueError(f"late_threshold and late_sigma must be >= 0; got {late_threshold} and {late_sigma}")
    # the twist's exponent per level: 0 above sigma_max (Phi = 1 there), then rising to 1 over twist_levels levels
    twisted_levels = [i for i, sig in enumerate(s[:-1]) if sig <= cond.sigma_max]
    first = twisted_levels[0] if twisted_levels else len(s)
    power = [min(1.0, (i - first + 1) / twist_levels) if i >= first else 0.0 for i in range(len(s) - 1)]

    def twist(x: Tensor, i: int):
        return _twisted(cond, x, s[i], power[i])

    x = randn(shape, generator, device=device, dtype=dtype) * s[0]
    x0, grad, log_phi = twist(x, 0)
    # the first level's target is p_0(x) Phi_0(x): particles drawn from p_0 carry the weight Phi_0
    log_w = log_phi.double()
    log_z = torch.zeros((), dtype=torch.float64, device=x.device)  # log of the estimate of P(E), before log_w
    origin = torch.arange(shape[0], device=x.device)
    log_n = math.log(shape[0])
    ess, resampled = [], []  # kept on the device, read once at the end (no host sync per level)
    accepted, moves, log_step = [], 0, math.log(langevin_step)
    for i in tqdm(range(len(s) - 2), disable=not progress, desc="event SMC", leave=False):
        # the ancestral (DDPM posterior) step given x0_hat, in sigma space: mean x0 + (s'^2/s^2)(x - x0),
        # variance s'^2 h / s^2; the guided x0_hat + s^2 grad log Phi shifts the mean by h grad log Phi
        h = s[i] ** 2 - s[i + 1] ** 2
        if base == "ancestral":
            var = s[i + 1] ** 2 * h / s[i] ** 2
            mean = x0 + (x - x0) * (s[i + 1] ** 2 / s[i] ** 2)
        else:  # Euler--Maruyama on the reverse SDE
            var = h
            mean = x + (x0 - x) * (h / s[i] ** 2)
        shift = h * grad
        x_next = mean + shift + math.sqrt(var) * randn_like(x, generator)
        x0_next, grad_next, log_phi_next = twist(x_next, i + 1)
        # log p(x'|x) - log q(x'|x), two Gaussians of variance var: (|x' - m_q|^2 - |x' - m_p|^2) / (2 var)
        noise = (x_next - mean - shift).flatten(1)
        log_ratio = (noise.square().sum(1) - (noise + shift.flatten(1)).square().sum(1)) / (2 * var)
        log_w = log_w + (log_ratio + log_phi_next - log_phi).double()
        w_norm = normalize_log_weights(log_w)
        ess.append(1.0 / w_norm.exp().square().sum())
        # resample_if normalises the weights, or resets them to zero (each then 1/N of the old total)
        total = torch.logsumexp(log_w, 0)
        level_threshold = late_threshold if s[i + 1] < late_sigma else threshold
        ancestors, log_w, did = resample_if(log_w, level_threshold, scheme, generator=generator)
        log_z = log_z + total - log_n * did
        resampled.append(did)
        origin = origin[ancestors]
        x, x0, grad, log_phi = (gather_particles(t, ancestors) for t in (x_next, x0_next, grad_next, log_phi_next))
        if rejuvenate and s[i + 1] >= move_sigma_min and bool(did):  # resample-move (one host sync)
            moves += 1
            for _ in range(rejuvenate):
                x, (x0, grad, log_phi), ok = event_mala_move(cond, x, s[i + 1], math.exp(log_step),
                                                             state=(x0, grad, log_phi), twist_weight=power[i + 1],
                                                             generator=generator)
                rate = float(ok.double().mean())
                accepted.append(rate)
                log_step += rate - target_acceptance
    inside = cond.event_value(x0) > 0
    log_w = log_w - log_phi.double() + torch.where(inside, 0.0, -math.inf).to(log_w)
    if not bool(inside.any()):
        raise RuntimeError("no particle ended inside the event: increase the number of particles")
    log_z = log_z + torch.logsumexp(log_w, 0) - log_n  # the mean of the final unnormalised weights
    log_w = normalize_log_weights(log_w)
    draws = gather_particles(x0, resample(log_w, scheme, generator=generator))
    ess.append(1.0 / log_w.exp().square().sum())
    return {"samples": draws, "particles": x0, "log_weights": log_w, "ess": torch.stack(ess).tolist(),
            "resampled": int(torch.stack(resampled).sum()) if resampled else 0,
            "in_event": float(inside.float().mean()), "log_evidence": float(log_z),
            "lineages": int(origin[inside].unique().numel()),
            "acceptance": sum(accepted) / len(accepted) if accepted else math.nan, "moves": moves,
            "langevin_step": math.exp(log_step)}


def pool_event_smc(runs: Sequence[dict], *, scheme: str = "systematic", generator: torch.Generator | None = None,
                   num_samples: int | None = None) -> dict:
    """Independent runs of :func:`sample_event_smc` pooled into one weighted population of ``p(x | E)``.

    Run ``r`` holds normalised weights ``w_r`` and an unbiased evidence ``Z_r`` of ``P(E)``; the pooled particles
    carry ``w_r Z_r / sum_r Z_r`` and the pooled evidence is the mean of the ``Z_r`` (the island / parallel
    combination of SMC samplers: consistent as the runs grow in number or size, and unbiased for ``P(E)``;
    Vergé, Dubarry, Del Moral & Moulines 2015; Whiteley, Lee & Heine 2016). Pooling ``R`` runs of ``N / R``
    particles costs what one run of ``N`` costs; the runs share no resampling, so one run's collapse onto few
    lineages does not reach the others, and the lineages add up.

    Returns:
        ``{"samples"`` (``num_samples`` draws, default the total particle count), ``"particles"``, ``"log_weights"``
        (normalised over the pool), ``"log_evidence"``, ``"lineages"`` (summed over runs), ``"ess"`` (of the pooled
        weights), ``"run_weights"`` (each run's share ``Z_r / sum Z``)``}``.
    """
    from ..kernels.particles import gather_particles, normalize_log_weights, resample

    if len(runs) < 1:
        raise ValueError("pool_event_smc needs at least one run")
    shapes = {tuple(r["particles"].shape[1:]) for r in runs}
    if len(shapes) != 1:
        raise ValueError(f"the runs' particles must share one shape per particle; got {sorted(shapes)}")
    log_z = torch.tensor([r["log_evidence"] for r in runs], dtype=torch.float64)
    if not bool(torch.isfinite(log_z).all()):
        raise ValueError(f"every run needs a finite log_evidence; got {log_z.tolist()}")
    device = runs[0]["log_weights"].device
    log_share = (log_z - torch.logsumexp(log_z, 0)).to(device)
    log_w = normalize_log_weights(torch.cat([r["log_weights"].double() + log_share[k] for k, r in enumerate(runs)]))
    particles = torch.cat([r["particles"] for r in runs])
    index = resample(log_w, scheme, generator=generator, num_samples=num_samples)
    return {"samples": gather_particles(particles, index), "particles": particles, "log_weights": log_w,
            "log_evidence": float(torch.logsumexp(log_z, 0) - math.log(len(runs))),
            "lineages": sum(int(r["lineages"]) for r in runs), "ess": float(1.0 / log_w.exp().square().sum()),
            "run_weights": log_share.exp().tolist()}


def sample_event(
    denoiser,
    event: EventFn,
    shape: Sequence[int],
    sigmas: Tensor,
    *,
    transform: Callable[[Tensor], Tensor] | None = None,
    sampler: str = "heun",
    generator: Generator = None,
    eps: float = 1e-6,
    link: str = "probit",
    sigma_max: float = math.inf,
    variance: str = "jacobian",
    **kwargs,
) -> Tensor:
    """``shape[0]`` samples of ``p(x | C(x) > 0)`` (in the denoiser's units).

    ``sampler``: any name of :data:`scidiff.diffusion.samplers.SAMPLERS` -- ``"heun"`` (deterministic, the
    probability-flow ODE; ``s_churn > 0`` adds EDM's churn), ``"euler_maruyama"`` (the reverse SDE), ``"pc"``
    (:func:`~scidiff.diffusion.samplers.sample_predictor_corrector`: reverse SDE + Langevin corrector;
    ``corrector_steps``, ``snr``, ``corrector_sigma_max`` go through ``kwargs``). All use the conditional denoiser
    :class:`EventConditionedDenoiser` (``sigma_max``: guidance only at and below that level); cost per guided
    denoiser call: one forward and one VJP through the network.

    ``sampler="splitting"`` draws instead from the prior's own conditional law, with no guidance and no
    approximation: :func:`~scidiff.dynamics.sample_event_splitting` (subset simulation in the latent space of the
    deterministic sampler, then thinned pCN chains inside the event; its options -- ``n_level``, ``chains``,
    ``thin``, ``burn``, ``level_fraction``, ``beta``, ``batch_size`` -- go through ``kwargs``; ``generator`` must
    be one ``torch.Generator``). It needs no network gradient; call it directly for ``P(E)`` and the effective
    sample size.
    """
    if sampler == "splitting":
        from .splitting import sample_event_splitting

        return sample_event_splitting(denoiser, event, shape, sigmas, transform=transform, generator=generator,
                                      **kwargs)["samples"]
    conditional = EventConditionedDenoiser(denoiser, event, transform=transform, eps=eps, link=link,
                                           sigma_max=sigma_max, variance=variance)
    return _sample(conditional, shape, sigmas, sampler=sampler, generator=generator, **kwargs)


def event_log_probability(
    denoiser,
    event: EventFn,
    x: Tensor,
    sigmas: Tensor,
    *,
    transform: Callable[[Tensor], Tensor] | None = None,
    divergence: str = "auto",
    num_probes: int = 1,
    sigma_data: float = 1.0,
    eps: float = 1e-6,
    sigma_start: float | None = None,
    generator: Generator = None,
    progress: bool = False,
) -> dict:
    """Estimate ``log P(C(x) > 0)`` from samples ``x`` of the event (Finzi et al. 2023, Sec. 4).

    Each sample inside the event gives ``log p(x) - log p(x | E)`` with both log-densities from the
    probability-flow ODE (:func:`~scidiff.diffusion.likelihood.probability_flow_log_likelihood`); the estimate is
    their mean. Samples outside the event (``C(x) <= 0``) are dropped: ``p(x | E) = 0`` there.

    ``sigma_start``: Bayes' rule holds at every noise level, ``p_sigma(x | E) = p_sigma(x) P(E | x_sigma = x) / P(E)``,
    so ``log P(E) = log p_sigma(x) - log p_sigma(x | E) + log P(E | x_sigma = x)`` for any ``x``. With
    ``sigma_start > 0`` the samples are noised to that level (``x + sigma_start n``, a sample of ``p_sigma(. | E)``),
    both integrals start there, and the last term is the Tweedie approximation ``log Phi(C(x0_hat)/s)``. This
    avoids the stiff end of the conditional ODE near ``sigma = 0``, where ``s -> 0`` and the guidance is a near-step
    function of ``x`` (events near their boundary, rare events); the price is the approximation of
    ``P(E | x_sigma)``, which is exact for a Gaussian prior with a linear event. ``None``: the paper's estimator
    (start at the smallest positive sigma of the schedule, last term omitted).

    Returns:
        ``{"log_prob": float, "std_err": float, "median": float, "per_sample": (M,) tensor, "num_used": M}``:
        the mean over samples (the paper's estimate), its standard error (0 for one sample), and the median, which
        resists the heavy-tailed errors of samples where the approximation is poor (e.g. an arg-max that switches).
    """
    conditional = EventConditionedDenoiser(denoiser, event, transform=transform, eps=eps)
    with torch.no_grad():
        inside = conditional.event_value(x) > 0
    if not inside.any():
        raise ValueError("none of the samples lies inside the event (C(x) > 0): cannot estimate P(E) from them")
    x = x[inside]
    gens = generator
    if generator is not None and not isinstance(generator, torch.Generator):
        gens = [g for g, keep in zip(generator, inside.tolist()) if keep]
    log_e = 0.0
    if sigma_start is not None:
        if not sigma_start > 0:
            raise ValueError(f"sigma_start must be positive, got {sigma_start}")
        sigmas = torch.cat([torch.as_tensor(sigmas, dtype=torch.float64).cpu()[torch.as_tensor(sigmas) > sigma_start],
                            torch.tensor([float(sigma_start)], dtype=torch.float64)])
        x = x + float(sigma_start) * randn(x.shape, gens, device=x.device, dtype=x.dtype)
        with torch.no_grad():
            log_e = conditional.guidance(x, float(sigma_start))[2]
    opts = dict(divergence=divergence, num_probes=num_probes, sigma_data=sigma_data, progress=progress)
    # The same Hutchinson probes for both integrals: their noise partly cancels in the difference.
    rngs = [] if gens is None else [gens] if isinstance(gens, torch.Generator) else list(gens)
    states = [g.get_state() for g in rngs]
    log_p = probability_flow_log_likelihood(denoiser, x, sigmas, generator=gens, **opts)
    for g, st in zip(rngs, states):
        g.set_state(st)
    log_p_e = probability_flow_log_likelihood(conditional, x, sigmas, generator=gens, **opts)
    per_sample = log_p - log_p_e + log_e
    m = per_sample.numel()
    std_err = float(per_sample.std() / m**0.5) if m > 1 else 0.0
    return {"log_prob": float(per_sample.mean()), "std_err": std_err, "median": float(per_sample.median()),
            "per_sample": per_sample, "num_used": m}
