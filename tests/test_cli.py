import glob
import subprocess
import sys
from pathlib import Path

import pytest
import xarray as xr

from scidiff.cli import run as main
from scidiff.priors import DiffusionPrior

ROOT = Path(__file__).resolve().parents[1]


def test_import_is_light():
    code = (
        "import sys, scidiff; heavy = [m for m in ('pytorch_lightning', 'lightning', 'torch_geometric', 'rdkit', "
        "'xarray', 'deepinv') if m in sys.modules]; print(heavy); assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_fit_config_smoke_then_sample_and_export(tmp_path):
    main(["fit", "-c", str(ROOT / "problems/grf/fit.yaml"), "--trainer.max_steps=2", "--data.generate.n=80",
          "--data.batch_size=40", "--model.network_kwargs.base_channels=8", "--trainer.enable_progress_bar=false",
          "--trainer.logger=false", f"--trainer.default_root_dir={tmp_path}"])
    ckpt = glob.glob(str(tmp_path / "**" / "last.ckpt"), recursive=True)
    assert ckpt, "fit wrote no checkpoint"
    main(["export", ckpt[0], str(tmp_path / "p.safetensors")])
    card = (tmp_path / "p.md").read_text()
    assert "2 optimiser steps" in card and "80 images seen" in card and '"name": "grf"' in card
    main(["sample", "--prior", str(tmp_path / "p.safetensors"), "--n", "3", "--steps", "3", "-o", str(tmp_path / "s.nc")])
    ds = xr.open_dataset(tmp_path / "s.nc")
    assert ds["x"].shape == (3, 1, 32, 32)


def test_predict_writes_one_netcdf_per_batch(tmp_path):
    prior = DiffusionPrior([1, 32, 32], network_kwargs={"base_channels": 8, "channel_mults": [1, 2]})
    import pytorch_lightning as pl

    trainer = pl.Trainer(logger=False, enable_progress_bar=False, enable_checkpointing=False)
    trainer.strategy.connect(prior)
    trainer.save_checkpoint(tmp_path / "p.ckpt")
    out = tmp_path / "pred"
    main(["predict", "-c", str(ROOT / "problems/grf/fit.yaml"), "--data.generate.n=6", "--data.val_fraction=0.5",
          "--data.batch_size=2", "--model.network_kwargs.base_channels=8", "--model.network_kwargs.channel_mults=[1, 2]",
          "--trainer.logger=false", "--trainer.enable_progress_bar=false", f"--trainer.default_root_dir={tmp_path}",
          "--trainer.callbacks+=scidiff.data.writers.NetCDFPredictionWriter",
          f"--trainer.callbacks.output_dir={out}", f"--ckpt_path={tmp_path / 'p.ckpt'}"])
    files = sorted(out.glob("*.nc"))
    assert len(files) == 2 and xr.open_dataset(files[0])["x"].shape == (2, 1, 32, 32)


def test_datasets_make(tmp_path):
    main(["datasets", "make", "grf", "--n", "5", "--res", "8", "-o", str(tmp_path / "g.nc")])
    assert xr.open_dataset(tmp_path / "g.nc")["u"].shape == (5, 8, 8)
    main(["datasets", "make", "poisson", "--n", "2", "--res", "8", "--workers", "1", "--no-progress", "-o",
          str(tmp_path / "p.nc")])
    assert set(xr.open_dataset(tmp_path / "p.nc").data_vars) >= {"a", "u"}


def test_demo_runs_on_a_given_prior(tmp_path):
    prior = DiffusionPrior([1, 32, 32], network_kwargs={"base_channels": 8, "channel_mults": [1, 2]})
    path = prior.export(tmp_path / "tiny.safetensors")
    summary = main(["demo", "--prior", str(path), "--n", "4", "--steps", "3", "--dps-steps", "4", "--out", str(tmp_path / "demo")])
    assert Path(summary["netcdf"]).exists() and Path(summary["figure"]).exists()


def test_bridge_problem_from_the_command_line():
    report = main(["bridge", "-c", str(ROOT / "problems/bridges_simplex/config.yaml"), "--set", "n_train=200",
                   "--set", "n_eval=100", "--set", "n_iter=5", "--set", "hidden=16", "--set", "n_steps=10"])
    assert {r["boundary"] for r in report["results"]} >= {"reflect"}


def test_problem_file_overrides(tmp_path):
    from scidiff._config import load_config

    path = tmp_path / "p.yaml"
    path.write_text("model:\n  steps: 10\nname: flower\n")
    config = load_config(path, ["model.steps=50", "name=simplex", "trainer.devices=2"])
    assert config == {"model": {"steps": 50}, "name": "simplex", "trainer": {"devices": 2}}
    with pytest.raises(ValueError, match="not KEY=VALUE"):
        load_config(path, ["model.steps"])
    path.write_text("- a list\n")
    with pytest.raises(ValueError, match="YAML mapping"):
        load_config(path)
