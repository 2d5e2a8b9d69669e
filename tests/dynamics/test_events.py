"""Event-conditioned sampling and event probabilities against closed forms.

A Gaussian prior with a linear event ``a . x > b`` has ``P(E) = Phi((a . m - b) / sqrt(a^T S a))`` and a
conditional law whose projection ``a . x`` is a truncated normal, and whose mean and covariance are known.
"""

import math

import pytest
import torch
from scipy import stats

from scidiff.diffusion import karras_sigmas, sample_predictor_corrector, seeded_generators
from scidiff.dynamics.events import (
    EventConditionedDenoiser,
    event_log_probability,
    event_mala_move,
    guidance_calibration,
    linear_event,
    pool_event_smc,
    sample_event,
    sample_event_smc,
    threshold_event,
)

from scidiff.oracles import Gaussian

from gaussian_event import D, _problem, _truncated_moments


@pytest.mark.parametrize(
    ("p_event", "options", "steps"),
    [
        (0.5, {}, 80),
        (0.01, {}, 80),
        (0.001, {}, 80),
        (0.01, {"sampler": "euler_maruyama"}, 200),
        (0.001, {"sampler": "euler_maruyama"}, 200),
        (0.01, {"sampler": "pc", "corrector_steps": 1}, 100),
        (0.001, {"sampler": "pc", "corrector_steps": 1}, 100),
    ],
)
def test_conditional_samples_follow_the_truncated_gaussian(p_event, options, steps):
    oracle, a, b, mu, sd, mean, cov = _problem(p_event)
    x = sample_event(oracle, linear_event(a, b), (2000, D), karras_sigmas(steps, 0.002, 80.0),
                     generator=torch.Generator().manual_seed(1), dtype=torch.float64, progress=False, **options)
    m, c, u_law = _truncated_moments(a, b, mu, sd, mean, cov)
    u = (x @ a).numpy()
    assert (u > b).mean() > 0.995
    assert stats.kstest(u, u_law.cdf).pvalue > 0.01
    se = (c.diagonal() / 2000).sqrt()
    assert ((x.mean(0) - m).abs() / se).max() < 4.5
    assert ((x.var(0) / c.diagonal()) - 1).abs().max() < 0.15


def test_predictor_corrector_keeps_the_prior_law():
    """The Langevin corrector leaves p_sigma invariant: unconditional PC samples have the prior's covariance.

    A step that depends on each sample's score norm (Alg. 5 per sample) fails this in low dimension: variances came
    out 1.8-2.3 times too large.
    """
    oracle, *_, mean, cov = _problem(0.5)
    x = 80.0 * torch.randn(4000, D, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    x = sample_predictor_corrector(oracle, x, karras_sigmas(100, 0.002, 80.0), corrector_steps=2,
                                   generator=torch.Generator().manual_seed(3), progress=False)
    assert ((x.var(0) / cov.diagonal()) - 1).abs().max() < 0.12
    assert ((x.mean(0) - mean).abs() / (cov.diagonal() / 4000).sqrt()).max() < 4.5
    with pytest.raises(ValueError, match="corrector_steps must be >= 0 and snr > 0"):
        sample_predictor_corrector(oracle, x, karras_sigmas(4), snr=0.0)


def test_event_samples_do_not_depend_on_the_batch():
    oracle, a, b, *_ = _problem(0.01)
    opts = dict(sampler="pc", dtype=torch.float64, progress=False)
    both = sample_event(oracle, linear_event(a, b), (2, D), karras_sigmas(8), generator=seeded_generators([5, 6]),
                        **opts)
    one = sample_event(oracle, linear_event(a, b), (1, D), karras_sigmas(8), generator=seeded_generators([6]), **opts)
    torch.testing.assert_close(both[1:], one)


def test_unconditional_samples_would_fail_the_same_check():
    """The KS check above has power: the prior's own samples are far from the conditional law."""
    oracle, a, b, mu, sd, mean, cov = _problem(0.01)
    u = (oracle.sample(2000, generator=torch.Generator().manual_seed(1), dtype=torch.float64) @ a).numpy()
    _, _, u_law = _truncated_moments(a, b, mu, sd, mean, cov)
    assert stats.kstest(u, u_law.cdf).pvalue < 1e-6


@pytest.mark.parametrize("p_event", [0.5, 0.01])
def test_event_probability_matches_phi(p_event):
    oracle, a, b, *_ = _problem(p_event)
    event = linear_event(a, b)
    # exact samples of the event (rejection from exact prior samples) isolate the likelihood estimate
    x = oracle.sample(40000, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    x = x[event(x) > 0][:24]
    out = event_log_probability(oracle, event, x, karras_sigmas(64, 0.002, 80.0), divergence="exact")
    assert out["num_used"] == 24
    assert abs(out["log_prob"] - math.log(p_event)) < 0.08
    assert out["per_sample"].std() < 0.1  # every sample of E carries the same answer


def test_event_probability_from_a_noised_start_is_exact_for_gaussian_and_linear_event():
    """Bayes' rule at noise level sigma: log P(E) = log p_s(x) - log p_s(x | E) + log P(E | x_s), any x."""
    oracle, a, b, *_ = _problem(0.01)
    event = linear_event(a, b)
    x = oracle.sample(40000, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    x = x[event(x) > 0][:12]
    out = event_log_probability(oracle, event, x, karras_sigmas(48, 0.002, 80.0), divergence="exact",
                                sigma_start=0.5, generator=torch.Generator().manual_seed(0))
    assert abs(out["log_prob"] - math.log(0.01)) < 0.08 and abs(out["median"] - math.log(0.01)) < 0.08
    with pytest.raises(ValueError, match="sigma_start must be positive"):
        event_log_probability(oracle, event, x, karras_sigmas(8), sigma_start=0.0)


def test_event_probability_with_hutchinson_and_dropping_outside_samples():
    oracle, a, b, *_ = _problem(0.1)
    event = linear_event(a, b)
    x = oracle.sample(64, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    inside = int((event(x) > 0).sum())
    out = event_log_probability(oracle, event, x, karras_sigmas(48, 0.002, 80.0), divergence="hutchinson",
                                num_probes=8, generator=seeded_generators(64))
    assert out["num_used"] == inside
    assert abs(out["log_prob"] - math.log(0.1)) < 0.25


def test_guidance_is_exact_log_phi_for_gaussian_and_linear_event():
    """``log P(E | x_sigma)`` of the Tweedie approximation equals the exact value in the Gaussian/linear case."""
    oracle, a, b, mu, sd, mean, cov = _problem(0.05)
    cond = EventConditionedDenoiser(oracle, linear_event(a, b), eps=0.0)
    x = oracle.sample(5, generator=torch.Generator().manual_seed(4), dtype=torch.float64) + 2.0 * torch.randn(
        5, D, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    _, grad, log_phi = cond.guidance(x, 2.0)
    # exact: x0 | x_sigma ~ N(x0_hat, S - S (S + s^2 I)^-1 S), so a.x0 | x_sigma is normal
    post_cov = cov - cov @ torch.linalg.solve(cov + 4.0 * torch.eye(D, dtype=torch.float64), cov)
    x0 = oracle(x, 2.0)
    exact = torch.special.log_ndtr((x0 @ a - b) / (a @ post_cov @ a).sqrt())
    torch.testing.assert_close(log_phi, exact)
    xr = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(torch.special.log_ndtr((oracle(xr, 2.0) @ a - b) / (a @ post_cov @ a).sqrt()).sum(), xr)
    torch.testing.assert_close(grad, g)


def test_logistic_link_is_the_papers_bounded_approximation():
    oracle, a, b, mu, sd, mean, cov = _problem(0.05)
    probit = EventConditionedDenoiser(oracle, linear_event(a, b), eps=0.0)
    logistic = EventConditionedDenoiser(oracle, linear_event(a, b), eps=0.0, link="logistic")
    x = torch.full((3, D), -5.0, dtype=torch.float64) + torch.arange(3, dtype=torch.float64)[:, None]
    _, g_probit, lp = probit.guidance(x, 1.0)
    _, g_logistic, ll = logistic.guidance(x, 1.0)
    assert (lp < math.log(1e-3)).all() and (lp > -600).all()  # far outside the event, inside float64 range
    z = torch.special.ndtri(lp.exp())
    torch.testing.assert_close(ll, torch.nn.functional.logsigmoid(1.6 * z))
    # far outside the event the probit slope grows like |z|, the logistic one stays below 1.6
    assert (g_logistic.norm(dim=1) < g_probit.norm(dim=1)).all()
    with pytest.raises(ValueError, match="link must be one of"):
        EventConditionedDenoiser(oracle, linear_event(a, b), link="cauchit")


def test_threshold_event_on_trajectories():
    x = torch.zeros(2, 3, 10)
    x[0, 1, 4] = 5.0
    event = threshold_event(1, 3.0)
    torch.testing.assert_close(event(x), torch.tensor([2.0, -3.0]))
    below = threshold_event(1, -1.0, above=False, times=[0, 1, 2])
    torch.testing.assert_close(below(x), torch.tensor([-1.0, -1.0]))
    mean_event = threshold_event(1, 0.25, reduce="mean", times=slice(0, 10))
    torch.testing.assert_close(mean_event(x), torch.tensor([0.25, -0.25]))


def test_bad_inputs():
    oracle, a, b, *_ = _problem(0.5)
    with pytest.raises(ValueError, match="variables, time"):
        threshold_event(5, 1.0)(torch.zeros(2, 3, 10))
    with pytest.raises(ValueError, match="reduce must be"):
        threshold_event(0, 1.0, reduce="median")
    with pytest.raises(TypeError, match="event must be a callable"):
        EventConditionedDenoiser(oracle, "x > 0")
    with pytest.raises(ValueError, match="one value per batch item"):
        EventConditionedDenoiser(oracle, lambda x: x)(torch.zeros(3, D, dtype=torch.float64), 1.0)
    far = torch.full((2, D), -50.0, dtype=torch.float64)
    with pytest.raises(ValueError, match="none of the samples lies inside the event"):
        event_log_probability(oracle, linear_event(a, b), far, karras_sigmas(8))
    with pytest.raises(ValueError, match="non-finite"):
        linear_event(torch.tensor([float("nan")]), 0.0)


def test_guidance_calibration_holds_for_linear_events_and_fails_for_a_maximum():
    """Law of total probability: E[Phi(C(x0_hat)/s)] = P(E) at every level when the approximation is exact."""
    oracle, a, b, *_ = _problem(0.05)
    x0 = oracle.sample(4000, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    rows = guidance_calibration(oracle, linear_event(a, b), x0, [0.1, 1.0, 10.0],
                                generator=torch.Generator().manual_seed(7))
    for r in rows:
        se = math.sqrt(r["p_event"] * (1 - r["p_event"]) / 4000)
        assert abs(r["mean_phi"] - r["p_event"]) < 4 * se
        assert r["log_score"] > math.log(0.95) * 0.95 + math.log(0.05) * 0.05 - 0.01  # no worse than constant P(E)
    # a maximum over coordinates: linearised at the blurred mean, the approximation misses at large sigma
    iso = Gaussian(torch.zeros(D, dtype=torch.float64), torch.eye(D, dtype=torch.float64))
    x0 = iso.sample(4000, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    high = guidance_calibration(iso, lambda x: x.amax(1) - 1.0, x0, [10.0], generator=torch.Generator().manual_seed(9))
    assert high[0]["mean_phi"] < 0.5 * high[0]["p_event"]
    with pytest.raises(ValueError, match="both inside and outside"):
        guidance_calibration(iso, lambda x: x.amax(1) + 100.0, x0, [1.0])
    with pytest.raises(ValueError, match="noise levels must be positive"):
        guidance_calibration(iso, lambda x: x.amax(1) - 1.0, x0[:8], [0.0])


def test_guidance_stops_above_sigma_max():
    oracle, a, b, *_ = _problem(0.05)
    x = torch.randn(4, D, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    sigma = torch.tensor([0.5, 0.5, 4.0, 4.0], dtype=torch.float64)
    cut = EventConditionedDenoiser(oracle, linear_event(a, b), sigma_max=1.0)(x, sigma)
    full = EventConditionedDenoiser(oracle, linear_event(a, b))(x, sigma)
    torch.testing.assert_close(cut[:2], full[:2])
    torch.testing.assert_close(cut[2:], oracle(x, sigma)[2:])
    assert not torch.allclose(full[2:], cut[2:])
    with pytest.raises(ValueError, match="sigma_max must be positive"):
        EventConditionedDenoiser(oracle, linear_event(a, b), sigma_max=0.0)


def _weighted_ks(u, w, cdf):
    """Kolmogorov-Smirnov distance of the weighted empirical law of ``u`` to ``cdf``."""
    order = u.argsort()
    u, w = u[order], w[order] / w.sum()
    f = w.cumsum(0)
    g = torch.as_tensor(cdf(u.numpy()))
    return float(torch.maximum((f - g).abs(), (f - w - g).abs()).max())


@pytest.mark.parametrize(("p_event", "link"), [(0.001, "probit"), (0.01, "logistic")])
def test_event_smc_targets_the_conditional_law_even_with_an_inexact_twist(p_event, link):
    """Twisted SMC: the weights correct the twist; the logistic twist alone leaves samples outside the event."""
    oracle, a, b, mu, sd, mean, cov = _problem(p_event)
    *_, u_law = _truncated_moments(a, b, mu, sd, mean, cov)
    sigmas = karras_sigmas(200, 0.002, 80.0)
    out = sample_event_smc(oracle, linear_event(a, b), (2000, D), sigmas, generator=torch.Generator().manual_seed(1),
                           dtype=torch.float64, link=link)
    ess = out["ess"][-1]
    assert ess > 800
    assert _weighted_ks(out["particles"] @ a, out["log_weights"].exp(), u_law.cdf) < 1.358 / math.sqrt(ess)
    assert out["samples"].shape == (2000, D) and bool((out["samples"] @ a > b).all())
    if link == "logistic":
        x = sample_event(oracle, linear_event(a, b), (2000, D), sigmas, sampler="euler_maruyama", link=link,
                         generator=torch.Generator().manual_seed(1), dtype=torch.float64, progress=False)
        assert float((x @ a > b).double().mean()) < 0.9
    with pytest.raises(ValueError, match="end with 0"):
        sample_event_smc(oracle, linear_event(a, b), (4, D), sigmas[:-1])
    with pytest.raises(ValueError, match="base must be"):
        sample_event_smc(oracle, linear_event(a, b), (4, D), sigmas, base="heun")


def test_event_smc_evidence_is_the_chains_event_probability():
    """The mean final weight estimates P(E) under the base chain (here 50 reverse-SDE levels, whose own P(E) is
    about 1.7 times the prior's at 1 %): the twisted estimate agrees with plain Monte Carlo of the untwisted chain;
    a twist that starts late (sigma_max = 1) resamples, is noisier, and still agrees; its final particles descend
    from fewer first-level particles."""
    oracle, a, b, *_ = _problem(0.01)
    sigmas = karras_sigmas(50, 0.002, 80.0)
    opts = dict(dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    plain = sample_event_smc(oracle, linear_event(a, b), (40000, D), sigmas, sigma_max=1e-9, **opts)
    p_chain = plain["in_event"]  # no twist anywhere: the weights are the indicator, the evidence the hit rate
    assert math.exp(plain["log_evidence"]) == pytest.approx(p_chain, rel=1e-6)
    assert 1.3 < p_chain / 0.01 < 2.2  # the 50-level chain's discretisation error (why it is compared with the chain)
    twisted = sample_event_smc(oracle, linear_event(a, b), (2000, D), sigmas, **opts)
    late = sample_event_smc(oracle, linear_event(a, b), (2000, D), sigmas, sigma_max=1.0, **opts)
    assert math.exp(twisted["log_evidence"]) == pytest.approx(p_chain, rel=0.08)
    assert math.exp(late["log_evidence"]) == pytest.approx(p_chain, rel=0.3)
    assert twisted["resampled"] == 0 and late["resampled"] >= 1
    assert late["lineages"] < 0.5 * twisted["lineages"] and twisted["lineages"] <= 2000


def _noised_conditional(n, sigma, seed, a, b, mu, sd, mean, cov):
    """Exact draws of p_sigma(x | E) = p_sigma(x) P(E | x_sigma = x) / P(E): x0 | a.x0 > b, plus sigma n."""
    *_, u_law = _truncated_moments(a, b, mu, sd, mean, cov)
    g = torch.Generator().manual_seed(seed)
    z = mean + torch.randn(n, D, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(cov).T
    u = torch.as_tensor(u_law.rvs(n, random_state=seed))
    x0 = z + torch.outer(u - z @ a, cov @ a / sd**2)  # z conditioned on a . z = u (Gaussian regression)
    return x0 + sigma * torch.randn(n, D, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("sigma", [1.0, 5.0])
def test_event_mala_move_keeps_the_twisted_level_law_and_spreads_copies(sigma):
    """For a Gaussian prior and a linear event the twist is exact, p_sigma Phi is the noised conditional law, and
    the trapezoid rule is exact: MALA moves keep exact draws exact and take 40 copied points to that law."""
    oracle, a, b, mu, sd, mean, cov = _problem(0.01)
    cond = EventConditionedDenoiser(oracle, linear_event(a, b))
    ref = _noised_conditional(20000, sigma, 1, a, b, mu, sd, mean, cov)
    x = _noised_conditional(3000, sigma, 2, a, b, mu, sd, mean, cov)
    copies = x[:30].repeat_interleave(100, 0)
    g = torch.Generator().manual_seed(0)
    rates = []
    for _ in range(25):
        x, _, ok = event_mala_move(cond, x, sigma, 0.3, generator=g)
        copies, _, _ = event_mala_move(cond, copies, sigma, 0.3, generator=g)
        rates.append(float(ok.double().mean()))
    crit = 1.358 * math.sqrt(1 / 3000 + 1 / 20000)
    for direction in (a, mean):
        assert stats.ks_2samp((x @ direction).numpy(), (ref @ direction).numpy()).statistic < crit
        assert stats.ks_2samp((copies @ direction).numpy(), (ref @ direction).numpy()).statistic < crit
    assert 0.5 < sum(rates) / len(rates) < 0.999  # moves are proposed, and most are accepted
    with pytest.raises(ValueError, match="Langevin step"):
        event_mala_move(cond, x, sigma, 0.0)


def test_event_smc_rejuvenation_restores_the_law_after_a_weight_collapse():
    """A twist switched on late (sigma_max = 0.5) collapses the weights at once (minimum ESS of a few particles out
    of 500): the final law of a . x is far from the truncated normal. Tempering the twist over five levels and ten
    MALA moves after each resampling bring it within the KS critical value on two seeds."""
    oracle, a, b, mu, sd, mean, cov = _problem(0.001)
    *_, u_law = _truncated_moments(a, b, mu, sd, mean, cov)
    sigmas = karras_sigmas(100, 0.002, 80.0)
    for seed in (0, 1):
        opts = dict(dtype=torch.float64, sigma_max=0.5)
        plain = sample_event_smc(oracle, linear_event(a, b), (500, D), sigmas,
                                 generator=torch.Generator().manual_seed(seed), **opts)
        moved = sample_event_smc(oracle, linear_event(a, b), (500, D), sigmas, twist_levels=5, rejuvenate=10,
                                 generator=torch.Generator().manual_seed(seed), **opts)
        assert min(plain["ess"]) < 10 and math.isnan(plain["acceptance"]) and plain["moves"] == 0
        assert stats.kstest((plain["samples"] @ a).numpy(), u_law.cdf).statistic > 0.12
        assert stats.kstest((moved["samples"] @ a).numpy(), u_law.cdf).statistic < 1.358 / math.sqrt(500)
        assert moved["moves"] >= 1 and 0.4 < moved["acceptance"] < 0.8
        assert moved["lineages"] > 2 * plain["lineages"]
    floor = sample_event_smc(oracle, linear_event(a, b), (200, D), sigmas, rejuvenate=2, move_sigma_min=1.0,
                             generator=torch.Generator().manual_seed(0), **opts)
    assert floor["moves"] == 0 and floor["resampled"] >= 1  # every resampling is below the floor
    with pytest.raises(ValueError, match="twist_levels"):
        sample_event_smc(oracle, linear_event(a, b), (4, D), sigmas, twist_levels=0)
    with pytest.raises(ValueError, match="target_acceptance"):
        sample_event_smc(oracle, linear_event(a, b), (4, D), sigmas, rejuvenate=1, target_acceptance=1.0)


def test_event_smc_says_when_no_particle_reaches_the_event():
    oracle, a, *_ = _problem(0.5)
    with pytest.raises(RuntimeError, match="no particle ended inside the event"):
        sample_event_smc(oracle, linear_event(a, 1e6), (4, D), karras_sigmas(4, 0.002, 80.0),
                         generator=torch.Generator().manual_seed(0), dtype=torch.float64, link="logistic")


def test_event_smc_fewer_late_resamplings_and_an_s_floor_keep_the_conditional_law():
    """Resampling less at small sigma, or flooring the twist's s, changes the weights' spread, not their target:
    after a collapse at sigma_max = 0.5 with no resampling below sigma = 1, and with s >= 0.3 sd(a . x) on a twist
    at every level, the weighted law of a . x stays within the KS critical value of its ESS of the truncated
    normal, and the evidence of the floored twist agrees with the plain one."""
    oracle, a, b, mu, sd, mean, cov = _problem(0.001)
    *_, u_law = _truncated_moments(a, b, mu, sd, mean, cov)
    sigmas = karras_sigmas(200, 0.002, 80.0)
    opts = dict(dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    late = sample_event_smc(oracle, linear_event(a, b), (1000, D), sigmas, sigma_max=0.5, late_threshold=0.0,
                            late_sigma=1.0, **opts)
    assert late["resampled"] == 0  # every twisted level is below late_sigma: the weights are never reset
    ess = late["ess"][-1]
    assert _weighted_ks(late["particles"] @ a, late["log_weights"].exp(), u_law.cdf) < 1.358 / math.sqrt(ess)
    plain = sample_event_smc(oracle, linear_event(a, b), (1000, D), sigmas, **opts)
    floored = sample_event_smc(oracle, linear_event(a, b), (1000, D), sigmas, s_floor=0.3 * sd, **opts)
    ess = floored["ess"][-1]
    assert ess > 200
    assert _weighted_ks(floored["particles"] @ a, floored["log_weights"].exp(), u_law.cdf) < 1.358 / math.sqrt(ess)
    assert math.exp(floored["log_evidence"] - plain["log_evidence"]) == pytest.approx(1.0, abs=0.15)
    cond = EventConditionedDenoiser(oracle, linear_event(a, b), s_floor=0.3 * sd)
    x = torch.randn(8, D, dtype=torch.float64, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    _, _, s, _ = cond._c_and_s(x, torch.full((8,), 0.01, dtype=torch.float64), {})
    assert torch.allclose(s, torch.full_like(s, 0.3 * sd))  # at sigma = 0.01 the Tweedie s is far below the floor
    with pytest.raises(ValueError, match="s_floor"):
        EventConditionedDenoiser(oracle, linear_event(a, b), s_floor=-1.0)
    with pytest.raises(ValueError, match="late_threshold"):
        sample_event_smc(oracle, linear_event(a, b), (4, D), sigmas, late_threshold=-0.1)


def test_pooled_event_smc_runs_weigh_each_run_by_its_evidence():
    """Four runs of 300 particles, pooled: the pooled weighted law passes the KS test at its ESS, each run's share
    is its evidence over the sum, the pooled evidence is their mean and the lineages add up."""
    oracle, a, b, mu, sd, mean, cov = _problem(0.001)
    *_, u_law = _truncated_moments(a, b, mu, sd, mean, cov)
    sigmas = karras_sigmas(200, 0.002, 80.0)
    g = torch.Generator().manual_seed(0)
    runs = [sample_event_smc(oracle, linear_event(a, b), (300, D), sigmas, dtype=torch.float64, generator=g)
            for _ in range(4)]
    pooled = pool_event_smc(runs, generator=g, num_samples=300)
    z = torch.tensor([r["log_evidence"] for r in runs], dtype=torch.float64).exp()
    assert pooled["run_weights"] == pytest.approx((z / z.sum()).tolist(), rel=1e-9)
    assert math.exp(pooled["log_evidence"]) == pytest.approx(float(z.mean()), rel=1e-9)
    assert pooled["lineages"] == sum(r["lineages"] for r in runs)
    assert pooled["samples"].shape == (300, D) and pooled["particles"].shape == (1200, D)
    assert float(pooled["log_weights"].exp().sum()) == pytest.approx(1.0, rel=1e-9)
    ess = pooled["ess"]
    assert ess > max(r["ess"][-1] for r in runs)  # more than any one run's
    assert _weighted_ks(pooled["particles"] @ a, pooled["log_weights"].exp(), u_law.cdf) < 1.358 / math.sqrt(ess)
    with pytest.raises(ValueError, match="at least one run"):
        pool_event_smc([])
    with pytest.raises(ValueError, match="share one shape"):
        pool_event_smc([runs[0], dict(runs[1], particles=runs[1]["particles"][:, :2])])
    with pytest.raises(ValueError, match="finite log_evidence"):
        pool_event_smc([runs[0], dict(runs[1], log_evidence=-math.inf)])
