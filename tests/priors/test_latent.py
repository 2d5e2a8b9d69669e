import json

import pytest
import torch

from scidiff.io import UnsafeFileError
from scidiff.priors import Autoencoder, DiffusionPrior, LatentPrior


def _latent_prior():
    torch.manual_seed(0)
    ae = Autoencoder([1, 16, 16], latent_channels=2, base_channels=8, levels=1)
    ae.set_normalizer(torch.tensor([0.2]), torch.tensor([0.3]))
    prior = DiffusionPrior(list(ae.latent_shape), network_kwargs={"base_channels": 8, "channel_mults": [1, 2]})
    prior.set_normalizer(torch.tensor([0.5, -1.0]), torch.tensor([2.0, 0.5]))
    for p in [*ae.parameters(), *prior.parameters()]:  # non-trivial weights (the UNet head starts at zero)
        p.data.add_(0.05 * torch.randn_like(p))
    prior.ema.load_state_dict(prior.precond.state_dict())
    return LatentPrior(ae.eval(), prior.eval())


def test_encode_decode_use_both_normalisers():
    lp = _latent_prior()
    x = torch.rand(3, 1, 16, 16)
    z = lp.encode(x)
    assert torch.allclose(z, (lp.autoencoder.encode(x) - torch.tensor([0.5, -1.0]).reshape(1, 2, 1, 1))
                          / torch.tensor([2.0, 0.5]).reshape(1, 2, 1, 1), atol=1e-6)
    assert torch.allclose(lp.decode(z), lp.autoencoder(x), atol=1e-5)
    assert lp(z, 0.5).shape == z.shape and lp.latent_shape == (2, 8, 8) and lp.shape == (1, 16, 16)


def test_save_and_load_as_one_file(tmp_path):
    lp = _latent_prior()
    path = lp.save(tmp_path / "lp.safetensors")
    back = LatentPrior.load(path)
    x, z = torch.rand(2, 1, 16, 16), torch.randn(2, 2, 8, 8)
    with torch.no_grad():
        assert torch.equal(back.encode(x), lp.encode(x))
        assert torch.equal(back.decode(z), lp.decode(z))
        assert torch.equal(back(z, 0.3), lp(z, 0.3))
        s1 = lp.sample(2, 4, generator=torch.Generator().manual_seed(0), progress=False)
        s2 = back.sample(2, 4, generator=torch.Generator().manual_seed(0), progress=False)
    assert torch.equal(s1, s2) and s1.shape == (2, 1, 16, 16)


def test_mismatched_parts_and_bad_files(tmp_path):
    lp = _latent_prior()
    with pytest.raises(ValueError, match="latents have shape"):
        LatentPrior(lp.autoencoder, DiffusionPrior([2, 4, 4], network_kwargs={"base_channels": 8, "channel_mults": [1, 2]}))
    from safetensors.torch import load_file, save_file
    from safetensors import safe_open

    path = lp.save(tmp_path / "lp.safetensors")
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    tensors = load_file(path)
    # a DiffusionPrior export is not a latent prior
    lp.prior.export(tmp_path / "plain.safetensors")
    with pytest.raises(UnsafeFileError, match="not a scidiff latent prior"):
        LatentPrior.load(tmp_path / "plain.safetensors")
    # a tensor of the wrong shape
    bad = dict(tensors)
    key = next(k for k in bad if k.startswith("autoencoder.") and bad[k].ndim == 4)
    bad[key] = torch.zeros(1, 1, 1, 1)
    save_file(bad, tmp_path / "shape.safetensors", metadata=meta)
    with pytest.raises(UnsafeFileError, match="shapes do not match"):
        LatentPrior.load(tmp_path / "shape.safetensors")
    # a config with keys the classes do not have (would otherwise reach their constructors)
    config = json.loads(meta["config"])
    config["autoencoder"]["activation"] = "os.system"
    save_file(tensors, tmp_path / "keys.safetensors", metadata={**meta, "config": json.dumps(config)})
    with pytest.raises(UnsafeFileError, match="unknown keys"):
        LatentPrior.load(tmp_path / "keys.safetensors")
    with pytest.raises(FileNotFoundError):
        LatentPrior.load(tmp_path / "missing.safetensors")
