"""Long trajectories from a window prior: the score composition of score-based data assimilation.

Rozet & Louppe (SDA, NeurIPS 2023, Sec. 3.1): if a trajectory ``x_1:L`` is a Markov chain (of order ``k``), the
score of a state depends only on its Markov blanket, so the score of the whole trajectory can be assembled from a
prior trained on short windows ``x_{i-k:i+k}``: state ``i`` takes the score that the window *centred* on it gives
it, and the first and last ``k`` states take theirs from the edge windows. At noise level ``sigma > 0`` the noised
trajectory is no longer Markov, so the composition is an approximation that becomes exact as ``sigma -> 0`` and
improves with the context ``k``; SDA finds small ``k`` enough.

Here the window prior has a fixed length ``W`` (a temporal UNet), so windows are taken with a stride ``s`` and each
state takes the output of the window whose centre is nearest (context ``(W - s) / 2`` on each side, SDA's ``k``).
Since ``D(x, sigma) = x + sigma^2 grad log p_sigma(x)`` state by state, composing denoiser outputs composes scores.
The result is itself a Denoiser over ``(B, variables, L)``: every sampler, the event-conditioned denoiser and the
assimilation of :mod:`scidiff.dynamics` work on long trajectories with it, all states sampled jointly.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..diffusion._utils import as_sigma_batch


class WindowComposedDenoiser:
    """A Denoiser of trajectories ``(B, variables, L)`` built from a window denoiser of length ``window``.

    Args:
        denoiser: the window prior's denoiser, called on ``(B * num_windows, variables, window)``.
        window: its time length ``W``.
        stride: step between window starts (default ``W // 2``); a smaller stride gives more context per state
            and costs ``about L / stride`` window evaluations per call. ``stride = W`` puts windows side by side
            (no composition: the windows are independent, the baseline that breaks correlations at their edges).
    """

    def __init__(self, denoiser, window: int, stride: int | None = None):
        stride = window // 2 if stride is None else int(stride)
        if window < 1 or not 1 <= stride <= window:
            raise ValueError(f"need 1 <= stride <= window; got window={window}, stride={stride}")
        self.denoiser, self.window, self.stride = denoiser, int(window), stride

    def layout(self, length: int) -> tuple[list[int], Tensor, Tensor]:
        """Window starts, and for each state ``t`` the window it is read from and its position in that window."""
        if length < self.window:
            raise ValueError(f"trajectory length {length} is shorter than the window {self.window}")
        starts = list(range(0, length - self.window + 1, self.stride))
        if starts[-1] != length - self.window:
            starts.append(length - self.window)
        centres = torch.tensor(starts, dtype=torch.float64) + (self.window - 1) / 2
        t = torch.arange(length, dtype=torch.float64)
        which = (t[:, None] - centres[None]).abs().argmin(1)  # nearest centre (ties: the earlier window)
        offset = torch.arange(length) - torch.tensor(starts)[which]
        return starts, which, offset

    def __call__(self, x: Tensor, sigma: Tensor | float, **cond) -> Tensor:
        if cond:
            raise ValueError(f"WindowComposedDenoiser takes no conditioning inputs; got {sorted(cond)}")
        if x.ndim != 3:
            raise ValueError(f"expected trajectories (B, variables, time); got shape {tuple(x.shape)}")
        b, v, length = x.shape
        starts, which, offset = self.layout(length)
        windows = torch.stack([x[..., s:s + self.window] for s in starts], 1)  # (B, nw, V, W)
        sig = as_sigma_batch(sigma, x).repeat_interleave(len(starts))
        out = self.denoiser(windows.flatten(0, 1), sig).reshape(b, len(starts), v, self.window)
        which, offset = which.to(x.device), offset.to(x.device)
        return out[:, which, :, offset].permute(1, 2, 0)  # advanced indices first: (L, B, V) -> (B, V, L)
