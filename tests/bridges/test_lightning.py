import pytest
import torch

pl = pytest.importorskip("pytorch_lightning")


def test_bridge_matching_module_trains_a_few_steps(tmp_path):
    from scidiff.bridges import BridgeMatchingModule

    g = torch.Generator().manual_seed(0)
    x0, x1 = torch.randn(128, 2, generator=g), torch.randn(128, 2, generator=g) + 1
    loader = torch.utils.data.DataLoader(list(zip(x0, x1)), batch_size=32)
    module = BridgeMatchingModule(2, sigma=0.5, hidden=16, depth=1)
    trainer = pl.Trainer(max_steps=3, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=tmp_path, accelerator="cpu")
    before = [p.clone() for p in module.parameters()]
    trainer.fit(module, loader)
    assert any((a != b).any() for a, b in zip(before, module.parameters()))
    with pytest.raises(ValueError, match="sigma"):
        BridgeMatchingModule(2, sigma=0.0)


def _ipf_trainer(tmp_path, **kw):
    from pytorch_lightning.callbacks import ModelCheckpoint

    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True, save_top_k=-1, every_n_train_steps=4)
    return pl.Trainer(logger=False, enable_model_summary=False, enable_progress_bar=False, accelerator="cpu",
                      default_root_dir=tmp_path, callbacks=[ckpt], **kw)


def test_ipf_module_runs_two_stages_stops_itself_and_reloads_with_weights_only(tmp_path):
    from scidiff.bridges import flower
    from scidiff.bridges.lightning import IPFBridgeModule, PairDraws
    from scidiff.bridges.matching import sample_bridge
    from scidiff.io import load_checkpoint

    spec = {"type": "flower", "petals": 5, "radius": 1.0, "amplitude": 0.4}
    dom = flower(5, 1.0, 0.4)
    g = torch.Generator().manual_seed(0)
    x0, x1 = dom.sample_uniform(200, g) * 0.3, dom.sample_uniform(200, g)
    module = IPFBridgeModule(2, sigma=0.5, domain=spec, hidden=16, depth=2, n_stages=2, n_iter=4, n_steps=6,
                             batch_size=32, seed=1)
    loader = torch.utils.data.DataLoader(PairDraws(x0, x1, 48, seed=2), batch_size=None)
    _ipf_trainer(tmp_path).fit(module, loader)  # no max_steps: the module ends its own schedule
    assert module.global_step == module.total_steps == 16
    for z in (module.net.z_f, module.net.z_b):  # both halves trained (zero-initialised last layers moved)
        assert z.net[-1].weight.abs().sum() > 0
    # The EMA of each policy was loaded into it at the end of its last half.
    for name in ("z_f", "z_b"):
        z, ema = getattr(module.net, name), module.ema[name].module
        assert all(torch.equal(p, q) for p, q in zip(z.parameters(), ema.parameters()))
    # A checkpoint after stage 1 and the last one both load with weights_only=True and rebuild the module.
    assert sorted(p.name for p in (tmp_path / "ckpt").glob("*.ckpt"))[-1] == "last.ckpt"
    raw = load_checkpoint(tmp_path / "ckpt" / "last.ckpt")
    assert raw["hyper_parameters"]["domain"] == spec and "ipf_generator_state" in raw
    again = IPFBridgeModule.load_from_checkpoint(tmp_path / "ckpt" / "last.ckpt", weights_only=True)
    x, t = torch.randn(7, 2), torch.rand(7)
    for a, b in zip(module(x, t), again(x, t)):
        torch.testing.assert_close(a, b)
    out = sample_bridge(again.net, x0[:50], 0.5, again.domain, n_steps=6, generator=g, progress=False)
    assert dom.contains(out).all()


def test_ipf_module_resumes_mid_schedule_from_a_checkpoint(tmp_path):
    from scidiff.bridges.lightning import IPFBridgeModule, PairDraws

    g = torch.Generator().manual_seed(3)
    x0, x1 = torch.randn(100, 1, generator=g), torch.randn(100, 1, generator=g) + 1
    kw = dict(hidden=8, depth=1, n_stages=2, n_iter=4, n_steps=5, batch_size=16)
    loader = torch.utils.data.DataLoader(PairDraws(x0, x1, 32), batch_size=None)
    first = IPFBridgeModule(1, **kw)
    _ipf_trainer(tmp_path, max_steps=8).fit(first, loader)  # stage 1 only
    assert first.global_step == 8 and first.phase(8) == (1, "backward", 0)
    resumed = IPFBridgeModule(1, **kw)
    _ipf_trainer(tmp_path).fit(resumed, loader, ckpt_path=tmp_path / "ckpt" / "last.ckpt")
    assert resumed.global_step == 16
    assert not all(torch.equal(p, q) for p, q in zip(first.parameters(), resumed.parameters()))


def test_ipf_module_bad_inputs_raise():
    from scidiff.bridges.lightning import IPFBridgeModule, PairDraws

    with pytest.raises(ValueError, match="n_stages"):
        IPFBridgeModule(2, n_stages=0)
    with pytest.raises(ValueError, match="sigma"):
        IPFBridgeModule(2, sigma=-1.0)
    with pytest.raises(ValueError, match="domain type"):
        IPFBridgeModule(2, domain={"type": "torus"})
    with pytest.raises(ValueError, match="dimension"):
        PairDraws(torch.zeros(4, 2), torch.zeros(4, 3), 2)


def test_ipf_problem_file_trains_under_a_trainer_and_its_checkpoint_reloads(tmp_path):
    from pathlib import Path

    from scidiff.bridges.lightning import IPFBridgeModule
    from scidiff.cli import run
    from scidiff.io import load_checkpoint

    path = Path(__file__).resolve().parents[2] / "problems" / "bridges_flower_ipf" / "trainer.yaml"
    sets = ["n_train=200", "n_eval=100", "hidden=16", "depth=2", "n_steps=8", "ipf.n_stages=2", "ipf.n_iter=3",
            "ipf.n_paths=32", "ipf.batch_size=32", f"trainer.default_root_dir={tmp_path}",
            "trainer.checkpoint_every_n_steps=3", "trainer.enable_progress_bar=false"]
    report = run(["bridge", "-c", str(path), *[a for s in sets for a in ("--set", s)]])
    rows = {r["boundary"]: r for r in report["results"]}
    assert rows["reflect"]["escaped_paths"] == 0 and rows["reflect"]["method"] == "ipf"
    ckpts = {p.name for p in (tmp_path / "checkpoints").glob("*.ckpt")}
    assert "last.ckpt" in ckpts and len(ckpts) == 5  # one per half-stage (4) + last
    raw = load_checkpoint(tmp_path / "checkpoints" / "last.ckpt")
    assert raw["global_step"] == 12 and raw["hyper_parameters"]["n_stages"] == 2
    module = IPFBridgeModule.load_from_checkpoint(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert module.domain is not None and module.net.z_f.net[-1].weight.abs().sum() > 0
    # Resuming from the finished checkpoint trains nothing more and leaves the weights as they were.
    again = run(["bridge", "-c", str(path), *[a for s in sets for a in ("--set", s)], "--set",
                 f"trainer.ckpt_path={tmp_path / 'checkpoints' / 'last.ckpt'}"])
    assert {r["boundary"]: r for r in again["results"]}["reflect"]["sinkhorn"] == rows["reflect"]["sinkhorn"]


def test_trainer_block_errors():
    from scidiff.bridges import run_problem

    with pytest.raises(ValueError, match="trainer config"):
        run_problem({"trainer": 3, "n_iter": 1})
    with pytest.raises(ValueError, match="max_steps"):
        run_problem({"trainer": {"max_steps": 5}, "n_train": 50, "n_eval": 20, "n_iter": 1})
    with pytest.raises(ValueError, match="unknown ipf options"):
        run_problem({"ipf": {"stages": 2}})
