"""Train the priors of the CT problem from the YAML files beside this script.

    python problems/ct_resample/train.py autoencoder -c problems/ct_resample/autoencoder.yaml
    python problems/ct_resample/train.py latent      -c problems/ct_resample/latent_prior.yaml
    python problems/ct_resample/train.py pixel       -c problems/ct_resample/pixel_prior.yaml

Each YAML has ``trainer`` (``pytorch_lightning.Trainer`` arguments), ``model`` (the module's arguments),
``data`` (:class:`~scidiff.data.datamodule.FieldDataModule` arguments) and ``out``. The latent stage encodes the
``source`` phantoms with the stage-1 autoencoder, trains a :class:`~scidiff.priors.DiffusionPrior` on the codes and
writes one :class:`~scidiff.priors.LatentPrior` safetensors file with a model card; the pixel stage writes a
:class:`~scidiff.priors.DiffusionPrior` export with its model card.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
import yaml

import scidiff.data.phantoms  # noqa: F401  (registers the "phantoms" generator)
from scidiff.data.datamodule import FieldDataModule
from scidiff.data.synthetic import generate
from scidiff.io import load_checkpoint
from scidiff.priors import Autoencoder, DiffusionPrior, LatentPrior
from scidiff.priors.card import write_model_card
from scidiff.priors.latent import encode_dataset, write_card


def _fit(module, data: FieldDataModule, trainer_kwargs: dict) -> dict:
    trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, **trainer_kwargs)
    start = time.perf_counter()
    trainer.fit(module, datamodule=data)
    metrics = {k: round(float(v), 6) for k, v in trainer.callback_metrics.items()}
    return {"steps": trainer.global_step, "epochs": trainer.current_epoch, "batch_size": data.batch_size,
            "wall_time_s": round(time.perf_counter() - start, 1), "final_loss": metrics.get("train/loss_epoch"),
            "metrics": metrics, "data": {k: v for k, v in data.hparams.items() if not str(k).startswith("_")}}


def train_autoencoder(cfg: dict) -> None:
    data = FieldDataModule(**cfg["data"])
    ae = Autoencoder(shape=data.event_shape, **cfg["model"])
    record = _fit(ae, data, cfg["trainer"])
    out = Path(cfg["out"])
    out.parent.mkdir(parents=True, exist_ok=True)
    # plain tensors and dicts only: reloads with weights_only=True
    torch.save({"hyper_parameters": dict(ae.hparams), "state_dict": ae.state_dict(), "record": record}, out)
    print(f"autoencoder: {record}\nwrote {out}")


def _load_autoencoder(path: str) -> tuple[Autoencoder, dict]:
    ckpt = load_checkpoint(path)
    ae = Autoencoder(**ckpt["hyper_parameters"])
    ae.load_state_dict(ckpt["state_dict"])
    return ae.eval(), ckpt["record"]


def train_latent(cfg: dict) -> None:
    ae, ae_record = _load_autoencoder(cfg["autoencoder"])
    source = dict(cfg["source"])
    ds = generate(source.pop("name"), **source)
    x = torch.from_numpy(ds["mu"].values).float()[:, None]
    with torch.no_grad():
        recon = ae.decode(ae.encode(x[:512]))
    ae_record["metrics"] = {"reconstruction RMSE on 512 training phantoms": round(float((recon - x[:512]).pow(2).mean().sqrt()), 5)}
    codes = encode_dataset(ae, x)
    data = _in_memory(codes, cfg["data"])
    prior = DiffusionPrior(shape=list(ae.latent_shape), **cfg["model"])
    record = _fit(prior, data, cfg["trainer"])
    record["data"] = {"codes of": cfg["source"], "autoencoder": cfg["autoencoder"]}
    latent = LatentPrior(ae, prior.eval())
    out = latent.save(cfg["out"])
    write_card(latent, {"autoencoder": ae_record, "prior": record}, out.with_suffix(".md"),
               source=f"python problems/ct_resample/train.py latent -c {cfg['_path']}")
    print(f"latent prior: {record}\nwrote {out}")


def _in_memory(codes, data_cfg: dict) -> FieldDataModule:
    """A data module over the latent codes (written to a temporary NetCDF file, the module's on-disk format)."""
    import tempfile

    from scidiff.data.netcdf import write_netcdf

    path = Path(tempfile.mkdtemp()) / "latents.nc"
    write_netcdf(codes, path)
    return FieldDataModule(path=str(path), variables=list(codes.data_vars), **data_cfg)


def train_pixel(cfg: dict) -> None:
    data = FieldDataModule(**cfg["data"])
    prior = DiffusionPrior(shape=data.event_shape, **cfg["model"])
    record = _fit(prior, data, cfg["trainer"])
    out = prior.export(cfg["out"])
    card = {"steps": record["steps"], "epochs": record["epochs"], "batch_size": record["batch_size"],
            "images_seen": record["steps"] * record["batch_size"], "wall_time_s": record["wall_time_s"],
            "final_train_loss": record["final_loss"], "final_val_loss": record["metrics"].get("val/loss"),
            "data": record["data"]}
    write_model_card(prior, card, out.with_suffix(".md"),
                     source=f"python problems/ct_resample/train.py pixel -c {cfg['_path']} (one CPU thread)")
    print(f"pixel prior: {record}\nwrote {out}")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("stage", choices=["autoencoder", "latent", "pixel"])
    p.add_argument("-c", "--config", required=True)
    a = p.parse_args(argv)
    cfg = yaml.safe_load(Path(a.config).read_text())
    cfg["_path"] = a.config
    pl.seed_everything(cfg.get("seed", 0))
    {"autoencoder": train_autoencoder, "latent": train_latent, "pixel": train_pixel}[a.stage](cfg)


if __name__ == "__main__":
    main()
