"""Diverged particles (a NaN or inf state or log-weight) get weight zero and are resampled away; the run says so."""

import warnings

import pytest
import torch
from smc_problems import linear_problem

import scidiff.inverse as inverse
from scidiff.diffusion import ddpm_sigmas, karras_sigmas
from scidiff.kernels.particles import DEAD_LOG_WEIGHT_GAP, guard_log_weights

SCHEDULES = {"afdps": karras_sigmas(20, sigma_max=3.0), "tds": ddpm_sigmas(20), "mcgdiff": ddpm_sigmas(20)}


def poisoned(prior, rows, at_call: int):
    """The oracle's denoiser, returning NaN for particles ``rows`` at call number ``at_call``."""
    calls = []

    def denoiser(x, sigma):
        out = prior(x.nan_to_num(), sigma)  # the oracle refuses non-finite input; a network would not
        calls.append(1)
        if len(calls) == at_call:
            out = out.clone()
            out[rows] = float("nan")
        return out

    return denoiser


@pytest.mark.parametrize("method", SCHEDULES)
@pytest.mark.parametrize("threshold", [0.0, 0.5])
def test_a_diverged_particle_is_dropped_with_a_warning(method, threshold):
    prior, lik, _, _ = linear_problem(0)
    with pytest.warns(RuntimeWarning, match=r"2 particle\(s\) diverged .* first at step"):
        post = getattr(inverse, method)(poisoned(prior, [1, 5], 4), lik, (16, 2), SCHEDULES[method], progress=False,
                                        ess_threshold=threshold, generator=torch.Generator().manual_seed(0),
                                        dtype=torch.float64)
    assert torch.isfinite(post.samples).all() and torch.isfinite(post.log_weights).all()
    assert post.info["num_diverged"] == 2 and post.info["num_resampled"] >= 1  # resampled even at threshold 0


def test_every_particle_diverged_is_an_error():
    prior, lik, _, _ = linear_problem(0)
    with warnings.catch_warnings(), pytest.raises(FloatingPointError, match="particles diverged .* first at step 2"):
        warnings.simplefilter("ignore", RuntimeWarning)
        inverse.afdps(poisoned(prior, slice(None), 3), lik, (8, 2), SCHEDULES["afdps"], progress=False,
                      generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def test_guard_log_weights():
    lw = torch.tensor([[0.0, float("nan"), -3.0, float("inf")], [float("-inf")] * 4])
    alive = torch.tensor([[True, True, False, True], [True] * 4])
    guarded, dead = guard_log_weights(lw, alive)
    assert dead.tolist() == [[False, True, True, True], [True] * 4]
    assert torch.isfinite(guarded).all()
    assert guarded[0].tolist() == [0.0] + [-DEAD_LOG_WEIGHT_GAP] * 3
    assert guarded[1].tolist() == [-DEAD_LOG_WEIGHT_GAP] * 4  # all dead: uniform, finite
    assert torch.softmax(guarded[0], 0).tolist() == [1.0, 0.0, 0.0, 0.0]
