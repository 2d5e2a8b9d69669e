"""Integrators against a reference solver and known properties; datasets save and reload."""

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

from scidiff.data.netcdf import write_netcdf
from scidiff.data.synthetic import generate
from scidiff.diffusion import seeded_generators
from scidiff.dynamics import (
    fitzhugh_nagumo_rhs,
    get_system,
    integrate,
    lorenz63_rhs,
    lorenz96_rhs,
    make_trajectory_dataset,
    simulate,
    trajectories,
)
from scidiff.dynamics.evaluation import burn_in_check

FHN_BURN_IN = 16000  # RK4 steps of 0.5 (8 000 time units); datasets/lorenz.md has the check at other lengths


def _reference(rhs, x0, t_end):
    sol = solve_ivp(lambda t, y: rhs(torch.from_numpy(y)).numpy(), (0, t_end), x0.numpy(), method="DOP853",
                    rtol=1e-12, atol=1e-12)
    return torch.from_numpy(sol.y[:, -1])


@pytest.mark.parametrize(
    "rhs, x0, t_end, dt",
    [
        (lorenz63_rhs, torch.tensor([1.0, 2.0, 20.0], dtype=torch.float64), 0.5, 0.01),
        (fitzhugh_nagumo_rhs, torch.tensor([0.3, -0.1, 0.01, 0.02], dtype=torch.float64), 30.0, 0.5),
        (lambda x: lorenz96_rhs(x, 8.0), 8.0 + torch.linspace(-1, 1, 10, dtype=torch.float64), 0.5, 0.01),
    ],
    ids=["lorenz63", "fitzhugh_nagumo", "lorenz96"],
)
def test_rk4_is_fourth_order_against_a_reference_solver(rhs, x0, t_end, dt):
    ref = _reference(rhs, x0, t_end)
    errors = []
    for h in (dt, dt / 2):
        n = round(t_end / h)
        traj = integrate(rhs, x0[None], h, 2, save_every=n)
        errors.append(float((traj[0, -1] - ref).norm()))
    assert errors[1] < 1e-3 * max(1.0, float(ref.norm()))
    assert 10 < errors[0] / errors[1] < 24  # 2^4 = 16


def test_lorenz96_conserves_energy_without_forcing_and_damping():
    """The advection term of Lorenz-96 conserves sum x_i^2 / 2 (Lorenz 1996)."""
    x = torch.randn(4, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    advection = lorenz96_rhs(x, 0.0) + x
    torch.testing.assert_close((advection * x).sum(-1), torch.zeros(4, dtype=torch.float64), atol=1e-12, rtol=0)


def test_simulate_is_batch_independent_and_on_the_attractor():
    a = simulate("lorenz63", 5, 20, generator=seeded_generators(5))
    b = simulate("lorenz63", 2, 20, generator=seeded_generators(2))
    torch.testing.assert_close(a[:2], b)
    z = a[..., 2]
    assert z.min() > 0 and z.max() < 50  # z stays in the attractor's range after the burn-in


def test_lorenz63_windows_start_on_the_attractor():
    """The default burn-in passes the stationarity check (the first window's law equals the law 8 windows, 25.6
    time units, later); the former 1 000 steps fail it by far (z and max_t x still relaxing)."""
    rows = burn_in_check("lorenz63", n=2000, lag=8)
    assert get_system("lorenz63").burn_in == 3000
    assert all(ks < crit for _, ks, crit in rows), rows
    short = dict((q, (ks, crit)) for q, ks, crit in burn_in_check("lorenz63", burn_in=1000, n=300, lag=8))
    ks, crit = short["max_t x over a window"]
    assert ks > 3 * crit, short


@pytest.mark.slow
def test_fitzhugh_nagumo_windows_are_stationary_after_the_burn_in():
    """FitzHugh-Nagumo (extreme-event regime): from 0.2 N(0, I) every trajectory fires a spike at once, and the law
    of the next rare spike relaxes over thousands of time units. The default burn-in passes the stationarity check;
    the former 3 000 steps (1 500 time units) fail it on the window maximum of v1 (about 40 s)."""
    assert get_system("fitzhugh_nagumo").burn_in == FHN_BURN_IN
    rows = burn_in_check("fitzhugh_nagumo", n=1000, lag=8)
    assert all(ks < crit for _, ks, crit in rows), rows
    short = dict((q, (ks, crit)) for q, ks, crit in burn_in_check("fitzhugh_nagumo", burn_in=3000, n=1000, lag=8))
    ks, crit = short["max_t v1 over a window"]
    assert ks > 1.3 * crit, short


def test_dataset_dims_coords_and_netcdf_round_trip(tmp_path):
    import xarray as xr

    ds = make_trajectory_dataset("lorenz63", n=4, res=16, seed=3, burn_in=200)
    assert set(ds.data_vars) == {"x", "y", "z"} and ds["x"].dims == ("sample", "time")
    assert ds.time.attrs["axis"] == "T" and np.allclose(np.diff(ds.time), ds.attrs["dt_saved"])
    traj = trajectories(ds)
    assert traj.shape == (4, 16, 3)
    path = write_netcdf(ds, tmp_path / "l63.nc")
    with xr.open_dataset(path) as back:
        torch.testing.assert_close(trajectories(back), traj)
    # the first trajectories do not depend on n; registered for `scidiff datasets make`
    more = generate("lorenz63", n=6, res=16, seed=3, burn_in=200)
    torch.testing.assert_close(trajectories(more)[:4], traj)
    l96 = generate("lorenz96", n=2, res=8, num_variables=6, forcing=8.0, burn_in=100)
    assert trajectories(l96).shape == (2, 8, 6) and l96.attrs["param_F"] == "8.0"


def test_bad_inputs():
    with pytest.raises(ValueError, match="unknown dynamical system"):
        get_system("lorenz84")
    with pytest.raises(ValueError, match="dt must be positive"):
        integrate(lorenz63_rhs, torch.ones(1, 3), -0.1, 3)
    with pytest.raises(ValueError, match="non-finite"):
        integrate(lorenz63_rhs, torch.full((1, 3), float("nan")), 0.01, 3)
    with pytest.raises(ValueError, match="diverged"):
        integrate(lorenz63_rhs, torch.ones(1, 3, dtype=torch.float64) * 1e3, 1.0, 50)
    with pytest.raises(ValueError, match="at least 4 variables"):
        get_system("lorenz96", num_variables=3)
    with pytest.raises(ValueError, match="n must be"):
        simulate("lorenz63", 0, 3)


def test_ks_critical_is_the_five_percent_level():
    """Asymptotic constant = the Kolmogorov distribution's 95 % quantile; under the null the two-sample test with it
    rejects about 5 % of the time (Monte Carlo, 2 000 pairs of 200 draws)."""
    import numpy as np
    from scipy import special, stats

    from scidiff.dynamics.evaluation import ks_critical

    assert abs(ks_critical(300, 500) - special.kolmogi(0.05) * np.sqrt(800 / (300 * 500))) < 1e-3 * ks_critical(300, 500)
    assert np.isnan(ks_critical(0, 10))
    rng = np.random.default_rng(0)
    crit = ks_critical(200, 200)
    rejected = np.mean([stats.ks_2samp(rng.normal(size=200), rng.normal(size=200)).statistic > crit for _ in range(2000)])
    assert 0.03 < rejected < 0.07, rejected
