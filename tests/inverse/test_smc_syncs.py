"""The SMC samplers never wait for the host inside their loop: no host read of a tensor (``item``, ``bool``,
``float``, ``int``, ``tolist``) between the first and the last step. On an accelerator each such read is a sync."""

import warnings
from contextlib import contextmanager

import pytest
import torch
from smc_problems import linear_problem

import scidiff.inverse as inverse
from scidiff.diffusion import ddpm_sigmas, karras_sigmas
from scidiff.likelihoods import GaussianLikelihood

READS = ("item", "__bool__", "__float__", "__int__", "__index__", "tolist")


@contextmanager
def count_host_reads():
    """Count every tensor-to-host read made while the block runs (CPU tensors share the code path of CUDA ones)."""
    calls = []
    originals = {name: getattr(torch.Tensor, name) for name in READS}

    def counting(name):
        def read(self, *args, **kwargs):
            calls.append(name)
            return originals[name](self, *args, **kwargs)

        return read

    for name in READS:
        setattr(torch.Tensor, name, counting(name))
    try:
        yield calls
    finally:
        for name, fn in originals.items():
            setattr(torch.Tensor, name, fn)


def gaussian_denoiser(x, sigma):
    """Exact denoiser of N(0, I), free of host reads (the oracles validate their inputs on the host)."""
    s2 = sigma.reshape(-1, *([1] * (x.ndim - 1))) ** 2
    return x / (1 + s2)


CASES = {
    "afdps": (lambda n: karras_sigmas(n, sigma_max=3.0), {}),
    "afdps-explicit": (lambda n: karras_sigmas(n, sigma_max=3.0), {"likelihood_step": "explicit"}),
    "afdps-hutchinson": (lambda n: karras_sigmas(n, sigma_max=3.0), {"nonlinear": True, "drift_split": 1.0}),
    "tds": (ddpm_sigmas, {}),
    "mcgdiff": (ddpm_sigmas, {}),
}


def reads_inside_loop(case: str, steps: int = 12) -> tuple[list[str], int]:
    """Host reads made between the callbacks of the first and the last step, and the number of steps seen."""
    schedule, kw = CASES[case]
    kw = dict(kw)
    _, lik, _, _ = linear_problem(0)
    if kw.pop("nonlinear", False):
        lik = GaussianLikelihood(lik.A, lik.y, lik.sigma_y)
    seen, inside = [], []

    def callback(state):
        seen.append(state["i"])
        inside[:] = list(calls)  # reads up to the end of this step

    with warnings.catch_warnings(), count_host_reads() as calls:
        warnings.simplefilter("ignore", RuntimeWarning)
        getattr(inverse, case.split("-")[0])(gaussian_denoiser, lik, (16, 2), schedule(steps), progress=False,
                                             callback=lambda st: (calls.clear() if not seen else None, callback(st)),
                                             generator=torch.Generator().manual_seed(0), **kw)
    return inside, len(seen)


@pytest.mark.parametrize("case", CASES)
def test_no_host_read_inside_the_loop(case):
    inside, steps = reads_inside_loop(case)
    assert steps >= 12
    assert inside == [], f"{case}: {len(inside)} host reads in {steps - 1} steps: {sorted(set(inside))}"


def test_the_counter_sees_a_host_read():
    with count_host_reads() as calls:
        bool(torch.zeros(()) > 0)
        float(torch.ones(()))
    assert calls == ["__bool__", "__float__"]
