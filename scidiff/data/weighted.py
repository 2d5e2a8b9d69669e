"""Importance-weighted oversampling of rare training examples: more of the tail per step, the same minimiser.

A training pool of ``N`` examples defines the data law ``p`` (uniform over the pool). Stratifying the pool by a
scalar statistic (e.g. the maximum of a variable over a window) at empirical quantiles and drawing examples from a
proposal ``q`` that gives each stratum a chosen share puts many more tail examples in every batch. Weighting each
example's loss by ``w = p / q`` keeps the expected loss, hence its minimiser, that of plain training
(importance sampling, Owen 2013, *Monte Carlo theory, methods and examples*, ch. 9; stratified proposals as in
defensive mixtures, Hesterberg 1995). The batch loss is self-normalised, ``sum w l / sum w``, which is consistent
and bounded by the largest per-example loss.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import Tensor
from torch.utils.data import Sampler, TensorDataset

from .datamodule import FieldDataModule


def stratified_proposal(stat: Tensor, quantiles: Sequence[float], shares: Sequence[float]) -> tuple[Tensor, Tensor]:
    """Per-example proposal probabilities ``q`` and importance weights ``w = p / q`` for a pool.

    Args:
        stat: ``(N,)`` statistic of each pool example.
        quantiles: increasing levels in (0, 1); the pool's empirical quantiles of ``stat`` at these levels cut it
            into ``len(quantiles) + 1`` strata.
        shares: the proposal's probability of each stratum (positive, summing to 1); within a stratum examples
            are equally likely.

    Returns:
        ``q`` (sums to 1) and ``w`` with ``w_i = (1 / N) / q_i = p_k / share_k`` for ``i`` in stratum ``k``, where
        ``p_k`` is the stratum's share of the pool; ``sum_i q_i w_i f_i`` is the plain pool mean of any ``f``.
    """
    stat = torch.as_tensor(stat).double()
    if stat.ndim != 1 or stat.numel() < 2:
        raise ValueError(f"stat must be a 1D tensor of at least 2 values, got shape {tuple(stat.shape)}")
    if not torch.isfinite(stat).all():
        raise ValueError("stat has NaN or inf values")
    levels = torch.as_tensor(list(quantiles), dtype=torch.float64)
    if levels.ndim != 1 or ((levels <= 0) | (levels >= 1)).any() or (levels.diff() <= 0).any():
        raise ValueError(f"quantiles must be increasing levels in (0, 1); got {list(quantiles)}")
    share = torch.as_tensor(list(shares), dtype=torch.float64)
    if share.shape != (levels.numel() + 1,):
        raise ValueError(f"shares needs one entry per stratum ({levels.numel() + 1}); got {len(share)}")
    if (share <= 0).any() or abs(float(share.sum()) - 1) > 1e-6:
        raise ValueError(f"shares must be positive and sum to 1; got {list(shares)}")
    edges = torch.quantile(stat, levels)
    stratum = torch.bucketize(stat, edges, right=True)
    count = torch.bincount(stratum, minlength=len(share)).double()
    if (count == 0).any():
        raise ValueError(f"stratum/strata {(count == 0).nonzero().flatten().tolist()} of the pool are empty "
                         f"(tied statistic values or too small a pool for quantiles {list(quantiles)})")
    q = (share / count)[stratum]
    w = (count / stat.numel() / share)[stratum]
    return q, w


def weighted_mean(values: Tensor, weights: Tensor) -> Tensor:
    """Self-normalised importance-weighted mean ``sum w v / sum w`` over the first dimension."""
    if values.shape[0] != weights.shape[0]:
        raise ValueError(f"values ({values.shape[0]}) and weights ({weights.shape[0]}) differ in length")
    weights = weights.to(values)
    return (weights * values).sum(0) / weights.sum()


class ImportanceSampler(Sampler[int]):
    """``num_samples`` pool indices drawn i.i.d. (with replacement) from ``q``, reseeded by ``seed + epoch``."""

    def __init__(self, q: Tensor, num_samples: int, seed: int = 0):
        self.q, self.num_samples, self.seed, self.epoch = torch.as_tensor(q).double(), int(num_samples), seed, 0

    def set_epoch(self, epoch: int) -> None:  # called by Lightning at every epoch
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(torch.multinomial(self.q, self.num_samples, replacement=True, generator=g).tolist())


class OversampledDataModule(FieldDataModule):
    """A :class:`FieldDataModule` whose training batches oversample the tail of ``statistic`` and carry weights.

    Training items are ``(x, w)`` with ``w = p / q`` (:func:`stratified_proposal` on the training split);
    :class:`~scidiff.priors.DiffusionPrior` then minimises the self-normalised weighted EDM loss, whose minimiser is
    the plain data law. Validation items stay unweighted draws of the data law.

    Args:
        statistic: maps the training fields ``(N, C, ...)`` in physical units to ``(N,)``.
        quantiles, shares: strata and their proposal shares (see :func:`stratified_proposal`).
        **kwargs: :class:`FieldDataModule` arguments (``normalizer`` keeps the units of a prior continued from
            saved weights).
    """

    def __init__(self, statistic: Callable[[Tensor], Tensor], quantiles: Sequence[float] = (0.9, 0.99, 0.999),
                 shares: Sequence[float] = (0.6, 0.2, 0.13, 0.07), **kwargs):
        super().__init__(**kwargs)
        self.statistic, self.quantiles, self.shares = statistic, quantiles, shares

    def setup(self, stage: str | None = None) -> None:
        if self.lazy:
            raise ValueError("OversampledDataModule needs the pool in memory (lazy=False)")
        super().setup(stage)
        train_idx, _ = self._split(self.data.shape[0])
        self.proposal, self.weights = stratified_proposal(self.statistic(self.data[train_idx]), self.quantiles, self.shares)
        self.train_set = TensorDataset(self.train_set.tensors[0], self.weights.float())

    def train_dataloader(self):
        sampler = ImportanceSampler(self.proposal, len(self.train_set), seed=self.seed)
        return self._loader(self.train_set, sampler)
