"""Every public entry point tried with bad input: each case asserts the error type and that the message names
the problem. The rows of ``docs/errors.md`` point here; ``len(CASES)`` is the count of bad inputs tried."""

import math

import pytest
import torch

from scidiff.diffusion import karras_sigmas, sample, seeded_generators
from scidiff.likelihoods import GaussianLikelihood, LinearGaussianLikelihood, PointSensors
from scidiff.oracles import GaussianMixture

D = 6
EVENT = (1, D)
SIGMAS = karras_sigmas(4, 0.01, 10.0)


def _prior():
    return GaussianMixture(torch.ones(1), torch.zeros(1, D, dtype=torch.float64), torch.ones(1, D, dtype=torch.float64), shape=EVENT)


def _lik(m=3, sigma_y=0.1, y=None):
    A = torch.eye(D, dtype=torch.float64)[:m]
    return LinearGaussianLikelihood.from_matrix(A, torch.zeros(m, dtype=torch.float64) if y is None else y, sigma_y, EVENT)


def _dps(**kw):
    from scidiff.inverse import dps

    args = {"denoiser": _prior(), "likelihood": _lik(), "shape": (2, *EVENT), "sigmas": SIGMAS, "progress": False,
            "dtype": torch.float64} | kw
    return dps(**args)


def _smc(name, **kw):
    import scidiff.inverse as inv

    args = {"denoiser": _prior(), "likelihood": _lik(), "shape": (4, *EVENT), "sigmas": SIGMAS, "progress": False,
            "dtype": torch.float64} | kw
    return getattr(inv, name)(**args)


def _red_diff(**kw):
    from scidiff.inverse import red_diff

    args = {"denoiser": _prior(), "likelihood": _lik(), "shape": (2, *EVENT), "sigmas": SIGMAS, "progress": False,
            "dtype": torch.float64} | kw
    return red_diff(**args)


def _mismatched():
    """An operator whose output (4 values) does not match y (3 values)."""
    A = torch.eye(D, dtype=torch.float64)[:4]
    lik = _lik()
    return LinearGaussianLikelihood(lambda x: x.reshape(len(x), -1) @ A.T, lik.A_adjoint, lik.y, 0.1)


def _tiny_prior(shape=(1, 8, 8)):
    from scidiff.priors import DiffusionPrior

    return DiffusionPrior(list(shape), network="mlp", network_kwargs={"hidden": 8, "depth": 1}, ema_decay=0.0)


def _grid_sensors(coords):
    g = torch.linspace(0, 1, 8)
    return PointSensors(torch.as_tensor(coords), torch.zeros(len(coords)), 0.1, [g, g])


def _datamodule(tmp_path, ds, **kw):
    from scidiff.data.datamodule import FieldDataModule
    from scidiff.data.netcdf import write_netcdf

    path = write_netcdf(ds, tmp_path / "d.nc")
    return FieldDataModule(path=str(path), **kw).data


def _grf(n=4, res=8):
    from scidiff.data.synthetic import generate

    return generate("grf", n=n, res=res, seed=0)


def _domain(name):
    from scidiff.bridges.domains import Ball, Box, Simplex

    return {"box": Box(-1.0, 1.0, dim=2), "ball": Ball(torch.zeros(2), 1.0), "simplex": Simplex(2)}[name]


# (id, call, error type, regex the message must match)
CASES = [
    # unconditional samplers
    ("sample/int-dtype", lambda: sample(_prior(), (2, *EVENT), SIGMAS, dtype=torch.int64), ValueError, "floating"),
    ("sample/increasing-sigmas", lambda: sample(_prior(), (2, *EVENT), SIGMAS.flip(0)), ValueError, "strictly decreasing"),
    ("sample/nan-sigma", lambda: sample(_prior(), (2, *EVENT), torch.tensor([1.0, math.nan, 0.0])), ValueError, "non-finite"),
    ("sample/negative-sigma", lambda: sample(_prior(), (2, *EVENT), torch.tensor([1.0, -0.5])), ValueError, "non-negative"),
    ("sample/one-sigma", lambda: sample(_prior(), (2, *EVENT), torch.tensor([1.0])), ValueError, "at least 2"),
    ("sample/unknown-sampler", lambda: sample(_prior(), (2, *EVENT), SIGMAS, sampler="rk45"), ValueError, "unknown sampler"),
    # a prior asked for another shape
    ("prior/other-shape", lambda: _tiny_prior()(torch.zeros(2, 1, 16, 16), 1.0), ValueError, r"trained on fields of shape \(1, 8, 8\)"),
    ("prior/other-shape-in-dps", lambda: _dps(denoiser=_tiny_prior(), shape=(2, 1, 4, 4), likelihood=GaussianLikelihood(lambda x: x, torch.zeros(1, 1, 4, 4), 0.1), dtype=torch.float32), ValueError, "trained on fields of shape"),
    ("prior/nan-input", lambda: _tiny_prior()(torch.full((1, 1, 8, 8), math.nan), 1.0), ValueError, "non-finite"),
    ("prior/sigma-rank", lambda: _tiny_prior()(torch.zeros(2, 1, 8, 8), torch.ones(2, 1)), ValueError, "sigma must be a scalar or have shape"),
    ("prior/negative-sigma", lambda: _tiny_prior()(torch.zeros(2, 1, 8, 8), -1.0), ValueError, "non-negative"),
    # likelihoods
    ("likelihood/nan-y", lambda: _lik(y=torch.tensor([0.0, math.nan, 0.0], dtype=torch.float64)), ValueError, "measurements y contains 1 non-finite"),
    ("likelihood/inf-y", lambda: _lik(y=torch.tensor([0.0, math.inf, 0.0], dtype=torch.float64)), ValueError, "non-finite"),
    ("likelihood/zero-sigma_y", lambda: _lik(sigma_y=0.0), ValueError, "sigma_y must be positive"),
    ("likelihood/negative-sigma_y", lambda: _lik(sigma_y=-1.0), ValueError, "sigma_y must be positive"),
    ("likelihood/nan-sigma_y", lambda: _lik(sigma_y=math.nan), ValueError, "sigma_y must be positive"),
    ("likelihood/operator-vs-y", lambda: _mismatched().energy(torch.zeros(1, *EVENT, dtype=torch.float64)), ValueError, "does not match the measurements y"),
    ("sensors/outside-grid", lambda: _grid_sensors([[0.5, 0.5], [1.5, 0.2]]), ValueError, "outside"),
    ("sensors/wrong-rank-coords", lambda: _grid_sensors([0.5, 0.5]), ValueError, r"coords must be \(M, 2\)"),
    # posterior samplers
    ("dps/rank-1-shape", lambda: _dps(shape=(4,)), ValueError, "at least one event dimension"),
    ("dps/zero-samples", lambda: _dps(shape=(0, *EVENT)), ValueError, "must be positive"),
    ("dps/operator-vs-y", lambda: _dps(likelihood=_mismatched()), ValueError, "does not match the measurements y"),
    ("dps/zeta-zero", lambda: _dps(zeta=0.0), ValueError, "zeta must be a positive number"),
    ("dps/nan-zeta", lambda: _dps(zeta=math.nan), ValueError, "zeta must be a positive number"),
    ("dps/increasing-sigmas", lambda: _dps(sigmas=SIGMAS.flip(0)), ValueError, "strictly decreasing"),
    ("dps/int-dtype", lambda: _dps(dtype=torch.int32), ValueError, "floating"),
    ("red_diff/operator-vs-y", lambda: _red_diff(likelihood=_mismatched(), mu_init="zeros"), ValueError, "does not match the measurements y"),
    ("red_diff/negative-lam", lambda: _red_diff(lam=-1.0), ValueError, "must be non-negative"),
    ("red_diff/bad-init-shape", lambda: _red_diff(mu_init=torch.zeros(3, 3)), ValueError, "initial mu has shape"),
    ("red_diff/nan-lr", lambda: _red_diff(lr=math.nan), ValueError, "lr must be a positive number"),
    ("afdps/operator-vs-y", lambda: _smc("afdps", likelihood=_mismatched()), ValueError, "cannot be evaluated on particles"),
    ("afdps/event-shape", lambda: _smc("afdps", shape=(4, 1, 5)), ValueError, r"event shape \(1, 5\)"),
    ("afdps/no-final-zero", lambda: _smc("afdps", sigmas=SIGMAS[:-1]), ValueError, "must end with 0"),
    ("afdps/zero-particles", lambda: _smc("afdps", shape=(0, *EVENT)), ValueError, "num_particles >= 1"),
    ("afdps/unknown-resampling", lambda: _smc("afdps", resampling="magic"), ValueError, "unknown resampling scheme"),
    ("tds/operator-vs-y", lambda: _smc("tds", likelihood=_mismatched()), ValueError, "cannot be evaluated on particles"),
    ("tds/not-a-likelihood", lambda: _smc("tds", likelihood=lambda x: x.sum()), TypeError, "must be a scidiff Likelihood"),
    ("tds/negative-ess", lambda: _smc("tds", ess_threshold=-1.0), ValueError, "ess_threshold must be >= 0"),
    # particle kernels
    ("kernels/nan-log-weights", lambda: __import__("scidiff.kernels", fromlist=["ess"]).ess(torch.tensor([0.0, math.nan])), ValueError, "contain NaN"),
    ("kernels/plus-inf-log-weights", lambda: __import__("scidiff.kernels", fromlist=["ess"]).ess(torch.tensor([0.0, math.inf])), ValueError, r"\+inf"),
    ("kernels/empty-log-weights", lambda: __import__("scidiff.kernels", fromlist=["ess"]).ess(torch.zeros(3, 0)), ValueError, "N >= 1"),
    # data files
    ("netcdf/missing-variable", lambda tmp_path: _datamodule(tmp_path, _grf(), variables=["v"]), KeyError, r"\['v'\] not in the dataset"),
    ("netcdf/wrong-units", lambda tmp_path: _datamodule(tmp_path, _grf(), units={"u": "m/s"}), ValueError, "has units '1'.*expected 'm/s'"),
    ("netcdf/no-units-given", lambda tmp_path: _datamodule(tmp_path, _grf().assign(u=lambda d: d.u.drop_attrs()), units={"u": "K"}), ValueError, "has no 'units' attribute"),
    ("netcdf/nan-values", lambda tmp_path: _datamodule(tmp_path, _grf().where(lambda d: d.u < 0.5)), ValueError, "NaN/inf"),
    ("netcdf/missing-file", lambda tmp_path: _datamodule_missing(tmp_path), FileNotFoundError, "no dataset at"),
    # bridges
    ("domain/outside-box", lambda: _domain("box").reflect(torch.tensor([[2.0, 0.0]]), torch.zeros(1, 2)), ValueError, "1 of 1 point.*outside the Box"),
    ("domain/outside-ball", lambda: _domain("ball").reflect(torch.tensor([[0.0, 0.0], [3.0, 0.0]]), torch.zeros(2, 2)), ValueError, "1 of 2 point.*outside the Ball"),
    ("domain/outside-simplex", lambda: _domain("simplex").check_inside(torch.tensor([[0.8, 0.8]])), ValueError, "outside the Simplex"),
    ("domain/wrong-dim", lambda: _domain("ball").contains(torch.zeros(3, 3)), ValueError, r"shape \(B, 2\)"),
    ("domain/nan-points", lambda: _domain("ball").contains(torch.tensor([[math.nan, 0.0]])), ValueError, "non-finite"),
    ("domain/empty-box", lambda: __import__("scidiff.bridges.domains", fromlist=["Box"]).Box(1.0, 1.0, dim=2), ValueError, "hi > lo"),
    ("domain/zero-radius", lambda: __import__("scidiff.bridges.domains", fromlist=["Ball"]).Ball(torch.zeros(2), 0.0), ValueError, "positive"),
    # PDE sparse observations
    ("pde/empty-mask", lambda: _sparse(torch.zeros(4, 4, dtype=torch.bool)), ValueError, "observes nothing"),
    ("pde/float-mask", lambda: _sparse(torch.zeros(4, 4)), TypeError, "mask must be boolean"),
    ("pde/nan-observed", lambda: _sparse(torch.ones(4, 4, dtype=torch.bool), values=torch.full((4, 4), math.nan)), ValueError, "NaN or inf"),
]


def _sparse(mask, values=None):
    from scidiff.pde.diffusionpde import SparseObservation

    return SparseObservation(torch.zeros(4, 4) if values is None else values, mask)


def _datamodule_missing(tmp_path):
    from scidiff.data.datamodule import FieldDataModule

    return FieldDataModule(path=str(tmp_path / "nope.nc")).data


@pytest.mark.parametrize("name, call, error, message", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_refused_with_a_clear_message(name, call, error, message, tmp_path):
    with pytest.raises(error, match=message):
        call(tmp_path) if call.__code__.co_argcount else call()


def test_all_observed_mask_is_a_valid_forward_problem():
    """Observing every point is not an error (the posterior is then pinned to the data): it runs and stays finite."""
    from scidiff.inverse import dps

    y = torch.linspace(-1, 1, D, dtype=torch.float64)
    lik = LinearGaussianLikelihood.from_matrix(torch.eye(D, dtype=torch.float64), y, 0.01, EVENT)
    post = dps(_prior(), lik, (8, *EVENT), karras_sigmas(20, 0.01, 10.0), progress=False, dtype=torch.float64, zeta=0.5,
               generator=seeded_generators(8))
    assert torch.isfinite(post.samples).all()
    # the exact posterior mean is y / (1 + 1e-4); DPS is approximate, the unguided prior mean (0) is off by up to 1
    assert (post.mean().flatten() - y).abs().max() < 0.2
