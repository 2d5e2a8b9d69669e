import pytest
import torch

from scidiff.priors import MLP, UNet, build_network


@pytest.mark.parametrize("dims,shape", [(1, (2, 2, 32)), (2, (2, 1, 16, 16)), (3, (2, 1, 8, 8, 8))])
def test_unet_any_rank_and_zero_init(dims, shape):
    net = UNet(shape[1], dims=dims, base_channels=8, channel_mults=(1, 2), attn_levels=(1,))
    out = net(torch.randn(shape), torch.zeros(shape[0]))
    assert out.shape == shape
    assert out.abs().max() == 0  # zero-initialised head: D(x) = c_skip x at the start of training


def test_unet_circular_padding_is_translation_equivariant():
    torch.manual_seed(0)
    net = UNet(1, dims=2, base_channels=8, channel_mults=(1,), padding_mode="circular")
    torch.nn.init.normal_(net.head[-1].weight)
    x = torch.randn(1, 1, 8, 8)
    shifted = net(torch.roll(x, 3, dims=-1), torch.zeros(1))
    assert torch.allclose(shifted, torch.roll(net(x, torch.zeros(1)), 3, dims=-1), atol=1e-5)


def test_unet_rejects_bad_sizes():
    net = UNet(1, dims=2, base_channels=8, channel_mults=(1, 2, 2))
    with pytest.raises(ValueError, match="divisible by 4"):
        net(torch.randn(1, 1, 10, 10), torch.zeros(1))


def test_registry():
    assert isinstance(build_network("mlp", {"dim": 3}), MLP)
    with pytest.raises(ValueError, match="unknown network"):
        build_network("os.system", {})
