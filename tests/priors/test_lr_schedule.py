"""The learning-rate schedule of DiffusionPrior: linear warm-up, then constant or a half cosine (SGDR)."""

import math

import pytest
import torch

from scidiff.priors import DiffusionPrior, warmup_cosine


def test_warmup_cosine_values():
    assert warmup_cosine(0, 10, 110) == pytest.approx(0.1)
    assert warmup_cosine(9, 10, 110) == pytest.approx(1.0)
    assert warmup_cosine(10, 10, 110, 0.0) == pytest.approx(1.0)
    assert warmup_cosine(60, 10, 110, 0.0) == pytest.approx(0.5)
    assert warmup_cosine(35, 10, 110, 0.0) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))
    assert warmup_cosine(110, 10, 110, 0.05) == pytest.approx(0.05)
    assert warmup_cosine(10_000, 10, 110, 0.05) == pytest.approx(0.05)  # stays at the floor
    assert warmup_cosine(500, 10, None) == 1.0  # no decay asked: constant after the warm-up
    # a wall-time share ahead of the step count moves the cosine on
    assert warmup_cosine(20, 10, 110, 0.0, progress=0.5) == pytest.approx(0.5)


def _rates(prior, steps):
    opt = prior.configure_optimizers()
    optimizer, scheduler = opt["optimizer"], opt["lr_scheduler"]["scheduler"]
    rates = []
    for _ in range(steps):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates


def test_prior_decays_its_rate_when_asked():
    kw = dict(shape=[1, 8], network="mlp", network_kwargs={"hidden": 8}, lr=1e-3, lr_warmup_steps=2)
    torch.manual_seed(0)
    constant = _rates(DiffusionPrior(**kw), 12)
    cosine = _rates(DiffusionPrior(**kw, lr_decay_steps=10, lr_final_fraction=0.1), 12)
    assert constant[:2] == pytest.approx([5e-4, 1e-3]) and constant[-1] == pytest.approx(1e-3)
    assert cosine[:3] == pytest.approx([5e-4, 1e-3, 1e-3])
    assert all(a >= b for a, b in zip(cosine[2:], cosine[3:]))  # monotone decay after the warm-up
    assert cosine[10] == pytest.approx(1e-4) and cosine[11] == pytest.approx(1e-4)
