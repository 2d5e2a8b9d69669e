"""Problem files (``scidiff pde -c ...``): end to end on a tiny network, the wiring checked against the exact
posterior of a Gaussian prior of Poisson data, and the errors of bad problem files."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
import xarray as xr
import yaml

from scidiff.cli import run
from scidiff.pde.problem import (
    load_joint_prior,
    prior_affine,
    scores,
    solve_problem,
    solve_samples,
    threshold_darcy,
    to_dataset,
)

FORWARD = {
    "pde": "darcy",
    "truth": {"generate": {"seed": 2, "index": 0}},
    "observe": {"a": {"fraction": 0.1, "seed": 1}},
    "guidance": {"a": 1.0, "pde": 0.1},
    "sampler": {"steps": 3, "samples": 2, "seed": 0},
}


@pytest.fixture(scope="module")
def tiny_prior(tmp_path_factory):
    """An untrained joint (a, u) prior on 8 x 8 with Darcy's normaliser, exported to safetensors."""
    from scidiff.priors import DiffusionPrior

    prior = DiffusionPrior([2, 8, 8], network_kwargs={"base_channels": 8, "channel_mults": [1, 2]}, sigma_max=10.0)
    prior.set_normalizer(torch.tensor([7.5, 0.005]), torch.tensor([4.5, 0.004]))
    return str(prior.export(tmp_path_factory.mktemp("prior") / "darcy8.safetensors"))


def _write(tmp_path, config):
    path = tmp_path / "problem.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def test_cli_end_to_end_writes_a_netcdf_that_reloads(tmp_path, tiny_prior, capsys):
    nc, png = tmp_path / "out" / "fwd.nc", tmp_path / "out" / "fwd.png"
    config = {**FORWARD, "prior": tiny_prior, "output": {"netcdf": str(nc), "png": str(png)}}
    report = run(["pde", "-c", _write(tmp_path, config), "--set", "sampler.samples=3"])
    assert report["mode"] == "forward" and report["steps"] == 3 and "rel_l2_u" in report
    assert "rel_l2_u_solved" in capsys.readouterr().out
    assert png.is_file() and png.read_bytes()[:4] == b"\x89PNG"
    with xr.open_dataset(nc) as ds:
        for f in ("a", "u"):
            for part in ("mean", "std", "true", "observed"):
                assert ds[f"{f}_{part}"].dims == ("y", "x")
            assert ds[f"{f}_samples"].shape == (3, 8, 8)  # --set reached the sampler
        assert ds.x.attrs["units"] == "1" and float(ds.x[-1]) == 1.0
        assert int(ds.a_observed.sum()) == round(0.1 * 64) and int(ds.u_observed.sum()) == 0
        assert set(np.unique(ds.a_thresholded.values)) <= {3.0, 12.0}
        assert ds.attrs["error_rate_a"] == scores("darcy", {"a": ds.a_mean.values, "u": ds.u_mean.values},
                                                   {"a": ds.a_true.values, "u": ds.u_true.values})["error_rate_a"]
        # The truth is the held-out generated sample, observed values are read off it.
        from scidiff.pde import make_dataset

        ref = make_dataset("darcy", 1, 8, seed=2, workers=1, progress=False)
        np.testing.assert_allclose(ds.u_true.values, ref.u.values[0], rtol=1e-6)


def test_sensor_values_without_truth(tmp_path, tiny_prior):
    config = {**FORWARD, "prior": tiny_prior, "truth": None,
              "observe": {"u": {"points": [[1, 1], [4, 5]], "values": [0.002, 0.004]}}, "guidance": {"u": 10.0}}
    ds = solve_problem(config)
    assert ds.attrs["mode"] == "inverse" and "rel_l2_u" not in ds.attrs and "u_true" not in ds
    assert ds.u_observed.values[4, 5] == 1 and int(ds.u_observed.sum()) == 2


class _JointGaussian(torch.nn.Module):
    """The Gaussian stand-in dressed as a joint prior: event shape, noise range and normaliser buffers."""

    def __init__(self, gauss, aff):
        super().__init__()
        self.gauss, self.shape = gauss, tuple(gauss.shape)
        self.hparams = SimpleNamespace(sigma_min=0.002, sigma_max=80.0)
        self.register_buffer("norm_std", 1 / aff.scale)
        self.register_buffer("norm_mean", -aff.shift / aff.scale)

    def forward(self, x, sigma):
        return self.gauss(x, sigma)


def test_problem_file_matches_the_exact_posterior_of_a_gaussian_prior(poisson):
    """Forward Poisson through the problem layer: truth generated, observations read, channel/units mapped."""
    gauss, aff, _, _, _ = poisson
    prior = _JointGaussian(gauss, aff)
    assert torch.allclose(prior_affine(prior).scale, aff.scale) and torch.allclose(prior_affine(prior).shift, aff.shift)
    config = {"pde": "poisson", "truth": {"generate": {"seed": 5, "index": 1}},
              "observe": {"a": {"fraction": 0.3, "seed": 3}}, "guidance": {"a": 200.0, "pde": 0.0},
              "sampler": {"steps": 60, "samples": 6, "dtype": "float64"}}
    ds = solve_problem(config, prior=prior)
    n = gauss.shape[-1]
    idx = torch.nonzero(torch.as_tensor(ds.a_observed.values).flatten().bool()).flatten()
    A = torch.zeros(len(idx), 2 * n * n, dtype=torch.float64)
    A[torch.arange(len(idx)), idx] = 1.0
    truth = torch.as_tensor(np.stack([ds.a_true.values, ds.u_true.values]))[None]
    exact = aff.to_physical(gauss.posterior(A, aff.to_normalised(truth).flatten()[idx], 1e-3).mean().reshape(1, 2, n, n))
    e_exact = np.linalg.norm(exact[0, 1].numpy() - ds.u_true.values) / np.linalg.norm(ds.u_true.values)
    assert ds.attrs["rel_l2_u"] < 1.3 * e_exact, (ds.attrs["rel_l2_u"], e_exact)
    # The observed a is (nearly) matched.
    m = ds.a_observed.values.astype(bool)
    assert np.abs(ds.a_mean.values[m] - ds.a_true.values[m]).max() < 0.2 * np.abs(ds.a_true.values[m]).max()


def test_scores_and_threshold():
    a = np.full((4, 4), 3.0)
    a[1, 1] = 12.0
    a_hat = a.copy()
    a_hat[1, 2] = 8.0  # -> 12 after thresholding: one interior node of four wrong
    s = scores("darcy", {"a": a_hat, "u": np.ones((4, 4)) * 1.1}, {"a": a, "u": np.ones((4, 4))})
    assert s["error_rate_a"] == 0.25 and s["rel_l2_u"] == pytest.approx(0.1)
    assert s["rel_l2_a"] == pytest.approx(5.0 / np.linalg.norm([12.0, 3.0, 3.0, 3.0]))
    assert "error_rate_a" not in scores("poisson", {"a": a_hat, "u": a}, {"a": a, "u": a})
    assert set(np.unique(threshold_darcy(np.array([2.0, 7.4, 7.5, 20.0])))) == {3.0, 12.0}


@pytest.mark.parametrize(
    "change, error, match",
    [
        ({"observe": {"a": {"points": [[0, 1], [8, 2]]}}}, ValueError, "outside the grid"),
        ({"observe": {"a": {"points": [[0, 1], [2, 2]], "values": [1.0, float("nan")]}}}, ValueError, "NaN"),
        ({"observe": {"a": {"points": []}}}, ValueError, "observes nothing"),
        ({"observe": {"a": {"fraction": 0.0}}}, ValueError, "fraction"),
        ({"observe": {}}, ValueError, "nothing is observed"),
        ({"observe": {"a": {"fraction": 0.1, "n_points": 3}}}, ValueError, "exactly one"),
        ({"observe": {"w": {"fraction": 0.1}}}, ValueError, "unknown field 'w'"),
        ({"guidance": {"pde": 1.0}}, ValueError, "guidance.a"),
        ({"guidance": {"a": 1.0, "zeta": 2}}, ValueError, "unknown key"),
        ({"guidance": {"a": 1.0, "pde": 1.0, "pde_form": "h1"}}, ValueError, "unknown form 'h1'"),
        ({"pde": "navier_stokes"}, ValueError, "pde must be one of"),
        ({"truth": {"generate": {"seed": 0}}, "pde": "poisson", "observe": {"u": {"fraction": 0.1}},
          "guidance": {"u": 1, "pde": 10.0, "pde_form": "h-2"}}, None, None),
        ({"pde": "darcy", "guidance": {"a": 1.0, "pde": 0.5, "pde_form": "preconditioned"}}, None, None),
        ({"pde": "darcy", "observe": {"u": {"fraction": 0.1}},
          "guidance": {"u": 1.0, "pde": 0.5, "pde_form": "preconditioned+coefficient", "pde_damping": 0.1}}, None, None),
        ({"pde": "darcy", "observe": {"u": {"fraction": 0.1}}, "guidance": {"u": 0.0, "u_solved": 10.0}}, None, None),
        ({"pde": "poisson", "observe": {"u": {"fraction": 0.1}}, "guidance": {"u": 1.0, "u_solved": 10.0}}, None, None),
        ({"guidance": {"a": 1.0, "u_solved": 10.0}}, ValueError, "u_solved .* needs an observed u"),
        ({"truth": None}, ValueError, "no sensor values"),
        ({"truth": {"url": "x"}}, ValueError, "truth:"),
        ({"sampler": {"steps": 0}}, ValueError, "steps"),
        ({"sampler": {"dtype": "float16"}}, ValueError, "dtype"),
        ({"prior": "/nonexistent/prior.safetensors"}, FileNotFoundError, "no prior file"),
        ({"prior": "no_such_prior"}, ValueError, "no shipped prior"),
    ],
)
def test_bad_problem_files_raise(tiny_prior, change, error, match):
    config = {**FORWARD, "prior": tiny_prior, **change}
    if error is None:  # a valid variant: runs
        assert solve_problem(config).attrs["mode"] == ("inverse" if "u" in config["observe"] else "forward")
        return
    with pytest.raises(error, match=match):
        solve_problem(config)


def test_truth_file_on_another_grid_and_non_joint_prior_raise(tmp_path, tiny_prior):
    from scidiff.data.netcdf import write_netcdf
    from scidiff.pde import make_dataset
    from scidiff.priors import DiffusionPrior

    path = write_netcdf(make_dataset("darcy", 1, 6, seed=0, workers=1, progress=False), tmp_path / "d6.nc")
    with pytest.raises(ValueError, match="8 x 8"):
        solve_problem({**FORWARD, "prior": tiny_prior, "truth": {"path": str(path)}})
    with pytest.raises(ValueError, match="index 3"):
        solve_problem({**FORWARD, "prior": tiny_prior, "truth": {"path": str(path), "index": 3}})
    single = DiffusionPrior([1, 8, 8], network_kwargs={"base_channels": 8, "channel_mults": [1]})
    with pytest.raises(ValueError, match=r"\(2, n, n\)"):
        load_joint_prior(str(single.export(tmp_path / "one.safetensors")))


def test_solved_ensemble_is_the_solver_on_each_sampled_coefficient():
    """Forward mode's u_solved: the reference solver on every sampled a (Darcy: thresholded). Samples that all
    carry the true a give the true u back; for the linear Poisson problem the mean over samples is the solver on
    the mean of a."""
    from scidiff.inverse.posterior import Posterior
    from scidiff.pde import make_dataset, solve_darcy, solve_poisson

    ref = make_dataset("darcy", 3, 12, seed=2, workers=1, progress=False)
    a, u = ref.a.values.astype(np.float64), ref.u.values.astype(np.float64)
    x = torch.as_tensor(np.stack([a, np.zeros_like(u)], 1))  # the u channel is wrong on purpose
    x[:, 0] += 0.4 * torch.randn(x[:, 0].shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    mask = torch.zeros(12, 12, dtype=torch.bool)
    mask[3, 4] = True
    truth = {"a": a[0], "u": u[0]}
    ds = to_dataset("darcy", Posterior(x[:1].repeat(2, 1, 1, 1)), {"a": mask}, truth, {"prior": "x"})
    assert ds.attrs["rel_l2_u_solved"] < 1e-6 < ds.attrs["rel_l2_u"]  # thresholding removes the jitter of a
    np.testing.assert_allclose(ds.u_solved_mean.values, solve_darcy(a[0]), atol=1e-12)
    assert float(np.abs(ds.u_solved_std.values).max()) == 0.0
    # Poisson is linear in a: the ensemble mean of the solutions is the solution of the ensemble mean.
    np.testing.assert_allclose(solve_samples("poisson", x[:, 0].numpy()).mean(0), solve_poisson(x[:, 0].numpy().mean(0)),
                               atol=1e-12)
    inverse = to_dataset("darcy", Posterior(x), {"u": mask}, None, {"prior": "x"})
    assert "u_solved_mean" not in inverse  # only the forward mode reads u off the solver
    with pytest.raises(ValueError, match="no reference solver for 'burgers'"):
        solve_samples("burgers", a)


@pytest.mark.parametrize("task", ["forward", "inverse"])
def test_64_problem_files_run_with_the_shipped_prior_and_their_weights(task):
    """problems/darcy/{forward,inverse}64.yaml: the weights are those of guidance_weights64.json and the files run
    (two steps, one sample) with the shipped 64 x 64 prior."""
    import json
    from pathlib import Path

    from scidiff._config import load_config

    root = Path(__file__).resolve().parents[2] / "problems" / "darcy"
    config = load_config(root / f"{task}64.yaml", ["sampler.steps=2", "sampler.samples=1"])
    tuned = json.loads((root / "guidance_weights64.json").read_text())[task]
    field = "a" if task == "forward" else "u"
    g = config["guidance"]
    assert g[field] == tuned[field] and g["pde"] == tuned["pde"][g["pde_form"]]
    assert g.get("u_solved", 0.0) == tuned.get("u_solved", 0.0)
    ds = solve_problem(config)
    assert ds.a_mean.shape == (64, 64) and ds.attrs["prior"] == "darcy64"
    assert ("u_solved_mean" in ds) == (task == "forward")
