import pickle

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from scidiff.io import UnsafeFileError, export_safetensors, load_checkpoint
from scidiff.oracles import GaussianMixture
from scidiff.priors import DiffusionPrior


def _mixture2d():
    return GaussianMixture(
        torch.tensor([0.5, 0.5]), torch.tensor([[-1.5, 0.0], [1.5, 0.5]]), torch.tensor([[0.15, 0.3], [0.3, 0.1]])
    )


def _mmd(a, b, scales=(0.2, 0.5, 1.0)):
    """Unbiased MMD^2 with a sum of Gaussian kernels."""
    def k(x, y):
        d = torch.cdist(x, y) ** 2
        return sum(torch.exp(-d / (2 * s**2)) for s in scales)

    n, m = len(a), len(b)
    kaa, kbb = k(a, a), k(b, b)
    return float((kaa.sum() - kaa.diag().sum()) / (n * (n - 1)) + (kbb.sum() - kbb.diag().sum()) / (m * (m - 1)) - 2 * k(a, b).mean())


def test_tiny_prior_learns_a_2d_mixture():
    torch.manual_seed(0)
    gm = _mixture2d()
    data = gm.sample(4096, torch.Generator().manual_seed(0))
    prior = DiffusionPrior([2], network="mlp", network_kwargs={"hidden": 128, "depth": 3}, lr=3e-3, ema_decay=0.99,
                           lr_warmup_steps=50, sigma_data=1.0)
    loader = DataLoader(TensorDataset(data), batch_size=256, shuffle=True)
    trainer = pl.Trainer(max_steps=1200, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu")
    trainer.fit(prior, loader)
    samples = prior.eval().sample(1000, 32, generator=torch.Generator().manual_seed(1), progress=False)
    fresh = gm.sample(1000, torch.Generator().manual_seed(2))
    floor = _mmd(fresh, gm.sample(1000, torch.Generator().manual_seed(3)))
    mmd = _mmd(samples, fresh)
    # A Gaussian fitted to the data is the obvious wrong answer; the prior must be much closer than it.
    wrong = torch.distributions.MultivariateNormal(data.mean(0), torch.cov(data.T)).sample((1000,))
    assert mmd < 0.2 * _mmd(wrong, fresh), (mmd, _mmd(wrong, fresh))
    assert mmd < floor + 0.01, (mmd, floor)


def test_shape_check_and_units():
    prior = DiffusionPrior([1, 8, 8], network_kwargs={"base_channels": 8, "channel_mults": [1, 2]})
    with pytest.raises(ValueError, match="trained on fields of shape"):
        prior(torch.randn(2, 1, 16, 16), 1.0)
    with pytest.raises(ValueError, match="non-finite"):
        prior(torch.full((2, 1, 8, 8), float("nan")), 1.0)
    with pytest.raises(ValueError, match="sigma must be a scalar or have shape"):
        prior(torch.randn(2, 1, 8, 8), torch.ones(3))
    prior.set_normalizer(torch.tensor([3.0]), torch.tensor([2.0]))
    x = torch.randn(2, 1, 8, 8)
    assert torch.allclose(prior.normalize(prior.denormalize(x)), x, atol=1e-6)
    with pytest.raises(ValueError, match="positive stds"):
        prior.set_normalizer(torch.tensor([0.0]), torch.tensor([-1.0]))


def test_checkpoint_and_safetensors_roundtrip(tmp_path):
    prior = DiffusionPrior([1, 8, 8], network_kwargs={"base_channels": 8, "channel_mults": [1, 2]})
    prior.set_normalizer(torch.tensor([3.0]), torch.tensor([2.0]))
    with torch.no_grad():
        for p in prior.precond.parameters():
            p.add_(0.01 * torch.randn_like(p))
        prior.ema.load_state_dict(prior.precond.state_dict())
    trainer = pl.Trainer(max_steps=0, logger=False, enable_checkpointing=False, enable_progress_bar=False)
    trainer.strategy.connect(prior)
    trainer.save_checkpoint(tmp_path / "p.ckpt")
    load_checkpoint(tmp_path / "p.ckpt")  # weights_only=True succeeds on our checkpoints
    x, s = torch.randn(2, 1, 8, 8), torch.tensor([0.5, 2.0])
    for path in (tmp_path / "p.ckpt", export_safetensors(prior, tmp_path / "p.safetensors")):
        back = DiffusionPrior.load(path)
        assert torch.allclose(back(x, s), prior.eval()(x, s), atol=1e-6)
        assert torch.equal(back.norm_mean, prior.norm_mean)


def test_init_weights_continue_a_prior_at_another_size(tmp_path):
    """``init_weights`` copies the sampling weights of a saved prior into a prior on a larger grid (the U-Net is
    convolutional), keeps them out of the saved configuration, and refuses another network."""
    kw = {"base_channels": 8, "channel_mults": [1, 2]}
    small = DiffusionPrior([1, 8, 8], network_kwargs=kw)
    with torch.no_grad():
        for p in small.ema.parameters():
            p.add_(0.01 * torch.randn_like(p))
    path = export_safetensors(small, tmp_path / "small.safetensors")
    big = DiffusionPrior([1, 16, 16], network_kwargs=kw, init_weights=str(path))
    for mine in (big.precond, big.ema):
        assert all(torch.equal(a, b) for a, b in zip(mine.state_dict().values(), small.ema.state_dict().values()))
    assert "init_weights" not in big.hparams
    x = torch.randn(1, 1, 16, 16)
    assert torch.allclose(big(x, 1.0), small.eval().ema(x, torch.tensor([1.0])), atol=1e-6)
    with pytest.raises(ValueError, match="init_weights .* network"):
        DiffusionPrior([1, 16, 16], network_kwargs={"base_channels": 4, "channel_mults": [1, 2]}, init_weights=str(path))


class _Evil:
    def __reduce__(self):
        return (print, ("this ran code",))


def test_malicious_pickle_is_refused(tmp_path):
    path = tmp_path / "evil.ckpt"
    with open(path, "wb") as f:
        pickle.dump({"state_dict": _Evil()}, f)
    with pytest.raises(UnsafeFileError, match="refusing to load"):
        DiffusionPrior.load(path)


def test_tampered_safetensors_is_refused(tmp_path):
    from safetensors.torch import load_file, save_file

    prior = DiffusionPrior([1, 8, 8], network_kwargs={"base_channels": 8, "channel_mults": [1, 2]})
    path = export_safetensors(prior, tmp_path / "p.safetensors")
    tensors = load_file(path)
    save_file(tensors, tmp_path / "noconfig.safetensors", metadata={"format": "scidiff.prior", "format_version": "1",
                                                                     "config": '{"shape": [1, 8, 8], "evil": 1}'})
    with pytest.raises(UnsafeFileError, match="unknown keys"):
        DiffusionPrior.load(tmp_path / "noconfig.safetensors")
    save_file(tensors, tmp_path / "wrongshape.safetensors", metadata={"format": "scidiff.prior", "format_version": "1",
                                                                       "config": '{"shape": [1, 8, 8], "network_kwargs": {"base_channels": 16, "channel_mults": [1, 2]}}'})
    with pytest.raises(UnsafeFileError, match="shapes do not match"):
        DiffusionPrior.load(tmp_path / "wrongshape.safetensors")
