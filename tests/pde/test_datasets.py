"""Dataset generation: CF layout, provenance, physics of the stored fields, reproducibility, CLI."""

import numpy as np
import pytest
import torch
import xarray as xr

from scidiff.pde import burgers_residual, darcy_residual, helmholtz_residual, ns_residual, poisson_residual
from scidiff.pde.datasets import joint_pair, main, make_dataset

T = lambda da: torch.as_tensor(da.values, dtype=torch.float64)  # noqa: E731


def _check_cf(ds, dims):
    assert ds.attrs["Conventions"].startswith("CF-")
    assert "scidiff" in ds.attrs["source"] and "solver" in ds.attrs["source"] and "seed" in ds.attrs
    for v in ds.data_vars.values():
        assert {"units", "long_name"} <= set(v.attrs) and v.dtype == np.float32
    for c in dims[1:]:
        assert {"units", "axis", "long_name"} <= set(ds[c].attrs)
    assert ds["sample"].attrs["standard_name"] == "realization"


@pytest.mark.parametrize("name", ["darcy", "poisson", "helmholtz"])
def test_elliptic_datasets(name):
    ds = make_dataset(name, 4, 17, seed=1, workers=1, progress=False)
    assert ds["a"].dims == ds["u"].dims == ("sample", "y", "x")
    _check_cf(ds, ("sample", "y", "x"))
    assert ds["x"][-1] == 1.0 and ds.attrs["boundary_condition"] == "dirichlet_zero"
    a, u = T(ds["a"]), T(ds["u"])
    r = {"darcy": darcy_residual, "poisson": poisson_residual, "helmholtz": helmholtz_residual}[name](a, u)
    scale = 1.0 if name == "darcy" else a.abs().max()
    assert r.abs().max() < 1e-4 * scale  # float32 storage
    if name == "darcy":
        assert set(np.unique(ds["a"].values)) == {3.0, 12.0}


def test_navier_stokes_dataset_and_pairs():
    ds = make_dataset("navier_stokes", 2, 16, seed=0, workers=1, progress=False, n_snapshots=5, dt_solver=0.01)
    assert ds["w"].dims == ("sample", "time", "y", "x") and ds.sizes["time"] == 6
    _check_cf(ds, ("sample", "time", "y", "x"))
    assert ds.attrs["nu"] == 1e-3 and ds.attrs["n_snapshots"] == 5
    w = T(ds["w"])
    # The stored trajectory satisfies Navier-Stokes up to the O(dt^2) error of the residual's time stencil.
    r = ns_residual(w, 0.2)
    dwdt = (w[:, 1:] - w[:, :-1]).abs().mean() / 0.2
    assert r.abs().mean() < 0.05 * dwdt
    pair = joint_pair(ds)
    assert pair["a"].dims == pair["u"].dims == ("sample", "y", "x")
    assert np.array_equal(pair["u"].values, ds["w"].isel(time=-1).values)


def test_navier_stokes_pairs_through_the_data_module():
    """``generate: {name: navier_stokes, pairs: true}`` gives a data module of (w0, w1) pairs as channels (a, u)."""
    from scidiff.data.datamodule import FieldDataModule
    from scidiff.pde import solve_navier_stokes

    spec = {"name": "navier_stokes", "pairs": True, "n": 4, "res": 8, "seed": 3, "n_snapshots": 1, "dt_solver": 0.01}
    dm = FieldDataModule(generate=spec, variables=["a", "u"], normalize=False, val_fraction=0.25, batch_size=2)
    assert dm.event_shape == [2, 8, 8]
    x = dm.data.double()
    w1 = solve_navier_stokes(x[:, 0].numpy(), 1.0, 1, 0.01)[:, -1]
    assert np.abs(x[:, 1].numpy() - w1).max() < 1e-5 * np.abs(w1).max()  # float32 storage
    traj = make_dataset("navier_stokes", 4, 8, seed=3, workers=1, progress=False, n_snapshots=1, dt_solver=0.01)
    assert np.array_equal(x[:, 0].float().numpy(), traj["w"].isel(time=0).values)
    with pytest.raises(ValueError, match="pairs=True pairs the Navier-Stokes"):
        make_dataset("darcy", 2, 8, workers=1, progress=False, pairs=True)


def test_burgers_dataset():
    ds = make_dataset("burgers", 2, 32, seed=0, workers=1, progress=False, refine=2)
    assert ds["u"].dims == ("sample", "time", "x") and ds["u"].shape == (2, 32, 32)
    _check_cf(ds, ("sample", "time", "x"))
    u = T(ds["u"])
    r = burgers_residual(u, nu=0.01)
    assert torch.isfinite(r).all() and r.abs().mean() < 0.2 * u.abs().mean() / 0.03


def test_reproducible_and_independent_of_workers():
    a = make_dataset("darcy", 6, 9, seed=3, workers=1, progress=False)
    b = make_dataset("darcy", 6, 9, seed=3, workers=2, chunk_size=2, progress=False)
    c = make_dataset("darcy", 6, 9, seed=4, workers=1, progress=False)
    assert np.array_equal(a["u"].values, b["u"].values) and np.array_equal(a["a"].values, b["a"].values)
    assert not np.array_equal(a["a"].values, c["a"].values)


def test_cli_writes_netcdf(tmp_path, capsys):
    out = tmp_path / "poisson.nc"
    main(["poisson", "--n", "3", "--res", "9", "--seed", "2", "--workers", "1", "--no-progress", "-o", str(out)])
    assert "wrote" in capsys.readouterr().out
    ds = xr.open_dataset(out, engine="h5netcdf")
    assert ds["u"].shape == (3, 9, 9) and ds.attrs["seed"] == 2 and ds["x"].attrs["units"] == "1"
    ref = make_dataset("poisson", 3, 9, seed=2, workers=1, progress=False)
    assert np.array_equal(ds["u"].values, ref["u"].values)
    main(["helmholtz", "--n", "2", "--res", "9", "--param", "k=2", "--no-progress", "-o", str(tmp_path / "h.nc")])
    assert xr.open_dataset(tmp_path / "h.nc", engine="h5netcdf").attrs["k"] == 2.0


def test_bad_requests():
    with pytest.raises(ValueError, match="unknown dataset"):
        make_dataset("kdv", 2, 16)
    with pytest.raises(ValueError, match="unknown parameter"):
        make_dataset("darcy", 2, 16, nu=0.1)
    with pytest.raises(ValueError, match="n >= 1"):
        make_dataset("darcy", 0, 16)
    with pytest.raises(SystemExit):
        main(["darcy", "--param", "alpha", "-o", "x.nc"])
