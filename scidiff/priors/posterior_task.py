"""``PosteriorTask``: Lightning ``predict`` over a dataset of measurements, one posterior per measurement.

Each prediction item is ``{"index": i, "y": ..., "mask": ...}`` (see :class:`~scidiff.data.lazy.MeasurementDataset`):
noisy observations ``y = mask * x + sigma_y n`` of a field in physical units, where ``mask`` marks the observed
entries. Under ``predict`` with ``devices=N`` Lightning shards the measurements across ranks; measurement ``i``
is sampled with per-particle generators seeded by ``(seed, i)``, so its result does not depend on the rank,
the batch or the device count. With :class:`~scidiff.data.writers.NetCDFPredictionWriter` (or
:class:`~scidiff.data.writers.ZarrPredictionWriter`) a rerun skips the measurements already written.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor

from ..diffusion import karras_sigmas, seeded_generators
from ..likelihoods.base import LinearGaussianLikelihood
from ..likelihoods.units import in_model_units

SAMPLERS = ("dps", "afdps", "tds", "red_diff")


def masked_likelihood(y: Tensor, mask: Tensor, sigma_y: float) -> LinearGaussianLikelihood:
    """``y = mask * x + sigma_y n`` on one measurement ``y`` of event shape ``mask.shape``."""
    if y.shape != mask.shape:
        raise ValueError(f"measurement y of shape {tuple(y.shape)} does not match its mask of shape {tuple(mask.shape)}")
    mask = mask.to(y)
    apply = lambda x: x * mask  # noqa: E731  (self-adjoint)
    return LinearGaussianLikelihood(apply, apply, (y * mask)[None], sigma_y)


def masked_measurements(fields: Tensor, fraction: float, sigma_y: float, *, generator=None):
    """An ``xarray.Dataset`` of measurement sets ``y = mask * (x + sigma_y n)`` of one-channel ``fields``
    ``(N, 1, *dims)``.

    ``mask`` keeps a random ``fraction`` of the entries of each field; variables ``y``, ``mask`` (and the
    ``truth``) have dims ``(sample, *dims)``, the layout :class:`~scidiff.data.lazy.MeasurementDataset` reads.
    """
    import xarray as xr

    from ..diffusion.random import rand, randn

    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1]; got {fraction}")
    fields = torch.as_tensor(fields, dtype=torch.float32)
    if fields.ndim < 3 or fields.ndim > 5 or fields.shape[1] != 1:
        raise ValueError(f"fields must have shape (N, 1, *dims) with 1 to 3 dims; got {tuple(fields.shape)}")
    mask = (rand(fields.shape, generator) < fraction).float()
    y = mask * (fields + sigma_y * randn(fields.shape, generator))
    dims = ("sample", *("depth", "row", "col")[3 - (fields.ndim - 2):])  # not "y": that names the data
    data = {"y": (dims, y[:, 0].numpy()), "mask": (dims, mask[:, 0].numpy()), "truth": (dims, fields[:, 0].numpy())}
    return xr.Dataset(data, attrs={"sigma_y": float(sigma_y), "fraction": float(fraction)})


class PosteriorTask(pl.LightningModule):
    """Posterior sampling with a trained prior, as a ``LightningModule`` for ``trainer.predict``.

    Args:
        prior: a ``.ckpt``/``.safetensors`` path or the name of a shipped prior.
        sampler: one of ``dps``, ``afdps``, ``tds``, ``red_diff`` (:mod:`scidiff.inverse`).
        num_samples: samples (or particles) per measurement.
        steps: length of the Karras schedule (``sigma_min``/``sigma_max`` from the prior).
        sigma_y: observation noise in physical units.
        seed: measurement ``i`` uses the per-particle seeds ``seed * 2**20 + i * num_samples + k``.
        sampler_kwargs: extra keyword arguments of the sampler (plain types).
        precision, compile: how the prior's network runs (see :meth:`DiffusionPrior.set_runtime`).
    """

    def __init__(self, prior: str, sampler: str = "dps", num_samples: int = 8, steps: int = 32, sigma_y: float = 0.1,
                 seed: int = 0, sampler_kwargs: dict[str, Any] | None = None, precision: str | None = None,
                 compile: bool | dict = False):  # noqa: A002
        super().__init__()
        if sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {sampler!r}; choose from {SAMPLERS}")
        self.save_hyperparameters()
        from . import DiffusionPrior

        self.prior = DiffusionPrior.load(prior) if str(prior).endswith((".ckpt", ".safetensors")) else \
            DiffusionPrior.pretrained(prior)
        self.prior.requires_grad_(False).set_runtime(precision, compile)

    def seeds(self, index: int) -> list[int]:
        n = self.hparams.num_samples
        return [self.hparams.seed * 2**20 + index * n + k for k in range(n)]

    def posterior(self, index: int, y: Tensor, mask: Tensor):
        """The posterior of one measurement, samples in physical units."""
        from .. import inverse

        p, hp = self.prior, self.hparams
        lik = in_model_units(masked_likelihood(y, mask, hp.sigma_y), p._stat(p.norm_mean, y[None])[0],
                             p._stat(p.norm_std, y[None])[0], shape=p.shape)
        sigmas = karras_sigmas(hp.steps, p.hparams.sigma_min, p.hparams.sigma_max)
        gens = seeded_generators(self.seeds(index), device=y.device)
        fn = getattr(inverse, hp.sampler)
        post = fn(p, lik, (hp.num_samples, *p.shape), sigmas, generator=gens, progress=False, device=y.device,
                  **(hp.sampler_kwargs or {}))
        post.samples = p.denormalize(post.samples)
        post.info.update({"index": int(index), "prior": str(hp.prior), "sigma_y": float(hp.sigma_y)})
        return post

    def predict_step(self, batch, batch_idx):
        """``[(index, Posterior), ...]`` for the measurements of this batch not yet written by the writer."""
        done = _done_indices(self.trainer)
        out = []
        # Lightning predicts under inference mode; guided samplers (DPS, TDS) differentiate through the prior
        with torch.inference_mode(False):
            for k, index in enumerate(batch["index"].tolist()):
                if index not in done:
                    out.append((index, self.posterior(index, batch["y"][k].clone(), batch["mask"][k].clone())))
        return out


def _done_indices(trainer) -> set[int]:
    if trainer is None:
        return set()
    for cb in trainer.callbacks:
        if hasattr(cb, "done_indices"):
            return cb.done_indices()
    return set()
