"""Subset simulation of event probabilities against the closed form (Gaussian prior, linear event).

The estimator targets the event probability under the deterministic sampler's law. With a Gaussian oracle and 24
Heun steps that law is Gaussian but 2 % too wide along ``a`` (discretisation), which moves ``log P(E)`` at
P(E) = 0.01 by about 0.17 nats; the reference is therefore the sampler's own law by plain Monte Carlo (1e5 runs),
itself checked against ``log Phi`` up to that discretisation.
"""

import math

import pytest
import torch

from scidiff.diffusion import karras_sigmas, sample
from scidiff.dynamics import (
    autocorrelation_time,
    batch_means_time,
    event_probability_splitting,
    linear_event,
    sample_event,
    sample_event_splitting,
)
from scipy import stats

from gaussian_event import D, _problem, _truncated_moments

SIGMAS = karras_sigmas(24, 0.002, 80.0)


def _run(oracle, event, seed, n=200, sigmas=SIGMAS, **kw):
    return event_probability_splitting(oracle, event, (n, D), sigmas, generator=torch.Generator().manual_seed(seed),
                                       dtype=torch.float64, **kw)


def test_common_event_is_one_level_of_plain_monte_carlo():
    oracle, a, b, *_ = _problem(0.5)
    out = _run(oracle, linear_event(a, b), 0, n=400)
    assert out["levels"] == [] and out["num_evaluations"] == 400
    se = math.sqrt(0.25 / 400) / 0.5  # relative binomial error
    assert abs(out["log_prob"] - math.log(0.5)) < 4 * se
    assert abs(out["cov"] - se) < 0.2 * se


def test_rare_event_matches_the_samplers_law_and_its_stated_error():
    oracle, a, b, *_ = _problem(0.01)
    event = linear_event(a, b)
    x = sample(oracle, (100_000, D), SIGMAS, generator=torch.Generator().manual_seed(99), dtype=torch.float64,
               progress=False)
    log_ref = math.log(float((event(x) > 0).double().mean()))  # +- 0.03
    assert abs(log_ref - math.log(0.01)) < 0.25
    runs = [_run(oracle, event, seed) for seed in range(5)]
    logs = torch.tensor([r["log_prob"] for r in runs])
    cov = sum(r["cov"] for r in runs) / len(runs)
    assert all(1 <= len(r["levels"]) <= 2 for r in runs)  # 0.1 x (about 0.1)
    assert abs(float(logs.mean()) - log_ref) < 3 * cov / math.sqrt(len(runs)) + 0.03
    assert 0.4 < float(logs.std()) / cov < 2.5  # the stated coefficient of variation describes the scatter
    assert cov < 0.6


def test_final_population_samples_the_conditional_law():
    oracle, a, b, mu, sd, mean, cov = _problem(0.01)
    out = _run(oracle, linear_event(a, b), 7, n=400)
    u = out["samples"] @ a
    assert len(u) >= 40 and bool((u > b).all())
    _, _, u_law = _truncated_moments(a, b, mu, sd, mean, cov)
    # correlated MCMC samples: a loose check on the mean of a.x, against a prior whose mean is 2.3 sd away
    assert abs(float(u.mean()) - u_law.mean()) < 0.25 * sd


def test_result_does_not_depend_on_batch_size_and_is_reproducible():
    oracle, a, b, *_ = _problem(0.05)
    event = linear_event(a, b)
    sigmas = karras_sigmas(6, 0.002, 10.0)  # any deterministic map will do here
    one = _run(oracle, event, 3, n=40, sigmas=sigmas)
    chunked = _run(oracle, event, 3, n=40, sigmas=sigmas, batch_size=7)
    assert len(one["levels"]) >= 1  # the chains ran
    assert one["log_prob"] == pytest.approx(chunked["log_prob"], abs=1e-12)
    assert torch.allclose(one["samples"], chunked["samples"])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"level_fraction": 1.5}, "level_fraction"),
        ({"level_fraction": 0.3}, "divisor"),
        ({"beta": 0.0}, "beta"),
        ({"sampler": "euler_maruyama"}, "deterministic sampler"),
        ({"sampler": "heun", "s_churn": 10.0}, "deterministic sampler"),
        ({"max_levels": 0}, "max_levels"),
    ],
)
def test_bad_settings_are_refused(kwargs, match):
    oracle, a, b, *_ = _problem(0.5)
    with pytest.raises(ValueError, match=match):
        _run(oracle, linear_event(a, b), 0, n=100, **kwargs)


def test_event_with_wrong_shape_is_refused():
    oracle, *_ = _problem(0.5)
    with pytest.raises(ValueError, match="one value per batch item"):
        _run(oracle, lambda x: x, 0, n=20)


def test_unreached_event_says_so():
    oracle, a, b, *_ = _problem(1e-4)
    with pytest.raises(RuntimeError, match="did not reach the event in 1 levels"):
        _run(oracle, linear_event(a, b), 0, n=20, max_levels=1)


def _conditional(p_event, seed, n=400, **kw):
    oracle, a, b, mu, sd, mean, cov = _problem(p_event)
    out = sample_event_splitting(oracle, linear_event(a, b), (n, D), SIGMAS, n_level=200, thin=5, burn=10,
                                 generator=torch.Generator().manual_seed(seed), dtype=torch.float64, **kw)
    return out, a, b, _truncated_moments(a, b, mu, sd, mean, cov)


@pytest.mark.parametrize("p_event", [0.01, 0.001])
def test_conditional_sampler_draws_the_truncated_law(p_event):
    out, a, b, (m, c, u_law) = _conditional(p_event, 0)
    u = out["samples"] @ a
    assert out["samples"].shape == (400, D) and bool((u > b).all())
    assert out["tau"] == max(out["tau_lags"], out["tau_means"]) and 1.0 <= out["tau"] < 3.0
    assert 0.1 < out["acceptance"] < 0.9
    # thinned chains: the KS critical value of their effective sample size, on a.x and on each coordinate's mean
    assert stats.kstest(u.numpy(), u_law.cdf).statistic < 1.358 / math.sqrt(out["ess"])
    # conditional means: 4 standard errors at the ESS, plus 3 % of the prior's sd for the sampler's discretisation
    # (its law is 2 % too wide along a, which moves the truncated mean by about 2 standard errors here)
    se = (c.diagonal() / out["ess"]).sqrt()
    _, _, _, _, _, _, cov = _problem(p_event)
    assert bool(((out["samples"].mean(0) - m).abs() < 4 * se + 0.03 * cov.diagonal().sqrt()).all())
    assert 1 / 3 < out["prob"] / p_event < 3  # the sampler's law is 2 % too wide along a (module docstring)
    split = out["splitting"]
    k = out["chains"]  # 40 (N / 10), or fewer where the population inside E is smaller
    assert k <= min(40, len(split["latents"])) and out["num_evaluations"] == split["num_evaluations"] + k * (
        10 + 5 * math.ceil(400 / k))


def test_sample_event_option_is_the_conditional_sampler():
    oracle, a, b, *_ = _problem(0.01)
    event = linear_event(a, b)
    kw = dict(n_level=100, thin=2, burn=3, dtype=torch.float64)
    x = sample_event(oracle, event, (30, D), SIGMAS, sampler="splitting", generator=torch.Generator().manual_seed(4),
                     **kw)
    out = sample_event_splitting(oracle, event, (30, D), SIGMAS, generator=torch.Generator().manual_seed(4), **kw)
    assert torch.equal(x, out["samples"]) and x.shape == (30, D)


def test_autocorrelation_time_of_known_chains():
    g = torch.Generator().manual_seed(0)
    assert autocorrelation_time(torch.randn(50, 400, generator=g)) == pytest.approx(1.0, abs=0.1)
    phi, noise = 0.8, torch.randn(50, 2000, generator=g, dtype=torch.float64)
    ar = torch.zeros_like(noise)
    for t in range(1, noise.shape[1]):
        ar[:, t] = phi * ar[:, t - 1] + noise[:, t]
    ar = ar[:, 200:]
    assert autocorrelation_time(ar) == pytest.approx((1 + phi) / (1 - phi), rel=0.2)  # AR(1): 9
    assert autocorrelation_time(ar, lag=5) == pytest.approx((1 + phi**5) / (1 - phi**5), rel=0.2)
    assert autocorrelation_time(torch.ones(3, 10)) == math.inf
    # chain means: independent draws give about 1, chains stuck at different values the chain length
    assert 0.6 < batch_means_time(torch.randn(400, 10, generator=g)) < 1.5
    stuck = torch.randn(400, 1, generator=g) + 0.01 * torch.randn(400, 10, generator=g)
    assert batch_means_time(stuck) == pytest.approx(10, rel=0.01)
    assert batch_means_time(ar[:, ::5].reshape(-1, 20)) == pytest.approx((1 + phi**5) / (1 - phi**5), rel=0.3)


@pytest.mark.parametrize(
    "kwargs, match",
    [({"thin": 0}, "thin"), ({"burn": -1}, "burn"), ({"chains": 10_000}, "chains must be in"),
     ({"generator": [torch.Generator()] * 20}, "one torch.Generator")],
)
def test_conditional_sampler_refuses_bad_settings(kwargs, match):
    oracle, a, b, *_ = _problem(0.5)
    kw = dict({"generator": torch.Generator().manual_seed(0)}, **kwargs)
    with pytest.raises(ValueError, match=match):
        sample_event_splitting(oracle, linear_event(a, b), (20, D), SIGMAS, n_level=20, **kw)


def test_benchmark_pools_independent_runs_by_their_event_probability():
    """benchmarks/events.py --split-runs: R runs of a quarter of the samples, levels and chains, pooled by P(E)."""
    import runpy
    from pathlib import Path

    bench = runpy.run_path(str(Path(__file__).resolve().parents[2] / "benchmarks/events.py"))
    oracle, a, b, mu, sd, mean, cov = _problem(0.001)
    _, _, u_law = _truncated_moments(a, b, mu, sd, mean, cov)
    kw = dict(n_level=400, thin=5, burn=10, dtype=torch.float64)
    out = bench["pooled_splitting"](oracle, linear_event(a, b), (400, D), SIGMAS, runs=4,
                                    generator=torch.Generator().manual_seed(0), **kw)
    single = sample_event_splitting(oracle, linear_event(a, b), (400, D), SIGMAS,
                                    generator=torch.Generator().manual_seed(0), **kw)
    parts = out["runs"]
    assert len(parts) == 4 and all(len(r["samples"]) == 100 and r["chains"] == 10 for r in parts)
    assert out["samples"].shape == (400, D) and bool((out["samples"] @ a > b).all())
    # P(E) is the mean of the runs'; the shares are their P(E) over the sum; ESS from shares and each run's tau
    assert out["prob"] == pytest.approx(sum(r["prob"] for r in parts) / 4)
    assert out["run_weights"] == pytest.approx([r["prob"] / (4 * out["prob"]) for r in parts])
    assert out["ess"] == pytest.approx(1 / sum(w * w * r["tau"] / 100 for w, r in zip(out["run_weights"], parts)))
    assert stats.kstest((out["samples"] @ a).numpy(), u_law.cdf).statistic < 1.358 / math.sqrt(out["ess"])
    # equal compute: as many sampler runs as one run of the whole, up to the levels' rounding
    assert abs(out["num_evaluations"] / single["num_evaluations"] - 1) < 0.15
    with pytest.raises(ValueError, match="runs must divide"):
        bench["pooled_splitting"](oracle, linear_event(a, b), (30, D), SIGMAS, runs=4, n_level=40)
