"""Networks for diffusion priors: a UNet for 1D/2D/3D fields and an MLP for vectors.

Both take ``(x, c_noise, **cond)`` and are wrapped by :class:`~scidiff.diffusion.EDMPrecond`. Networks are
built by name from :data:`NETWORKS` so that a prior's configuration is plain data (a name and keyword
arguments): checkpoints then load with ``weights_only=True`` and configs cannot instantiate arbitrary classes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}


class FourierEmbedding(nn.Module):
    """Random Fourier features of the noise conditioning ``c_noise`` (fixed, not trained), then an MLP."""

    def __init__(self, dim: int, scale: float = 16.0):
        super().__init__()
        self.register_buffer("freqs", torch.randn(dim // 2, generator=torch.Generator().manual_seed(0)) * scale)
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, c_noise: Tensor) -> Tensor:
        angles = 2 * math.pi * c_noise[:, None].float() * self.freqs[None]
        return self.mlp(torch.cat([angles.cos(), angles.sin()], dim=1))


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(32, max(1, channels // 4)), channels)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, with the noise embedding as a per-channel scale and shift."""

    def __init__(self, dims: int, c_in: int, c_out: int, emb_dim: int, dropout: float, padding_mode: str):
        super().__init__()
        conv = _CONV[dims]
        self.norm1, self.norm2 = _norm(c_in), _norm(c_out)
        self.conv1 = conv(c_in, c_out, 3, padding=1, padding_mode=padding_mode)
        self.conv2 = conv(c_out, c_out, 3, padding=1, padding_mode=padding_mode)
        self.emb = nn.Linear(emb_dim, 2 * c_out)
        self.dropout = nn.Dropout(dropout)
        self.skip = conv(c_in, c_out, 1) if c_in != c_out else nn.Identity()
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.emb(emb).reshape(emb.shape[0], -1, *([1] * (x.ndim - 2))).chunk(2, dim=1)
        h = F.silu(self.norm2(h) * (1 + scale) + shift)
        return self.skip(x) + self.conv2(self.dropout(h))


class SelfAttention(nn.Module):
    """Multi-head self-attention over all positions of a feature map (used at coarse levels only)."""

    def __init__(self, channels: int, heads: int = 4):
        super().__init__()
        self.norm = _norm(channels)
        self.attn = nn.MultiheadAttention(channels, heads, batch_first=True)

    def forward(self, x: Tensor) -> Tensor:
        b, c = x.shape[:2]
        h = self.norm(x).reshape(b, c, -1).transpose(1, 2)
        out, _ = self.attn(h, h, h, need_weights=False)
        return x + out.transpose(1, 2).reshape(x.shape)


class UNet(nn.Module):
    """A UNet for ``(B, C, *spatial)`` fields with 1, 2 or 3 spatial dims.

    Args:
        in_channels / out_channels: field channels (out defaults to in).
        dims: number of spatial dimensions (1, 2 or 3).
        base_channels, channel_mults: width at each resolution level; each level after the first halves the grid.
        num_res_blocks: residual blocks per level.
        attn_levels: indices of the levels with self-attention.
        padding_mode: ``"zeros"``, or ``"circular"`` for periodic physics (fields on a torus).

    No data augmentation is applied anywhere: flips and rotations would break anisotropic physics.
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int | None = None,
        dims: int = 2,
        base_channels: int = 32,
        channel_mults: Sequence[int] = (1, 2, 2),
        num_res_blocks: int = 1,
        attn_levels: Sequence[int] = (),
        dropout: float = 0.0,
        padding_mode: str = "zeros",
    ):
        super().__init__()
        if dims not in _CONV:
            raise ValueError(f"dims must be 1, 2 or 3; got {dims}")
        conv = _CONV[dims]
        self.dims, self.levels = dims, len(channel_mults)
        out_channels = out_channels or in_channels
        emb_dim = 4 * base_channels
        self.embed = FourierEmbedding(emb_dim)
        self.stem = conv(in_channels, base_channels, 3, padding=1, padding_mode=padding_mode)
        block = lambda ci, co: ResBlock(dims, ci, co, emb_dim, dropout, padding_mode)  # noqa: E731
        widths = [base_channels * m for m in channel_mults]
        self.down, self.downsample, skips, ch = nn.ModuleList(), nn.ModuleList(), [base_channels], base_channels
        for level, width in enumerate(widths):
            blocks = nn.ModuleList()
            for _ in range(num_res_blocks):
                blocks.append(block(ch, width))
                ch = width
                skips.append(ch)
            self.down.append(blocks)
            last = level == len(widths) - 1
            self.downsample.append(nn.Identity() if last else conv(ch, ch, 3, stride=2, padding=1))
            if not last:
                skips.append(ch)
        self.mid = nn.ModuleList([block(ch, ch), SelfAttention(ch) if attn_levels else nn.Identity(), block(ch, ch)])
        self.attn = nn.ModuleDict({str(lv): SelfAttention(widths[lv]) for lv in attn_levels})
        self.up, self.upsample = nn.ModuleList(), nn.ModuleList()
        for level, width in reversed(list(enumerate(widths))):
            blocks = nn.ModuleList()
            for _ in range(num_res_blocks + 1):
                blocks.append(block(ch + skips.pop(), width))
                ch = width
            self.up.append(blocks)
            self.upsample.append(conv(ch, ch, 3, padding=1, padding_mode=padding_mode) if level > 0 else nn.Identity())
        self.head = nn.Sequential(_norm(ch), nn.SiLU(), conv(ch, out_channels, 3, padding=1, padding_mode=padding_mode))
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)

    def forward(self, x: Tensor, c_noise: Tensor, **cond) -> Tensor:
        factor = 2 ** (self.levels - 1)
        if x.ndim != self.dims + 2 or any(s % factor for s in x.shape[2:]):
            raise ValueError(
                f"UNet(dims={self.dims}, {self.levels} levels) needs x of rank {self.dims + 2} with spatial sizes "
                f"divisible by {factor}; got {tuple(x.shape)}"
            )
        emb = self.embed(c_noise)
        h = self.stem(x)
        hs = [h]
        for level, (blocks, down) in enumerate(zip(self.down, self.downsample)):
            for blk in blocks:
                h = blk(h, emb)
                if str(level) in self.attn:
                    h = self.attn[str(level)](h)
                hs.append(h)
            if not isinstance(down, nn.Identity):
                h = down(h)
                hs.append(h)
        h = self.mid[2](self.mid[1](self.mid[0](h, emb)), emb)
        for i, (blocks, up) in enumerate(zip(self.up, self.upsample)):
            level = self.levels - 1 - i
            for blk in blocks:
                h = blk(torch.cat([h, hs.pop()], dim=1), emb)
                if str(level) in self.attn:
                    h = self.attn[str(level)](h)
            if not isinstance(up, nn.Identity):
                h = up(F.interpolate(h, scale_factor=2, mode="nearest"))
        return self.head(h)


class MLP(nn.Module):
    """A residual MLP for vectors ``(B, dim)`` (or any ``(B, *event)``, flattened inside)."""

    def __init__(self, dim: int, hidden: int = 256, depth: int = 4):
        super().__init__()
        self.embed = FourierEmbedding(hidden)
        self.inp = nn.Linear(dim, hidden)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
            for _ in range(depth)
        )
        self.out = nn.Linear(hidden, dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: Tensor, c_noise: Tensor, **cond) -> Tensor:
        h = self.inp(x.reshape(x.shape[0], -1)) + self.embed(c_noise)
        for blk in self.blocks:
            h = h + blk(h)
        return self.out(h).reshape(x.shape)


NETWORKS: dict[str, type[nn.Module]] = {"unet": UNet, "mlp": MLP}


def register_network(name: str, cls: type[nn.Module]) -> None:
    """Make a network class available to :class:`~scidiff.priors.DiffusionPrior` under ``name``."""
    NETWORKS[name] = cls


def build_network(name: str, kwargs: dict) -> nn.Module:
    if name not in NETWORKS:
        raise ValueError(f"unknown network {name!r}; registered: {sorted(NETWORKS)} (see register_network)")
    return NETWORKS[name](**kwargs)
