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
