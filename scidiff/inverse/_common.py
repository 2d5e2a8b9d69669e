"""Input checks shared by the posterior samplers."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def check_shape(shape: Sequence[int]) -> tuple[int, ...]:
    """``shape = (N, *event_shape)``: ``N`` samples of one measurement."""
    if not isinstance(shape, (tuple, list, torch.Size)) or len(shape) < 2:
        raise ValueError(f"shape must be (N, *event_shape) with at least one event dimension; got {shape!r}")
    if any(int(n) < 1 for n in shape):
        raise ValueError(f"shape entries must be positive; got {tuple(shape)}")
    return tuple(int(n) for n in shape)


def check_positive(value: float, name: str) -> float:
    if not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return float(value)
