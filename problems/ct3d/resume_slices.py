"""Continue training a slice prior (default: the shipped ``ct_slices32``) with a cosine-decaying learning rate.

The shipped file holds the EMA weights only (no optimiser state), so the run starts both the trained network and
its EMA copy from them, warms AdamW's moments up over a few steps, and then decays the learning rate along a
half cosine to ``lr_min`` (Loshchilov & Hutter, "SGDR", ICLR 2017): a constant rate had left the loss still
falling but noisy. The schedule is :class:`DiffusionPrior`'s own (``lr_decay_steps``, ``lr_final_fraction``).

The data come from ``--config`` (a training YAML). With ``fit_slices.yaml`` (the default) the data, seed and
architecture are those of ``ct_slices32``, so the asset keeps its name. With a YAML of another slice size (e.g.
``fit_slices64.yaml``) the run transfers the weights to that size -- the UNet is convolutional, with attention
over whatever grid reaches its coarsest level -- takes the new data's normaliser, and writes
``ct_slices<res>``.

Run (one CPU thread; stops itself after ``--max-minutes`` of training):

    python problems/ct3d/resume_slices.py --steps 650 --max-minutes 19.5 --out outputs/ct3d_resume
    python problems/ct3d/resume_slices.py --config problems/ct3d/fit_slices64.yaml --start ct_slices32 \
        --steps 600 --max-minutes 16 --out outputs/ct3d_slices64

It writes ``<out>/ct_slices<res>.safetensors`` and ``<out>/summary.json`` (steps, slices seen, wall time,
validation loss of the new and of the starting weights, both as EMA/sampling weights on the same held-out slices).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
import yaml

from scidiff.data.datamodule import FieldDataModule
from scidiff.priors import DiffusionPrior

HERE = Path(__file__).resolve().parent


def continued_prior(start: DiffusionPrior, shape: list[int], *, lr: float, lr_min: float, warmup: int, steps: int,
                    ema_decay: float) -> DiffusionPrior:
    """A prior with ``start``'s network and weights (network and EMA copy) on slices of ``shape``, whose learning
    rate warms up over ``warmup`` steps to ``lr`` and then decays on a half cosine to ``lr_min`` at ``steps``."""
    hp = {**dict(start.hparams), "shape": shape, "ema_decay": ema_decay, "lr": lr, "lr_warmup_steps": warmup,
          "lr_decay_steps": steps, "lr_final_fraction": lr_min / lr}
    model = DiffusionPrior(**hp)
    model.precond.load_state_dict(start.precond.state_dict())
    model.ema.load_state_dict(start.precond.state_dict())
    return model


def validation_loss(prior: DiffusionPrior, dm: FieldDataModule, shape: list[int] | None = None) -> float:
    """Mean EDM loss of the prior's sampling weights over the held-out slices (the fit's fixed validation seeds).

    ``shape`` applies the weights to slices of another size (the data module serves normalised slices, so the
    prior's own normaliser plays no part in the loss)."""
    plain = DiffusionPrior(**{**dict(prior.hparams), "ema_decay": 0.0, **({"shape": shape} if shape else {})})
    plain.precond.load_state_dict(prior.denoiser.state_dict())
    trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=False)
    return float(trainer.validate(plain, datamodule=dm, verbose=False)[0]["val/loss"])


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--start", default="ct_slices32", help="a shipped prior's name or a weights file to resume from")
    ap.add_argument("--config", default=str(HERE / "fit_slices.yaml"), help="training YAML giving the data")
    ap.add_argument("--steps", type=int, default=650, help="length of the cosine schedule (and the step cap)")
    ap.add_argument("--lr", type=float, default=5e-4, help="peak learning rate after the warm-up")
    ap.add_argument("--lr-min", type=float, default=1e-5)
    ap.add_argument("--warmup", type=int, default=25, help="steps to warm up AdamW's fresh moments")
    ap.add_argument("--max-minutes", type=float, default=19.5)
    ap.add_argument("--seed", type=int, default=1, help="differs from the first run's so new noise is drawn")
    ap.add_argument("--out", default="outputs/ct3d_resume")
    a = ap.parse_args(argv)

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    pl.seed_everything(a.seed)
    cfg = yaml.safe_load(Path(a.config).read_text())
    dm = FieldDataModule(**cfg["data"])
    start = DiffusionPrior.from_name_or_path(a.start)
    res = int(cfg["data"]["generate"]["res"])
    shape = [int(start.shape[0]), res, res]
    transfer = list(start.shape) != shape  # another slice size: the data's normaliser replaces the start's
    model = continued_prior(start, shape, lr=a.lr, lr_min=a.lr_min, warmup=a.warmup, steps=a.steps,
                            ema_decay=cfg["model"].get("ema_decay", 0.999))

    dm.setup("fit")
    val_start = validation_loss(start, dm, shape)
    print(f"validation loss of the starting weights: {val_start:.4f}", flush=True)
    logger = pl.loggers.CSVLogger(str(out), name="logs")
    ckpt = pl.callbacks.ModelCheckpoint(save_last=True, every_n_train_steps=25)
    trainer = pl.Trainer(
        max_steps=a.steps, max_time={"minutes": a.max_minutes}, accelerator="cpu", devices=1, logger=logger,
        log_every_n_steps=25, enable_progress_bar=False, callbacks=[ckpt], default_root_dir=str(out),
    )
    t0 = time.perf_counter()
    trainer.fit(model, datamodule=dm)
    wall = time.perf_counter() - t0
    same_norm = torch.allclose(model.norm_mean, start.norm_mean) and torch.allclose(model.norm_std, start.norm_std)
    if not transfer and not same_norm:
        raise RuntimeError("the data's normaliser differs from the starting prior's: not the same training data")
    path = model.export(out / f"ct_slices{res}.safetensors")
    val_new = validation_loss(DiffusionPrior.load(path), dm)
    summary = {
        "steps": int(trainer.global_step), "slices_seen": int(trainer.global_step) * dm.hparams.batch_size,
        "wall_s": round(wall, 1), "val_loss_start": val_start, "val_loss_new": val_new,
        "start": a.start, "shape": shape, "batch_size": dm.hparams.batch_size,
        "lr": a.lr, "lr_min": a.lr_min, "warmup": a.warmup, "schedule_steps": a.steps, "seed": a.seed,
        "train_loss_last": float(trainer.callback_metrics.get("train/loss_step", float("nan"))),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2), flush=True)
    return summary


if __name__ == "__main__":
    main()
