"""benchmarks/pde.py stand-in part: the grid follows a learnt prior, and the solver read-out of a sampled input
reproduces the data when the input is the true one."""

import sys
from argparse import Namespace
from pathlib import Path

import numpy as np
import pytest

from scidiff.pde import make_dataset
from scidiff.pde.problem import rel_l2

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    sys.modules.pop("pde", None)  # a namespace package named pde (tests/pde) must not stand in for the script
    import pde

    yield pde
    sys.modules.pop("pde", None)


def test_stand_in_grid_follows_res_then_the_learnt_prior(bench):
    assert bench.stand_in_res("navier_stokes", Namespace(res=None, learnt=None)) == 16
    assert bench.stand_in_res("burgers", Namespace(res=None, learnt=None)) == 32
    assert bench.stand_in_res("navier_stokes", Namespace(res=None, learnt="poisson32")) == 32
    assert bench.stand_in_res("navier_stokes", Namespace(res=8, learnt="poisson32")) == 8


@pytest.mark.parametrize("name", ["navier_stokes", "burgers", "poisson", "darcy"])
def test_true_input_through_the_solver_gives_the_data(bench, name):
    ds = make_dataset(name, 2, 8, seed=3, workers=1, progress=False, pairs=name == "navier_stokes")
    if name == "burgers":
        x, target = ds.u.values[:, None], ds.u.values
    else:
        x, target = np.stack([ds.a.values, ds.u.values], 1), ds.u.values
    out = bench.solve_from_initial(name, x.astype(np.float64))
    assert out.shape == target.shape
    assert rel_l2(out, target) < 1e-5  # float32 storage
    assert rel_l2(out[::-1], target) > 0.1  # and another sample's input does not
