"""The FitzHugh-Nagumo and Lorenz-96 problems: each YAML trains a temporal prior and its evaluate step runs on it."""

import runpy
import sys
from pathlib import Path

import pytest

from scidiff.cli import main
from scidiff.priors import DiffusionPrior

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("problem, shape", [("fhn", (4, 64)), ("lorenz96", (40, 32))])
def test_fit_yaml_and_evaluate_step_run(problem, shape, tmp_path, monkeypatch, capsys):
    main(["fit", "-c", str(ROOT / f"problems/{problem}/fit.yaml"), "--trainer.max_steps=2", "--data.generate.n=24",
          "--data.generate.burn_in=20", "--data.batch_size=8", f"--trainer.default_root_dir={tmp_path}",
          f"--trainer.logger.init_args.save_dir={tmp_path}"])
    ckpt = sorted(tmp_path.rglob("last.ckpt"))
    assert ckpt, "fit wrote no checkpoint"
    assert DiffusionPrior.load(ckpt[0]).shape == shape
    capsys.readouterr()
    monkeypatch.setattr(sys, "argv", ["evaluate.py", "--prior", str(ckpt[0]), "--n", "4", "--steps", "2",
                                      "--n-truth", "8", "--burn-in", "20", "--loss-windows", "4"])
    runpy.run_path(str(ROOT / f"problems/{problem}/evaluate.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "| quantity | prior | simulator |" in out and "KS distance of max_t" in out and "residual" in out
    assert "EDM loss of the sampling (EMA) weights on 4 fresh simulator windows" in out


def test_evaluation_refuses_a_prior_of_another_system():
    import torch

    from scidiff.dynamics.evaluation import compare_to_simulator

    class ThreeVariables:
        def sample(self, n, steps, **kwargs):
            return torch.zeros(n, 3, 8)

    with pytest.raises(ValueError, match="3 variables, fitzhugh_nagumo has 4"):
        compare_to_simulator(ThreeVariables(), "fitzhugh_nagumo", n=2, n_truth=2)


def test_shipped_fhn_prior_matches_its_card():
    assets = ROOT / "scidiff" / "assets"
    if not (assets / "fhn.safetensors").exists():
        pytest.skip("no shipped FitzHugh-Nagumo prior")
    prior = DiffusionPrior.pretrained("fhn")
    assert prior.shape == (4, 64)
    card = (assets / "fhn.md").read_text()
    assert "fhn" in card and "problems/fhn/fit.yaml" in card
    assert (assets / "fhn.safetensors").stat().st_size < 2 * 2**20


def test_events_benchmark_runs_on_fitzhugh_nagumo(tmp_path, capsys):
    """The event benchmark's FitzHugh-Nagumo path: truth from that simulator (cached by system), events on v1."""
    import runpy

    bench = runpy.run_path(str(ROOT / "benchmarks/events.py"))
    prior = DiffusionPrior([4, 16], network_kwargs=dict(base_channels=8, channel_mults=[1, 2], num_res_blocks=1))
    prior.eval()
    out = bench["run"](prior, quantiles=[0.5], n_event=4, steps=3, n_mc=40, n_pool=8, n_split=0,
                       samplers=["smc_pool_cut"], seed=0, smc_particles=[8], burn_in=20, truth_cache=str(tmp_path),
                       system="fitzhugh_nagumo")
    assert (tmp_path / "fitzhugh_nagumo_mc_n40_t16_seed0_burn20.safetensors").exists()
    assert out["tail"][0]["p_mc"] == pytest.approx(0.5, abs=0.05)
    assert "4 runs pooled" in out["samplers"][0]["method"]
