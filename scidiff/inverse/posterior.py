"""The result of a posterior sampler: samples (or weighted particles) with summaries and an xarray view."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass
class Posterior:
    """Samples ``(N, *shape)`` of ``p(x | y)``, optionally weighted.

    Args:
        samples: ``(N, *shape)`` tensor.
        log_weights: ``(N,)`` unnormalised log-weights for particle methods; ``None`` means equal weights.
        ess_history: effective sample size after each step (particle methods).
        info: plain-typed facts about the run (method, NFE, wall time...).
    """

    samples: Tensor
    log_weights: Tensor | None = None
    ess_history: list[float] = field(default_factory=list)
    info: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.log_weights is not None and self.log_weights.shape != (self.samples.shape[0],):
            raise ValueError(
                f"log_weights must have shape ({self.samples.shape[0]},); got {tuple(self.log_weights.shape)}"
            )

    @property
    def weights(self) -> Tensor:
        """Normalised weights ``(N,)`` (uniform when unweighted)."""
        n = self.samples.shape[0]
        if self.log_weights is None:
            return torch.full((n,), 1.0 / n, dtype=torch.float64, device=self.samples.device)
        return torch.softmax(self.log_weights.double(), 0)

    @property
    def ess(self) -> float:
        """Effective sample size ``1 / sum w^2`` of the final weights."""
        return float(1.0 / self.weights.pow(2).sum())

    def _w(self) -> Tensor:
        return self.weights.reshape(-1, *([1] * (self.samples.ndim - 1)))

    def mean(self) -> Tensor:
        return (self._w() * self.samples.double()).sum(0).to(self.samples.dtype)

    def std(self) -> Tensor:
        m = self.mean().double()
        var = (self._w() * (self.samples.double() - m) ** 2).sum(0)
        return var.sqrt().to(self.samples.dtype)

    def quantile(self, q: float | Tensor) -> Tensor:
        """Weighted quantile(s) per entry: ``q`` scalar gives ``shape``; a ``(Q,)`` tensor gives ``(Q, *shape)``."""
        q_t = torch.as_tensor(q, dtype=torch.float64, device=self.samples.device).reshape(-1)
        if ((q_t < 0) | (q_t > 1)).any():
            raise ValueError("quantile levels must lie in [0, 1]")
        flat = self.samples.double().reshape(self.samples.shape[0], -1)
        order = flat.argsort(0)
        sorted_x = flat.gather(0, order)
        cdf = self.weights[order].cumsum(0)  # (N, D)
        cdf = cdf - 0.5 * self.weights[order]  # midpoint rule: exact median for two equal samples
        idx = torch.stack([torch.searchsorted(cdf.T.contiguous(), qq.expand(cdf.shape[1], 1).contiguous()).squeeze(1) for qq in q_t])
        idx = idx.clamp_max(flat.shape[0] - 1)
        out = sorted_x.gather(0, idx).reshape(len(q_t), *self.samples.shape[1:]).to(self.samples.dtype)
        return out[0] if torch.as_tensor(q).ndim == 0 else out

    def credible_interval(self, level: float = 0.9) -> tuple[Tensor, Tensor]:
        """Central ``level`` credible interval per entry: weighted quantiles ``(1 -+ level) / 2``."""
        if not 0 < level < 1:
            raise ValueError(f"level must lie in (0, 1), got {level}")
        lo_hi = self.quantile(torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=torch.float64))
        return lo_hi[0], lo_hi[1]

    def coverage(self, truth: Tensor, level: float = 0.9) -> float:
        """Fraction of the entries of ``truth`` (event shape, or ``(1, *shape)``) inside the central interval."""
        truth = torch.as_tensor(truth, device=self.samples.device)
        if truth.shape not in (self.samples.shape[1:], (1, *self.samples.shape[1:])):
            raise ValueError(f"truth of shape {tuple(truth.shape)} does not match samples of shape {tuple(self.samples.shape)}")
        lo, hi = self.credible_interval(level)
        truth = truth.reshape(lo.shape).to(lo.dtype)
        return float(((truth >= lo) & (truth <= hi)).double().mean())

    def to_xarray(self, dims: tuple[str, ...] | None = None, coords: dict | None = None, name: str = "x"):
        """An ``xarray.Dataset`` with the samples, their mean and std (and weights if any).

        ``dims`` names the event dimensions (default: ``channel``, then ``y, x`` / ``z, y, x`` / ``t``).
        """
        import xarray as xr

        event = self.samples.shape[1:]
        dims = tuple(dims) if dims is not None else _default_dims(len(event))
        if len(dims) != len(event):
            raise ValueError(f"dims {dims} do not match the event shape {tuple(event)}")
        data = {
            name: (("sample", *dims), self.samples.detach().cpu().numpy()),
            f"{name}_mean": (dims, self.mean().detach().cpu().numpy()),
            f"{name}_std": (dims, self.std().detach().cpu().numpy()),
        }
        if self.log_weights is not None:
            data["log_weight"] = (("sample",), self.log_weights.detach().cpu().numpy())
        attrs = {k: v for k, v in self.info.items() if isinstance(v, (int, float, str))}
        ds = xr.Dataset(data, coords=coords or {}, attrs=attrs)
        if self.ess_history:
            ds["ess"] = (("step",), list(self.ess_history))
        return ds

    def save(self, path) -> None:
        """Write to NetCDF (atomically: a temporary file is renamed when complete)."""
        from ..data.netcdf import write_netcdf

        write_netcdf(self.to_xarray(), path)

    @classmethod
    def load(cls, path, name: str = "x") -> Posterior:
        import xarray as xr

        with xr.open_dataset(path) as ds:
            if name not in ds:
                raise KeyError(f"{path} has no variable {name!r}; it has {sorted(ds.data_vars)}")
            samples = torch.from_numpy(ds[name].values.copy())
            lw = torch.from_numpy(ds["log_weight"].values.copy()) if "log_weight" in ds else None
            ess = [float(v) for v in ds["ess"].values] if "ess" in ds else []
            info = dict(ds.attrs)
        return cls(samples, lw, ess, info)


def _default_dims(rank: int) -> tuple[str, ...]:
    spatial = {0: (), 1: ("t",), 2: ("y", "x"), 3: ("z", "y", "x")}
    if rank == 0:
        return ()
    return ("channel", *spatial.get(rank - 1, tuple(f"dim_{i}" for i in range(rank - 1))))
