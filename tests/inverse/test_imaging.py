"""The phantom imaging problems of ``scidiff inverse`` (problems/phantom_*): operators, held-out truths, YAML runs."""

from pathlib import Path

import pytest
import torch

dinv = pytest.importorskip("deepinv")
from scidiff._config import load_config  # noqa: E402
from scidiff.inverse import Posterior, imaging  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "problems").glob("phantom_*/config.yaml"))


def test_held_out_truths_are_not_training_slices():
    truth = imaging.phantom_truth(2, 16)
    train = imaging.phantom_truth(2, 16, seed=0)  # the training seed of ct_slices32
    assert truth.shape == (2, 1, 16, 16) and truth.min() >= 0 and truth.max() <= 2
    assert truth.std() > 0.1  # a body, not an empty slice
    assert not torch.allclose(truth, train)
    assert torch.equal(imaging.phantom_truth(1, 16), truth[:1])  # truth i does not depend on how many are drawn


@pytest.mark.parametrize("kind,out", [("inpaint", (1, 1, 16, 16)), ("sr", (1, 1, 8, 8)), ("deblur", (1, 1, 16, 16)),
                                      ("ct", None)])
def test_operators_and_noise(kind, out):
    physics = imaging.make_physics(kind, 16, 0.05, views=6)
    x = imaging.phantom_truth(1, 16)
    y = imaging.measure(physics, x, 0.05, generator=torch.Generator().manual_seed(0))
    assert y.shape == (out or physics.A(x).shape)
    noise = y - physics.A(x)
    if kind == "inpaint":  # unobserved pixels are not measured: no value, no noise
        assert (y[physics.mask.expand_as(y) == 0] == 0).all()
        assert physics.mask.mean().item() == pytest.approx(0.3, abs=0.06)
        noise = noise[physics.mask.expand_as(y) == 1]
    assert noise.std().item() == pytest.approx(0.05, rel=0.35)


def test_operator_errors():
    with pytest.raises(ValueError, match="unknown problem 'mri'"):
        imaging.make_physics("mri", 16, 0.05)
    with pytest.raises(ValueError, match="factor must be 2 or 4"):
        imaging.make_physics("sr", 16, 0.05, factor=3)
    with pytest.raises(ValueError, match="missing must be a fraction"):
        imaging.make_physics("inpaint", 16, 0.05, missing=1.0)
    with pytest.raises(ValueError, match="sigma_y must be positive"):
        imaging.make_physics("ct", 16, 0.0)
    with pytest.raises(ValueError, match="unknown sampler 'ddrm'"):
        imaging.sample_posterior(None, None, "ddrm", 1, 2)
    with pytest.raises(ValueError, match="problem.kind must be one of"):
        imaging.run_problem({"problem": {"kind": "denoise"}})


def test_every_problem_file_runs(tmp_path):
    """Each YAML under problems/phantom_* runs end to end on the shipped prior (2 steps) and writes its outputs."""
    assert {p.parent.name for p in CONFIGS} == {"phantom_inpaint", "phantom_sr", "phantom_deblur", "phantom_ct"}
    for path in CONFIGS:
        config = load_config(path, ["sampler.steps=2", "sampler.num_samples=2", f"output.dir={tmp_path / path.parent.name}"])
        report = imaging.run_problem(config)
        assert report["nfe"] == 2 and report["vjp"] == 2
        post = Posterior.load(report["netcdf"])
        assert post.samples.shape == (2, 1, 32, 32) and torch.isfinite(post.samples).all()
        assert Path(report["png"]).stat().st_size > 1000


def test_red_diff_and_cli_route(tmp_path):
    """``scidiff inverse -c ... --set sampler.name=red_diff``: the posterior mean beats the zero-filled measurement."""
    from scidiff.cli import run

    report = run(["inverse", "-c", str(ROOT / "problems/phantom_inpaint/config.yaml"), "--set", "sampler.name=red_diff",
                  "--set", "sampler.steps=20", "--set", "sampler.num_samples=2", "--set", "sampler.kwargs={}",
                  "--set", f"output.dir={tmp_path}"])
    physics = imaging.make_physics("inpaint", 32, 0.02)
    x = imaging.phantom_truth(1, 32)
    y = imaging.measure(physics, x, 0.02, generator=torch.Generator().manual_seed(0))
    assert report["vjp"] == 0 and report["nfe"] == 20
    assert report["psnr"] > imaging.psnr(y, x) + 3
    assert 0.3 < report["misfit"] < 3
