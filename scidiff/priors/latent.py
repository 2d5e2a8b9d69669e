"""``LatentPrior``: an autoencoder and a diffusion prior on its latent codes, used and saved as one object.

Latent diffusion (Rombach et al., CVPR 2022, arXiv 2112.10752) trains the diffusion model on ``z = E(x)``
rescaled to unit variance (their "scale factor"); here the latent :class:`DiffusionPrior`'s per-channel
normaliser plays that role, so

* ``encode(x)`` = normalised ``E(x)`` -- the units the latent denoiser works in;
* ``decode(z)`` = ``D(denormalised z)`` in the data's physical units, differentiable in ``z``;
* ``latent_prior(z, sigma)`` is the latent Denoiser (``E[z0 | z0 + sigma n]``).

The latent samplers of :mod:`scidiff.inverse` (ReSample, latent DPS) need exactly these three things.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import Tensor, nn

from ..diffusion.random import Generator
from .autoencoder import Autoencoder
from .prior import DiffusionPrior


class LatentPrior(nn.Module):
    """An :class:`Autoencoder` and a :class:`DiffusionPrior` trained on its (normalised) codes."""

    def __init__(self, autoencoder: Autoencoder, prior: DiffusionPrior):
        super().__init__()
        if tuple(prior.shape) != tuple(autoencoder.latent_shape):
            raise ValueError(
                f"the latent prior was trained on shape {tuple(prior.shape)} but the autoencoder's latents have "
                f"shape {tuple(autoencoder.latent_shape)}"
            )
        self.autoencoder, self.prior = autoencoder, prior

    @property
    def shape(self) -> tuple[int, ...]:
        """Event shape of the data (pixel space)."""
        return self.autoencoder.shape

    @property
    def latent_shape(self) -> tuple[int, ...]:
        return self.autoencoder.latent_shape

    def encode(self, x: Tensor) -> Tensor:
        """Normalised latent codes of fields in physical units."""
        return self.prior.normalize(self.autoencoder.encode(x))

    def decode(self, z: Tensor) -> Tensor:
        """Fields in physical units from normalised latent codes (differentiable)."""
        return self.autoencoder.decode(self.prior.denormalize(z))

    def forward(self, z: Tensor, sigma: Tensor | float, **cond) -> Tensor:
        """The latent Denoiser."""
        return self.prior(z, sigma, **cond)

    @torch.no_grad()
    def sample(self, n: int, steps: int = 32, *, generator: Generator = None, progress: bool = True, **kwargs) -> Tensor:
        """``n`` unconditional samples in pixel space (latent samples decoded)."""
        return self.decode(self.prior.sample(n, steps, generator=generator, physical=False, progress=progress, **kwargs))

    # --- files --------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """One safetensors file with both networks and configurations (see :func:`scidiff.io.export_latent_prior`)."""
        from ..io import export_latent_prior

        return export_latent_prior(self, path)

    @classmethod
    def load(cls, path: str | Path, map_location: str | torch.device = "cpu") -> LatentPrior:
        from ..io import load_latent_prior

        return load_latent_prior(path, map_location=map_location)

    @classmethod
    def pretrained(cls, name: str) -> LatentPrior:
        """A latent prior shipped in ``scidiff/assets/<name>.safetensors`` (model card beside it)."""
        from importlib.resources import files

        path = files("scidiff") / "assets" / f"{name}.safetensors"
        if not path.is_file():
            raise ValueError(f"no shipped latent prior named {name!r}")
        return cls.load(str(path))


@torch.no_grad()
def encode_dataset(autoencoder: Autoencoder, x: Tensor, batch_size: int = 256):
    """Latent codes of ``x`` (``(N, *shape)``, physical units) as an ``xarray.Dataset`` with one variable per latent
    channel (``z0``, ``z1``...), ready for a :class:`~scidiff.data.datamodule.FieldDataModule`."""
    import xarray as xr

    autoencoder = autoencoder.eval()
    codes = torch.cat([autoencoder.encode(x[i : i + batch_size].to(autoencoder.device)).cpu()
                       for i in range(0, len(x), batch_size)])
    spatial = [f"d{k}" for k in range(codes.ndim - 2)]
    data = {f"z{c}": (("sample", *spatial), codes[:, c].numpy()) for c in range(codes.shape[1])}
    return xr.Dataset(data, attrs={"title": "autoencoder latent codes (posterior means)"})


def write_card(latent_prior: LatentPrior, records: dict[str, dict], path: str | Path, source: str = "") -> Path:
    """A Markdown model card for a latent prior: both networks, their training records and configurations.

    ``records`` maps ``"autoencoder"`` and ``"prior"`` to dicts with ``steps``, ``batch_size``, ``wall_time_s``,
    ``final_loss`` and ``data`` (what was trained on), plus any measured quality figures under ``metrics``.
    """
    path = Path(path)
    ae, prior = latent_prior.autoencoder, latent_prior.prior
    n_ae = sum(p.numel() for p in ae.parameters())
    n_pr = sum(p.numel() for p in prior.denoiser.parameters())
    lines = [f"# Model card: {path.stem}", "",
             f"- **Data shape:** {list(ae.shape)}; **latent shape:** {list(ae.latent_shape)} "
             f"({ae.compression:g} data entries per latent entry)",
             f"- **Autoencoder:** KL-regularised conv autoencoder, {n_ae:,} parameters",
             f"- **Latent prior:** {prior.hparams.network}, {n_pr:,} parameters (EDM preconditioning, EMA weights)",
             f"- **Produced from:** `{source}`" if source else "", ""]
    for name in ("autoencoder", "prior"):
        r = records.get(name, {})
        images = r["steps"] * r["batch_size"] if r.get("steps") and r.get("batch_size") else None
        lines += [f"## {name} training", "",
                  f"- data: `{json.dumps(r.get('data') or {})}`",
                  f"- {r.get('steps')} optimiser steps, batch size {r.get('batch_size')}, {images} samples seen, "
                  f"wall time {r.get('wall_time_s')} s (one CPU thread unless stated)",
                  f"- final training loss: {r.get('final_loss')}"]
        for key, value in (r.get("metrics") or {}).items():
            lines.append(f"- {key}: {value}")
        lines.append("")
    config = {"autoencoder": dict(ae.hparams), "prior": dict(prior.hparams)}
    lines += ["## Configuration", "", "```json", json.dumps(config, indent=2), "```", ""]
    path.write_text("\n".join(line for line in lines if line is not None))
    return path

