"""Safe files: checkpoints load with ``weights_only=True`` and shareable weights are safetensors.

Nothing here unpickles arbitrary objects: a checkpoint that needs code to load is refused with a clear
error, and a safetensors file carries its configuration as JSON metadata that is validated before use.
"""

from __future__ import annotations

import inspect
import json
import pickle
from pathlib import Path

import torch

from ._files import atomic_path

FORMAT = "scidiff.prior"
FORMAT_VERSION = "1"


class UnsafeFileError(ValueError):
    """A file that cannot be loaded without running code from it, or that is corrupt or tampered with."""


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """``torch.load(..., weights_only=True)`` with a clear error for files that would need unpickling code."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise UnsafeFileError(
            f"refusing to load {path}: it holds Python objects that only load by running code "
            f"(weights_only=True rejected it: {str(err).splitlines()[0]})"
        ) from None
    except (RuntimeError, EOFError, OSError) as err:  # truncated zip archives raise OSError
        raise UnsafeFileError(f"{path} is not a readable torch checkpoint ({err})") from None


def export_safetensors(prior, path: str | Path) -> Path:
    """Write a prior's sampling weights (EMA when present), normaliser and configuration."""
    from safetensors.torch import save_file

    path = Path(path)
    config = {k: v for k, v in dict(prior.hparams).items()}
    metadata = {"format": FORMAT, "format_version": FORMAT_VERSION, "config": json.dumps(config)}
    with atomic_path(path) as tmp:
        save_file(_prior_tensors(prior), tmp, metadata=metadata)
    return path


def _prior_tensors(prior, prefix: str = "") -> dict:
    """A prior's sampling weights (EMA when present) and normaliser, as the state dict of an ``ema_decay=0`` prior."""
    tensors = {f"{prefix}precond.{k}": v.detach().cpu().contiguous() for k, v in prior.denoiser.state_dict().items()}
    tensors[f"{prefix}norm_mean"] = prior.norm_mean.detach().cpu().contiguous()
    tensors[f"{prefix}norm_std"] = prior.norm_std.detach().cpu().contiguous()
    return tensors


def _validated_config(metadata: dict | None, path: Path) -> dict:
    if not metadata or metadata.get("format") != FORMAT:
        raise UnsafeFileError(f"{path} is not a scidiff prior export (missing or wrong 'format' metadata)")
    if metadata.get("format_version") != FORMAT_VERSION:
        raise UnsafeFileError(f"{path} has format version {metadata.get('format_version')!r}; expected {FORMAT_VERSION}")
    try:
        config = json.loads(metadata["config"])
    except (KeyError, json.JSONDecodeError) as err:
        raise UnsafeFileError(f"{path} has an unreadable 'config' metadata entry ({err})") from None
    return _prior_config(config, path)


def _prior_config(config, path: Path) -> dict:
    """Keep the DiffusionPrior arguments; refuse unknown keys (Lightning's own start with '_')."""
    from .priors.prior import DiffusionPrior

    return _constructor_config(config, path, DiffusionPrior)


def _constructor_config(config, path: Path, cls, what: str = "config") -> dict:
    """``config`` as keyword arguments of ``cls``: a mapping with ``shape`` and no key ``cls`` does not take."""
    if not isinstance(config, dict):
        raise UnsafeFileError(f"{path} has an invalid {what} (not a mapping)")
    config = {k: v for k, v in config.items() if not str(k).startswith("_")}
    allowed = set(inspect.signature(cls.__init__).parameters) - {"self"}
    unknown = set(config) - allowed
    if unknown or "shape" not in config:
        raise UnsafeFileError(f"{path} has an invalid {what} (unknown keys {sorted(unknown)}; 'shape' is required)")
    return config


def load_prior(path: str | Path, map_location: str | torch.device = "cpu"):
    """Rebuild a :class:`~scidiff.priors.DiffusionPrior` from a ``.ckpt`` or ``.safetensors`` file."""
    from .priors.prior import DiffusionPrior

    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), framework="pt", device="cpu") as f:
                config = _validated_config(f.metadata(), path)
                tensors = {k: f.get_tensor(k) for k in f.keys()}
        except SafetensorError as err:
            raise UnsafeFileError(f"{path} is not a valid safetensors file ({err})") from None
        config["ema_decay"] = 0.0  # the export holds the sampling weights only
        prior = DiffusionPrior(**config)
    else:
        ckpt = load_checkpoint(path, map_location="cpu")
        if "hyper_parameters" not in ckpt or "state_dict" not in ckpt:
            raise UnsafeFileError(f"{path} is not a DiffusionPrior checkpoint (no hyper_parameters/state_dict)")
        prior = DiffusionPrior(**_prior_config(dict(ckpt["hyper_parameters"]), path))
        tensors = ckpt["state_dict"]
    _load_checked(prior, tensors, path)
    return prior.eval().to(map_location)


def _load_checked(module, tensors: dict, path: Path) -> None:
    """``load_state_dict`` after checking that names and shapes match the configuration exactly."""
    expected = module.state_dict()
    missing, unexpected = set(expected) - set(tensors), set(tensors) - set(expected)
    if missing or unexpected:
        raise UnsafeFileError(
            f"{path} does not match its configuration: missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}"
        )
    bad = [k for k in expected if expected[k].shape != tensors[k].shape]
    if bad:
        raise UnsafeFileError(f"{path}: tensor shapes do not match the configuration for {bad[:5]}")
    nonfinite = [k for k, v in tensors.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if nonfinite:
        raise UnsafeFileError(f"{path} is corrupt: non-finite values in {', '.join(sorted(nonfinite)[:5])}")
    if "norm_std" in tensors and not bool((tensors["norm_std"] > 0).all()):
        raise UnsafeFileError(f"{path} is corrupt: the normaliser norm_std must be positive")
    module.load_state_dict(tensors)


# --- latent priors (autoencoder + latent diffusion prior in one file) ------------------------------

LATENT_FORMAT = "scidiff.latent_prior"


def export_latent_prior(latent_prior, path: str | Path) -> Path:
    """Write a :class:`~scidiff.priors.LatentPrior` (autoencoder weights, latent prior's sampling weights, both
    configurations) to one safetensors file."""
    from safetensors.torch import save_file

    path = Path(path)
    ae, prior = latent_prior.autoencoder, latent_prior.prior
    tensors = {f"autoencoder.{k}": v.detach().cpu().contiguous() for k, v in ae.state_dict().items()}
    tensors.update(_prior_tensors(prior, prefix="prior."))
    config = {"autoencoder": dict(ae.hparams), "prior": dict(prior.hparams)}
    metadata = {"format": LATENT_FORMAT, "format_version": FORMAT_VERSION, "config": json.dumps(config)}
    with atomic_path(path) as tmp:
        save_file(tensors, tmp, metadata=metadata)
    return path


def load_latent_prior(path: str | Path, map_location: str | torch.device = "cpu"):
    """Rebuild a :class:`~scidiff.priors.LatentPrior` from :func:`export_latent_prior`'s file, never unpickling."""
    from safetensors import SafetensorError, safe_open

    from .priors.autoencoder import Autoencoder
    from .priors.latent import LatentPrior
    from .priors.prior import DiffusionPrior

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no latent prior at {path}")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except SafetensorError as err:
        raise UnsafeFileError(f"{path} is not a valid safetensors file ({err})") from None
    if metadata.get("format") != LATENT_FORMAT or metadata.get("format_version") != FORMAT_VERSION:
        raise UnsafeFileError(f"{path} is not a scidiff latent prior export (format {metadata.get('format')!r})")
    try:
        config = json.loads(metadata["config"])
        ae_config, prior_config = config["autoencoder"], config["prior"]
    except (KeyError, TypeError, json.JSONDecodeError) as err:
        raise UnsafeFileError(f"{path} has an unreadable 'config' metadata entry ({err})") from None
    ae = Autoencoder(**_constructor_config(ae_config, path, Autoencoder, "autoencoder config"))
    prior = DiffusionPrior(**{**_prior_config(prior_config, path), "ema_decay": 0.0})
    split = {"autoencoder.": {}, "prior.": {}}
    for k, v in tensors.items():
        head = next((p for p in split if k.startswith(p)), None)
        if head is None:
            raise UnsafeFileError(f"{path} holds an unexpected tensor {k!r}")
        split[head][k[len(head):]] = v
    _load_checked(ae, split["autoencoder."], path)
    _load_checked(prior, split["prior."], path)
    return LatentPrior(ae.eval(), prior.eval()).to(map_location)
