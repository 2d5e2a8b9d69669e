"""The exact posterior mean of Poisson and Helmholtz pairs (a Gaussian source, a linear solve) against least-squares
regression on pairs drawn from the data generator itself, and the observed values it must reproduce."""

import numpy as np
import pytest

from scidiff.pde import make_dataset, solve_helmholtz, solve_poisson
from scidiff.pde.exact import linear_posterior_mean

RES = 8
NODES = np.array([10, 21, 27, 44, 53])  # interior nodes of the 8 x 8 grid


@pytest.fixture(scope="module", params=["poisson", "helmholtz"])
def pairs(request):
    ds = make_dataset(request.param, 60_000, RES, seed=3, workers=1, progress=False)
    return request.param, ds.a.values.astype(np.float64), ds.u.values.astype(np.float64)


@pytest.mark.parametrize("observed", ["a", "u"])
def test_posterior_mean_is_the_regression_of_the_generated_pairs(pairs, observed):
    """For a Gaussian law E[x | y] is the least-squares linear predictor of x from y: fitted on 60 000 generated
    pairs it must agree with the closed form at new observations."""
    pde, a, u = pairs
    y_field = a if observed == "a" else u
    y = y_field.reshape(len(a), -1)[:, NODES]
    target = np.concatenate([a.reshape(len(a), -1), u.reshape(len(a), -1)], 1)
    coef, *_ = np.linalg.lstsq(y, target, rcond=None)
    mask = np.zeros((RES, RES), bool)
    mask.flat[NODES] = True
    for j in range(3):  # three held-out cases (the first pairs of another seed)
        case = make_dataset(pde, 3, RES, seed=4, workers=1, progress=False)
        field = (case.a if observed == "a" else case.u).values[j].astype(np.float64)
        a_mean, u_mean = linear_posterior_mean(pde, field, mask, observed)
        fitted = (field.flat[NODES] @ coef).reshape(2, -1)
        for mean, fit in zip((a_mean, u_mean), fitted):  # each field on its own scale (u is ~100 times smaller)
            assert np.abs(mean.ravel() - fit).max() < 0.015 * np.abs(fit).max()
        # the observed values are reproduced, and u is the solve of a
        np.testing.assert_allclose((a_mean if observed == "a" else u_mean).flat[NODES], field.flat[NODES],
                                   rtol=1e-6, atol=1e-9 * np.abs(field).max())
        solve = solve_poisson if pde == "poisson" else solve_helmholtz
        np.testing.assert_allclose(u_mean, solve(a_mean), atol=1e-12)


def test_linear_posterior_mean_bad_input_raises():
    field = np.zeros((RES, RES))
    mask = np.zeros((RES, RES), bool)
    with pytest.raises(ValueError, match="observes no node"):
        linear_posterior_mean("poisson", field, mask, "a")
    mask[2, 3] = True
    with pytest.raises(ValueError, match="poisson or helmholtz"):
        linear_posterior_mean("darcy", field, mask, "a")
    with pytest.raises(ValueError, match="mask of its shape"):
        linear_posterior_mean("poisson", field, mask[:-1], "u")
    field[2, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        linear_posterior_mean("helmholtz", field, mask, "u")
