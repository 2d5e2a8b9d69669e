"""The command line on a lazily read archive: `scidiff fit --data.lazy=true` trains and checkpoints."""

import glob
from pathlib import Path

from scidiff.cli import run as main

ROOT = Path(__file__).resolve().parents[2]


def test_fit_on_a_lazy_archive(tmp_path):
    main(["datasets", "make", "grf", "--n", "24", "--res", "8", "-o", str(tmp_path / "g.nc")])
    main(["fit", "-c", str(ROOT / "problems/grf/fit.yaml"), "--data.generate=null", "--data.lazy=true",
          f"--data.path={tmp_path / 'g.nc'}", "--data.batch_size=8", "--trainer.max_steps=2",
          "--model.network_kwargs.base_channels=8", "--trainer.enable_progress_bar=false", "--trainer.logger=false",
          f"--trainer.default_root_dir={tmp_path}"])
    assert glob.glob(str(tmp_path / "**" / "last.ckpt"), recursive=True)
