"""Each PDE's training YAML under problems/ trains a prior of the right shape (two steps on a few generated pairs)."""

from pathlib import Path

import pytest

from scidiff.cli import main
from scidiff.priors import DiffusionPrior

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("pde, shape, yaml", [("darcy", (2, 32, 32), "fit"), ("poisson", (2, 32, 32), "fit"),
                                              ("helmholtz", (2, 32, 32), "fit"), ("burgers", (1, 32, 32), "fit"),
                                              ("navier_stokes", (2, 32, 32), "fit"),
                                              ("darcy", (2, 64, 64), "fit64")])  # starts from darcy32's weights
def test_fit_yaml_trains_a_prior_of_the_pde_fields(pde, shape, yaml, tmp_path):
    fast = ["--data.generate.dt_solver=0.05"] if pde == "navier_stokes" else []  # a coarse solve: shapes only
    main(["fit", "-c", str(ROOT / f"problems/{pde}/{yaml}.yaml"), "--trainer.max_steps=2", "--data.generate.n=24",
          "--data.batch_size=8", f"--trainer.default_root_dir={tmp_path}",
          f"--trainer.logger.init_args.save_dir={tmp_path}", *fast])
    ckpt = sorted(tmp_path.rglob("last.ckpt"))
    assert ckpt, "fit wrote no checkpoint"
    prior = DiffusionPrior.load(ckpt[0])
    assert prior.shape == shape
    assert prior.sample(2, steps=2).shape == (2, *shape)
