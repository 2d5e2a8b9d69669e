from pathlib import Path

import pytest
import yaml

from scidiff.bridges import run_problem
from scidiff.bridges.problems import DEFAULTS, markdown_table

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", ["bridges_flower", "bridges_simplex", "bridges_flower_ipf", "bridges_box_fields"])
def test_problem_configs_run_and_reflection_never_escapes(name):
    cfg = yaml.safe_load((ROOT / "problems" / name / "config.yaml").read_text())
    assert set(cfg) <= set(DEFAULTS)
    cfg.update(n_train=300, n_eval=150, n_iter=15, batch_size=64, hidden=16, n_steps=15)
    cfg["ipf"] = {**cfg.get("ipf", {}), "n_stages": 1, "n_iter": 3, "n_paths": 32, "batch_size": 32}
    report = run_problem(cfg)
    rows = {r["boundary"]: r for r in report["results"]}
    assert rows["reflect"]["escaped_paths"] == 0 and rows["clamp"]["outside_at_end"] == 0
    assert report["noise_floor"] > 0 and "reflected bridge" in markdown_table(report)


def test_bad_configs_raise():
    with pytest.raises(ValueError, match="unknown config keys"):
        run_problem({"sigmaa": 1.0})
    with pytest.raises(TypeError):
        run_problem([("sigma", 1.0)])
    with pytest.raises(ValueError, match="unknown law"):
        run_problem({"source": {"type": "banana"}, "n_iter": 1})


def test_problem_results_do_not_depend_on_the_global_rng():
    import torch

    cfg = dict(n_train=200, n_eval=100, n_iter=10, batch_size=64, hidden=16, n_steps=10, boundaries=["reflect"])
    torch.manual_seed(1)
    first = run_problem(cfg)["results"][0]["sinkhorn"]
    torch.manual_seed(2)
    state = torch.get_rng_state()
    assert run_problem(cfg)["results"][0]["sinkhorn"] == first
    assert torch.equal(torch.get_rng_state(), state)  # the caller's stream is left where it was
