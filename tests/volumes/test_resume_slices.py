"""problems/ct3d/resume_slices.py: the learning-rate schedule and that its exports are plain DiffusionPrior files."""

import importlib.util
from pathlib import Path

import pytest
import torch

from scidiff.priors import DiffusionPrior

SCRIPT = Path(__file__).resolve().parents[2] / "problems" / "ct3d" / "resume_slices.py"


@pytest.fixture(scope="module")
def resume():
    spec = importlib.util.spec_from_file_location("resume_slices", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _tiny(cls, **kw):
    return cls(shape=[1, 8, 8], network="unet", network_kwargs={"base_channels": 4, "channel_mults": [1], "num_res_blocks": 1,
                                                                "attn_levels": []}, **kw)


def test_schedule_warms_up_then_decays_along_a_cosine_to_lr_min(resume):
    start = _tiny(DiffusionPrior)
    torch.nn.init.normal_(next(start.precond.parameters()))
    model = resume.continued_prior(start, [1, 8, 8], lr=1e-3, lr_min=1e-5, warmup=10, steps=110, ema_decay=0.9)
    assert isinstance(model, DiffusionPrior) and model.train_seconds is None  # no time budget: the step schedule
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(model.ema(x, torch.ones(2)), start.precond(x, torch.ones(2)))  # both copies start there
    torch.testing.assert_close(model.precond(x, torch.ones(2)), start.precond(x, torch.ones(2)))
    conf = model.configure_optimizers()
    opt, sched = conf["optimizer"], conf["lr_scheduler"]["scheduler"]
    lrs = []
    for _ in range(130):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(1e-4) and lrs[9] == pytest.approx(1e-3)  # linear warm-up over 10 steps
    assert lrs[60] == pytest.approx(1e-5 + (1e-3 - 1e-5) * 0.5)  # half way along the cosine
    assert lrs[110] == pytest.approx(1e-5) and lrs[129] == pytest.approx(1e-5)  # floor, held after the schedule
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:]))


def test_time_budget_moves_the_cosine_on_when_ahead_of_the_steps(resume):
    model = resume.continued_prior(_tiny(DiffusionPrior), [1, 8, 8], lr=1e-3, lr_min=1e-5, warmup=10, steps=100_000,
                                   ema_decay=0.9)
    model.train_seconds = 100.0
    model._t0 = resume.time.monotonic() - 50.0  # half the budget spent after 20 steps: half way along the cosine
    assert model.lr_factor(20) == pytest.approx(1e-2 + (1 - 1e-2) * 0.5, abs=1e-3)
    assert model.lr_factor(5) == pytest.approx(6 / 10)  # the warm-up is counted in steps only
    model._t0 = resume.time.monotonic() - 200.0  # past the budget: the floor
    assert model.lr_factor(20) == pytest.approx(1e-2)


def test_export_keeps_the_sampling_weights_and_the_schedule(resume, tmp_path):
    model = resume.continued_prior(_tiny(DiffusionPrior), [1, 8, 8], lr=1e-3, lr_min=1e-5, warmup=10, steps=110,
                                   ema_decay=0.999)
    torch.nn.init.normal_(next(model.ema.parameters()))
    path = model.export(tmp_path / "p.safetensors")
    loaded = DiffusionPrior.load(path)
    assert loaded.hparams.lr_decay_steps == 110 and loaded.hparams.lr_final_fraction == pytest.approx(1e-2)
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(loaded(x, 1.0), model.ema(x, torch.ones(2)))


def _start_and_config(tmp_path, mean, std, *, n_volumes, res):
    """A tiny exported start prior with the given normaliser, and a training YAML of phantom slices."""
    start = _tiny(DiffusionPrior)
    start.set_normalizer(mean, std)
    start_path = start.export(tmp_path / "start.safetensors")
    cfg = tmp_path / f"fit{res}.yaml"
    cfg.write_text(
        "model: {ema_decay: 0.9}\n"
        f"data:\n  generate: {{name: phantom_slices, n_volumes: {n_volumes}, res: {res}, depth: 4, n_ellipsoids: 3, seed: 0}}\n"
        "  variables: [mu]\n  val_fraction: 0.25\n  batch_size: 4\n"
    )
    return start_path, cfg


def test_transfer_to_another_slice_size_writes_a_prior_of_that_size(resume, tmp_path):
    # An 8 x 8 prior continued on 16 x 16 slices: same weights to start, the new data's normaliser, a new name.
    # the start's normaliser is far from the slices' statistics, so a copied normaliser would show
    start_path, cfg = _start_and_config(tmp_path, [5.0], [3.0], n_volumes=2, res=16)
    summary = resume.main(["--config", str(cfg), "--start", str(start_path), "--steps", "2", "--warmup", "1",
                           "--max-minutes", "1", "--out", str(tmp_path / "out")])
    assert summary["steps"] == 2 and summary["shape"] == [1, 16, 16]
    assert summary["val_loss_start"] > 0 and summary["val_loss_new"] > 0
    new = DiffusionPrior.load(tmp_path / "out" / "ct_slices16.safetensors")
    assert new.shape == (1, 16, 16)
    assert 0 < float(new.norm_mean) < 2 and 0 < float(new.norm_std) < 2  # the slices' statistics, not the start's
    x = torch.randn(1, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(new(x, 1.0)).all()


def test_continuing_on_more_volumes_keeps_the_start_normaliser_and_saves_on_the_way(resume, tmp_path):
    # Same slice size, twice the YAML's volumes: the weights keep seeing the data in their own units, and the
    # periodic export (every 0 s: after each batch) leaves weights and a progress record before the end.
    start_path, cfg = _start_and_config(tmp_path, [0.4], [0.6], n_volumes=1, res=8)
    summary = resume.main(["--config", str(cfg), "--start", str(start_path), "--steps", "3", "--warmup", "1",
                           "--n-volumes", "2", "--batch-size", "2", "--accelerator", "cpu", "--save-every", "0",
                           "--ckpt-every", "0", "--max-seconds", "600", "--out", str(tmp_path / "out")])
    assert summary["steps"] == 3 and summary["n_volumes"] == 2 and summary["slices_seen"] == 6
    assert summary["n_train_slices"] + summary["n_val_slices"] == 8
    new = DiffusionPrior.load(tmp_path / "out" / "ct_slices8.safetensors")
    torch.testing.assert_close(new.norm_mean, torch.tensor([0.4]))
    torch.testing.assert_close(new.norm_std, torch.tensor([0.6]))
    progress = resume.json.loads((tmp_path / "out" / "progress.json").read_text())
    assert progress["steps"] >= 1 and progress["slices_seen"] == 2 * progress["steps"]
    assert not list((tmp_path / "out").rglob("*.ckpt"))


def test_shipped_64_prior_runs_on_64_slices_and_has_a_card():
    prior = DiffusionPrior.pretrained("ct_slices64")
    assert prior.shape == (1, 64, 64)
    x = torch.randn(2, 1, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.isfinite(prior(x, 0.5)).all()
    with pytest.raises(ValueError, match="shape"):
        prior(torch.randn(1, 1, 32, 32), 0.5)
    card = Path(__import__("scidiff").__file__).parent / "assets" / "ct_slices64.md"
    assert "1,647 steps" in card.read_text() and "H100" in card.read_text()
