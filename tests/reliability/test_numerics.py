"""Numerical faults: samplers, SMC weights and bridge reflections stay finite under extreme noise levels, tiny
or huge operator norms and data scales, in float32 and float64 (fuzzed with hypothesis)."""

import math
import warnings

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scidiff.diffusion import karras_sigmas, sample
from scidiff.kernels import conjugate_gradient, ess, normalize_log_weights, resample
from scidiff.likelihoods import LinearGaussianLikelihood
from scidiff.oracles import GaussianMixture

FUZZ = settings(max_examples=10, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
DTYPES = st.sampled_from([torch.float32, torch.float64])
D = 4
EVENT = (1, D)


def _gaussian(scale: float) -> GaussianMixture:
    """Exact denoiser of N(0, scale^2 I) on (1, D): the data scale sets what a 'large' sigma is."""
    return GaussianMixture(torch.ones(1), torch.zeros(1, D, dtype=torch.float64), torch.full((1,), scale**2, dtype=torch.float64), shape=EVENT)


def _linear(gain: float, sigma_y: float, dtype) -> LinearGaussianLikelihood:
    """y = gain * (first 2 coordinates) + noise: operator norm ``gain``."""
    A = gain * torch.eye(D, dtype=torch.float64)[:2]
    y = A @ torch.ones(D, dtype=torch.float64)
    return LinearGaussianLikelihood.from_matrix(A.to(dtype), y.to(dtype), sigma_y, EVENT)


def _finite(x, what):
    assert torch.isfinite(x).all(), f"{what}: {int((~torch.isfinite(x)).sum())} non-finite of {x.numel()}"


@FUZZ
@given(
    sampler=st.sampled_from(["euler", "heun", "ddim", "ancestral", "euler_maruyama"]),
    log_sigma_max=st.floats(-1, 5), log_sigma_min=st.floats(-7, -1), log_scale=st.floats(-3, 3),
    steps=st.integers(2, 40), dtype=DTYPES,
)
def test_samplers_stay_finite(sampler, log_sigma_max, log_sigma_min, log_scale, steps, dtype):
    sigmas = karras_sigmas(steps, 10**log_sigma_min, 10**log_sigma_max)
    g = torch.Generator().manual_seed(0)
    x = sample(_gaussian(10**log_scale), (3, *EVENT), sigmas, sampler=sampler, generator=g, dtype=dtype, progress=False)
    _finite(x, sampler)
    assert x.dtype == dtype


@FUZZ
@given(
    n=st.integers(1, 64), batch=st.integers(1, 3), dtype=DTYPES,
    values=st.lists(st.one_of(st.floats(-1e30, 700.0), st.just(-math.inf)), min_size=1, max_size=64),
    scheme=st.sampled_from(["multinomial", "systematic", "stratified", "residual"]),
)
def test_particle_weights_never_nan(n, batch, dtype, values, scheme):
    lw = torch.tensor((values * (n // len(values) + 1))[:n], dtype=dtype).expand(batch, n).clone()
    w = normalize_log_weights(lw).exp()
    _finite(w, "weights")
    torch.testing.assert_close(w.sum(-1), torch.ones(batch, dtype=torch.float64))
    e = ess(lw)
    _finite(e, "ESS")
    assert ((e >= 1 - 1e-9) & (e <= n + 1e-9)).all()
    idx = resample(lw, scheme, generator=torch.Generator().manual_seed(1))
    assert ((idx >= 0) & (idx < n)).all()
    if not torch.isneginf(lw).all():  # a particle of weight zero is never drawn
        assert not torch.isneginf(lw.gather(-1, idx)).any()


@FUZZ
@given(method=st.sampled_from(["afdps", "tds"]), log_gain=st.sampled_from([-4.0, -1.0, 0.0, 2.0, 4.0]),
       log_sigma_y=st.sampled_from([-3.0, -1.0, 1.0, 2.0]), log_sigma_max=st.floats(0, 3), dtype=DTYPES)
def test_smc_weights_and_samples_stay_finite(method, log_gain, log_sigma_y, log_sigma_max, dtype):
    import scidiff.inverse as inv

    lik = _linear(10**log_gain, 10**log_sigma_y, dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # ESS collapse is reported, not a fault
        try:
            post = getattr(inv, method)(
                _gaussian(1.0), lik, (8, *EVENT), karras_sigmas(8, 0.01, 10**log_sigma_max), progress=False,
                dtype=dtype, generator=torch.Generator().manual_seed(0),
            )
        except FloatingPointError as err:
            # TDS's explicit twisted step overshoots when |A| sigma_data / sigma_y is large: a clear error is
            # the promised behaviour there; AFDPS switches to its implicit step and must not fail.
            assert method == "tds" and "diverged" in str(err) and "rescale the operator" in str(err), err
            assert 10**log_gain / 10**log_sigma_y > 10
            return
    _finite(post.samples, f"{method} samples")
    _finite(post.log_weights, f"{method} log-weights")
    _finite(torch.tensor(post.info.get("ess_history", [1.0])), f"{method} ESS")
    _finite(post.mean(), f"{method} posterior mean")


@FUZZ
@given(method=st.sampled_from(["dps", "red_diff"]), log_gain=st.sampled_from([-4.0, 0.0, 4.0]),
       log_sigma_y=st.sampled_from([-3.0, 0.0, 2.0]), dtype=DTYPES)
def test_guided_samplers_stay_finite(method, log_gain, log_sigma_y, dtype):
    import scidiff.inverse as inv

    lik = _linear(10**log_gain, 10**log_sigma_y, dtype)
    kwargs = {"mu_init": "zeros"} if method == "red_diff" else {}
    post = getattr(inv, method)(_gaussian(1.0), lik, (3, *EVENT), karras_sigmas(8, 0.01, 80.0), progress=False,
                                dtype=dtype, generator=torch.Generator().manual_seed(0), **kwargs)
    _finite(post.samples, method)


@FUZZ
@given(log_cond=st.floats(0, 8), dtype=DTYPES, seed=st.integers(0, 100))
def test_conjugate_gradient_stays_finite_on_ill_conditioned_systems(log_cond, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(6, 6, generator=g, dtype=torch.float64))
    eig = torch.logspace(0, -log_cond, 6, dtype=torch.float64)
    M = (q * eig) @ q.T
    b = torch.randn(2, 6, generator=g, dtype=torch.float64)
    x = conjugate_gradient(lambda v: v @ M.to(dtype), b.to(dtype), max_iter=50)
    _finite(x, "CG solution")


def _domains():
    from scidiff.bridges.domains import Ball, Box, Simplex, flower, regular_polygon

    return {"box": Box(-1.0, 1.0, dim=2), "ball": Ball(torch.zeros(2), 1.0), "simplex": Simplex(2),
            "polygon": regular_polygon(8), "flower": flower()}


DOMAINS = _domains()


@FUZZ
@given(name=st.sampled_from(sorted(DOMAINS)), log_step=st.floats(-8, 3), dtype=DTYPES, seed=st.integers(0, 1000))
def test_reflection_lands_inside_and_finite(name, log_step, dtype, seed):
    domain = DOMAINS[name]
    g = torch.Generator().manual_seed(seed)
    x_old = domain.sample_uniform(32, generator=g, dtype=dtype)
    x_new = x_old + torch.randn(x_old.shape, generator=g, dtype=dtype) * 10**log_step
    out = domain.reflect(x_old, x_new)
    _finite(out, f"{name} reflection")
    inside = domain.contains(out)
    assert inside.all(), f"{name}: {int((~inside).sum())} of {len(out)} points left the domain (step 1e{log_step:.1f}, {dtype})"
    assert out.dtype == dtype


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_reflection_near_the_boundary(dtype):
    """Points a few ulp inside the wall, stepping outwards: the hard case for segment-boundary hits."""
    for name, domain in DOMAINS.items():
        g = torch.Generator().manual_seed(0)
        x = domain.sample_uniform(64, generator=g, dtype=dtype)
        edge = domain.project(x * 50)  # on the boundary
        out = domain.reflect(edge, edge * 1.5)
        _finite(out, name)
        assert domain.contains(out).all(), name
