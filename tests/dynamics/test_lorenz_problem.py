"""The Lorenz problem: the YAML trains a 1D temporal prior; the dataset is made from the command line; the event
sampler runs on a trained prior in physical units."""

from pathlib import Path

import pytest
import torch

from scidiff.cli import main
from scidiff.diffusion import karras_sigmas, seeded_generators
from scidiff.dynamics import sample_event, threshold_event
from scidiff.priors import DiffusionPrior

ROOT = Path(__file__).resolve().parents[2]


def test_datasets_make_lorenz63(tmp_path):
    import xarray as xr

    main(["datasets", "make", "lorenz63", "--n", "3", "--res", "8", "-o", str(tmp_path / "l.nc")])
    with xr.open_dataset(tmp_path / "l.nc") as ds:
        assert ds["x"].shape == (3, 8) and ds.attrs["system"] == "lorenz63"


def test_fit_yaml_trains_a_temporal_prior_and_events_run_on_it(tmp_path):
    main(["fit", "-c", str(ROOT / "problems/lorenz/fit.yaml"), "--trainer.max_steps=2", "--data.generate.n=40",
          "--data.generate.burn_in=50", "--data.batch_size=8", f"--trainer.default_root_dir={tmp_path}",
          f"--trainer.logger.init_args.save_dir={tmp_path}"])
    ckpt = sorted(tmp_path.rglob("last.ckpt"))
    assert ckpt, "fit wrote no checkpoint"
    prior = DiffusionPrior.load(ckpt[0]).eval()
    assert prior.shape == (3, 64) and prior.norm_mean[2] > 10  # z is centred near 25: the normaliser was stored
    event = threshold_event(0, 5.0)
    x = sample_event(prior, event, (2, *prior.shape), karras_sigmas(3, 0.002, 20.0), transform=prior.denormalize,
                     generator=seeded_generators(2), progress=False)
    assert x.shape == (2, 3, 64) and torch.isfinite(x).all()


def test_shipped_prior_matches_its_card():
    assets = ROOT / "scidiff" / "assets"
    if not (assets / "lorenz63.safetensors").exists():
        pytest.skip("no shipped Lorenz-63 prior")
    prior = DiffusionPrior.pretrained("lorenz63")
    assert prior.shape == (3, 64)
    assert "lorenz63" in (assets / "lorenz63.md").read_text()


def test_finetune_starts_from_the_shipped_weights_and_decays_the_rate():
    import importlib.util
    import time

    assets = ROOT / "scidiff" / "assets"
    if not (assets / "lorenz63.safetensors").exists():
        pytest.skip("no shipped Lorenz-63 prior")
    spec = importlib.util.spec_from_file_location("lorenz_finetune", ROOT / "problems/lorenz/finetune.py")
    finetune = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(finetune)
    shipped = DiffusionPrior.pretrained("lorenz63")
    prior = finetune.build(str(assets / "lorenz63.safetensors"), lr=5e-4, warmup=10, ema_decay=0.99)
    for name, value in shipped.precond.state_dict().items():
        torch.testing.assert_close(prior.precond.state_dict()[name], value)
        torch.testing.assert_close(prior.ema.state_dict()[name], value)
    torch.testing.assert_close(prior.norm_std, shipped.norm_std)
    prior.hparams.lr_decay_steps, prior.train_seconds = 110, 100.0
    prior.on_train_start()
    floor = prior.hparams.lr_final_fraction
    assert prior.lr_factor(0) == pytest.approx(0.1) and prior.lr_factor(10) == pytest.approx(1.0, abs=1e-3)
    assert prior.lr_factor(60) == pytest.approx(0.5 * (1 + floor), abs=0.02)
    assert prior.lr_factor(110) == pytest.approx(floor)
    prior._t0 = time.monotonic() - 100.0  # out of wall time: the rate is at its floor whatever the step
    assert prior.lr_factor(20) == pytest.approx(floor)


def test_finetune_tail_mode_oversamples_max_x_in_the_shipped_units():
    import argparse
    import importlib.util

    from scidiff.data.weighted import OversampledDataModule

    spec = importlib.util.spec_from_file_location("lorenz_finetune", ROOT / "problems/lorenz/finetune.py")
    finetune = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(finetune)
    prior = finetune.CosinePrior(shape=[3, 8], network="mlp", network_kwargs={"hidden": 8, "depth": 2})
    prior.set_normalizer(torch.tensor([0.0, 0.0, 25.0]), torch.tensor([8.0, 8.0, 5.0]))
    a = argparse.Namespace(system="lorenz63", tail=True, n=200, data_seed=0, batch_size=16, quantiles=[0.5, 0.9], shares=[0.5, 0.3, 0.2])
    dm = finetune.data_module(a, prior)
    assert isinstance(dm, OversampledDataModule)
    dm.setup()
    raw = dm.data[dm._split(200)[0]]
    torch.testing.assert_close(finetune.max_x(raw), raw[:, 0].amax(-1))
    torch.testing.assert_close(dm.train_set.tensors[0][:, 2], (raw[:, 2] - 25.0) / 5.0)
    assert dm.weights.min() < 1 < dm.weights.max()  # tail windows down-weighted, bulk windows up-weighted


def test_finetune_plain_mode_keeps_the_prior_units_when_the_data_law_moves():
    """A continuation sees the new windows in the units its weights were trained in: the data module takes the
    prior's normaliser, not the new windows' moments (which differ once the burn-in changed the law)."""
    import argparse
    import importlib.util

    from scidiff.data.datamodule import FieldDataModule

    spec = importlib.util.spec_from_file_location("lorenz_finetune", ROOT / "problems/lorenz/finetune.py")
    finetune = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(finetune)
    prior = finetune.CosinePrior(shape=[3, 8], network="mlp", network_kwargs={"hidden": 8, "depth": 2})
    prior.set_normalizer(torch.tensor([1.0, -1.0, 26.0]), torch.tensor([8.0, 8.0, 4.6]))
    a = argparse.Namespace(system="lorenz63", tail=False, n=40, data_seed=0, batch_size=8)
    dm = finetune.data_module(a, prior)
    assert type(dm) is FieldDataModule
    dm.setup()
    raw = dm.data[dm._split(40)[0]]
    torch.testing.assert_close(dm.train_set.tensors[0][:, 2], (raw[:, 2] - 26.0) / 4.6)
    assert abs(float(raw[:, 2].mean()) - 26.0) > 0.1  # the data's own moments differ: the units are not theirs
    torch.testing.assert_close(dm.norm_std, prior.norm_std)


def _pool_stage(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "problems/lorenz"))
    import pool_stage

    return pool_stage


def test_pool_stage_cuts_each_chain_into_consecutive_windows(monkeypatch):
    from scidiff.dynamics import simulate

    pool_stage = _pool_stage(monkeypatch)
    w = pool_stage.attractor_windows(5, 20, 8, 4, seed=3, device="cpu", chunk=2)  # chunks of 2, 2 and 1 chains
    traj = simulate("lorenz63", 5, 20, generator=torch.Generator().manual_seed(3)).float()
    per_chain = (20 - 8) // 4 + 1
    assert w.shape == (5 * per_chain, 3, 8)
    for c, k in [(0, 0), (1, 2), (4, per_chain - 1)]:  # chain-major: window k of chain c, in (variable, time)
        torch.testing.assert_close(w[c * per_chain + k], traj[c, 4 * k:4 * k + 8].T)
    with pytest.raises(ValueError, match="saved"):
        pool_stage.attractor_windows(2, 6, 8, 4, seed=0, device="cpu")


def test_pool_stage_trains_within_its_budget_and_writes_weights_and_record(monkeypatch, tmp_path):
    import json

    assets = ROOT / "scidiff" / "assets"
    if not (assets / "lorenz63.safetensors").exists():
        pytest.skip("no shipped Lorenz-63 prior")
    pool_stage = _pool_stage(monkeypatch)
    pool_stage.main(["--init", str(assets / "lorenz63.safetensors"), "--out", str(tmp_path), "--seconds", "6",
                     "--margin", "0", "--min-steps", "3", "--chains", "8", "--saved", "96", "--stride", "16", "--val-chains", "0.25",
                     "--quantiles", "0.5", "--shares", "0.5", "0.5", "--pe-samples", "4", "--batch-size", "4"])
    record = json.loads((tmp_path / "run.json").read_text())
    assert record["steps"] >= 3 and record["windows_seen"] == 4 * record["steps"]
    assert record["training_windows"] == 6 * 3 and record["held_out_windows"] == 2 * 3
    assert record["after"]["val_loss"] != record["before"]["val_loss"]  # the EMA weights moved
    prior = DiffusionPrior.load(tmp_path / "lorenz63.safetensors")
    torch.testing.assert_close(prior.norm_mean, DiffusionPrior.pretrained("lorenz63").norm_mean)
