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
from scidiff.dynamics import event_probability_splitting, linear_event

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
