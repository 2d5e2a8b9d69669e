"""Random number generation that does not depend on batch size.

Every random function in scidiff takes ``generator=``. It may be

* ``None`` -- torch's global RNG;
* a ``torch.Generator`` -- the whole batch is drawn from it at once (results depend on batch size,
  as in plain torch);
* a sequence of ``torch.Generator`` -- one per batch item, so item ``i`` gets the same noise
  whatever the batch size (the per-sample seeding of EDM's ``StackedRandomGenerator``).

:func:`seeded_generators` builds the third form from integer seeds.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

Generator = torch.Generator | Sequence[torch.Generator] | None


def seeded_generators(seeds: Sequence[int] | int, device: str | torch.device = "cpu") -> list[torch.Generator]:
    """One generator per sample. ``seeds`` may be a list of ints or a count ``n`` (seeds ``0..n-1``)."""
    if isinstance(seeds, int):
        seeds = range(seeds)
    return [torch.Generator(device=device).manual_seed(int(s)) for s in seeds]


def _draw(fn, shape, generator: Generator, device, dtype) -> Tensor:
    shape = tuple(shape)
    if dtype is not None and not dtype.is_floating_point:
        raise ValueError(f"random draws need a floating dtype (float32/float64); got {dtype}")
    if generator is None or isinstance(generator, torch.Generator):
        gen_device = generator.device if generator is not None else device
        z = fn(shape, generator=generator, device=gen_device, dtype=dtype)
    else:
        generators = list(generator)
        if len(generators) != shape[0]:
            raise ValueError(f"got {len(generators)} per-sample generators for a batch of {shape[0]}")
        z = torch.stack([fn(shape[1:], generator=g, device=g.device, dtype=dtype) for g in generators])
    return z.to(device) if device is not None else z


def randn(shape: Sequence[int], generator: Generator = None, *, device=None, dtype=None) -> Tensor:
    """Standard normal noise of ``shape`` drawn from ``generator`` (see module docs)."""
    return _draw(torch.randn, shape, generator, device, dtype)


def rand(shape: Sequence[int], generator: Generator = None, *, device=None, dtype=None) -> Tensor:
    """Uniform [0, 1) noise, with the same ``generator`` conventions as :func:`randn`."""
    return _draw(torch.rand, shape, generator, device, dtype)


def randn_like(x: Tensor, generator: Generator = None) -> Tensor:
    """Noise shaped like ``x`` on ``x``'s device and dtype."""
    return randn(x.shape, generator, device=x.device, dtype=x.dtype)
