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

On a GPU (``--accelerator auto`` picks it), with a wall-time budget that includes making the data:

    python problems/ct3d/resume_slices.py --config problems/ct3d/fit_slices64.yaml --start ct_slices64 \
        --n-volumes 1000 --batch-size 256 --lr 2e-3 --warmup 100 --steps 100000 --max-seconds 400 --out outputs/ct3d_gpu

With ``--max-seconds`` the cosine runs over whichever ends first, ``--steps`` or the time left for training
(the larger of the step and the time fraction sets the rate, as in :func:`~scidiff.priors.warmup_cosine`), so a
run on a machine of unknown speed still ends on the low rate. ``--n-volumes`` draws more volumes from the YAML's
seed (the first ones are the YAML's own); continuing at the same slice size keeps the starting prior's normaliser,
so the weights see the data in the units they were trained in. The EMA weights are exported every
``--save-every`` seconds, so a run killed at its limit still leaves them.

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


class PeriodicExport(pl.Callback):
    """Export the sampling weights every ``every`` seconds of training, with a progress record beside them."""

    def __init__(self, path: Path, every: float, batch_size: int):
        self.path, self.every, self.batch_size = path, every, batch_size
        self._last = self._t0 = time.monotonic()

    def on_train_start(self, trainer, pl_module) -> None:
        self._last = self._t0 = time.monotonic()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if time.monotonic() - self._last >= self.every:
            self.save(trainer, pl_module)

    def save(self, trainer, pl_module) -> None:
        pl_module.export(self.path)
        loss = trainer.callback_metrics.get("train/loss_step")
        record = {"steps": int(trainer.global_step), "slices_seen": int(trainer.global_step) * self.batch_size,
                  "train_s": round(time.monotonic() - self._t0, 1),
                  "train_loss_last": None if loss is None else float(loss)}
        (self.path.parent / "progress.json").write_text(json.dumps(record))
        print("saved", json.dumps(record), flush=True)
        self._last = time.monotonic()


def continued_prior(start: DiffusionPrior, shape: list[int], *, lr: float, lr_min: float, warmup: int, steps: int,
                    ema_decay: float) -> DiffusionPrior:
    """A prior with ``start``'s network and weights (network and EMA copy) on slices of ``shape``, whose learning
    rate warms up over ``warmup`` steps to ``lr`` and then decays on a half cosine to ``lr_min`` at ``steps`` (or
    at the end of its :attr:`~scidiff.priors.DiffusionPrior.train_seconds`, if set and sooner)."""
    hp = {**dict(start.hparams), "shape": shape, "ema_decay": ema_decay, "lr": lr, "lr_warmup_steps": warmup,
          "lr_decay_steps": steps, "lr_final_fraction": lr_min / lr}
    model = DiffusionPrior(**hp)
    model.precond.load_state_dict(start.precond.state_dict())
    model.ema.load_state_dict(start.precond.state_dict())
    return model


def validation_loss(prior: DiffusionPrior, dm: FieldDataModule, shape: list[int] | None = None,
                    accelerator: str = "cpu", limit_batches: int | float = 1.0) -> float:
    """Mean EDM loss of the prior's sampling weights over the held-out slices (the fit's fixed validation seeds).

    ``shape`` applies the weights to slices of another size (the data module serves normalised slices, so the
    prior's own normaliser plays no part in the loss)."""
    plain = DiffusionPrior(**{**dict(prior.hparams), "ema_decay": 0.0, **({"shape": shape} if shape else {})})
    plain.precond.load_state_dict(prior.denoiser.state_dict())
    trainer = pl.Trainer(accelerator=accelerator, devices=1, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=False, limit_val_batches=limit_batches)
    return float(trainer.validate(plain, datamodule=dm, verbose=False)[0]["val/loss"])


def main(argv=None) -> dict:
    t_start = time.monotonic()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--start", default="ct_slices32", help="a shipped prior's name or a weights file to resume from")
    ap.add_argument("--config", default=str(HERE / "fit_slices.yaml"), help="training YAML giving the data")
    ap.add_argument("--steps", type=int, default=650, help="length of the cosine schedule (and the step cap)")
    ap.add_argument("--lr", type=float, default=5e-4, help="peak learning rate after the warm-up")
    ap.add_argument("--lr-min", type=float, default=1e-5)
    ap.add_argument("--warmup", type=int, default=25, help="steps to warm up AdamW's fresh moments")
    ap.add_argument("--max-minutes", type=float, default=19.5, help="cap on the training time")
    ap.add_argument("--max-seconds", type=float, default=None,
                    help="cap on the whole run's wall time (data, validation and export included)")
    ap.add_argument("--reserve", type=float, default=25.0,
                    help="seconds of --max-seconds kept for the final validation and export")
    ap.add_argument("--seed", type=int, default=1, help="differs from the first run's so new noise is drawn")
    ap.add_argument("--n-volumes", type=int, default=None, help="volumes to slice (default: the YAML's)")
    ap.add_argument("--batch-size", type=int, default=None, help="slices per step (default: the YAML's)")
    ap.add_argument("--num-workers", type=int, default=0, help="DataLoader worker processes")
    ap.add_argument("--accelerator", default="auto", help="'auto' takes a GPU when there is one")
    ap.add_argument("--threads", type=int, default=4, help="at most this many CPU threads (fewer if already set)")
    ap.add_argument("--precision", default="32-true", help="Lightning precision, e.g. 'bf16-mixed'")
    ap.add_argument("--val-batches", type=float, default=1.0,
                    help="held-out batches per validation loss (an int) or their share (a float <= 1)")
    ap.add_argument("--save-every", type=float, default=60.0, help="seconds between exports of the weights")
    ap.add_argument("--ckpt-every", type=int, default=25, help="steps between Lightning checkpoints (0: none)")
    ap.add_argument("--out", default="outputs/ct3d_resume")
    a = ap.parse_args(argv)

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(max(1, min(a.threads, torch.get_num_threads())))
    torch.backends.cuda.matmul.allow_tf32 = True  # only acts on a GPU; 32-bit weights and sums stay
    torch.backends.cudnn.allow_tf32 = True
    pl.seed_everything(a.seed)
    cfg = yaml.safe_load(Path(a.config).read_text())
    data = dict(cfg["data"], generate=dict(cfg["data"]["generate"]), num_workers=a.num_workers)
    if a.n_volumes is not None:
        data["generate"]["n_volumes"] = a.n_volumes
    if a.batch_size is not None:
        data["batch_size"] = a.batch_size
    start = DiffusionPrior.from_name_or_path(a.start)
    res = int(data["generate"]["res"])
    shape = [int(start.shape[0]), res, res]
    transfer = list(start.shape) != shape  # another slice size: the data's normaliser replaces the start's
    if not transfer:
        data["normalizer"] = (start.norm_mean.tolist(), start.norm_std.tolist())
    dm = FieldDataModule(**data)
    model = continued_prior(start, shape, lr=a.lr, lr_min=a.lr_min, warmup=a.warmup, steps=a.steps,
                            ema_decay=cfg["model"].get("ema_decay", 0.999))

    dm.setup("fit")
    val = dict(accelerator=a.accelerator, limit_batches=int(a.val_batches) if a.val_batches > 1 else a.val_batches)
    val_start = validation_loss(start, dm, shape, **val)
    print(f"data and validation of the starting weights: {time.monotonic() - t_start:.1f} s; "
          f"validation loss {val_start:.4f}", flush=True)
    train_s = 60 * a.max_minutes
    if a.max_seconds is not None:
        train_s = min(train_s, max(1.0, a.max_seconds - (time.monotonic() - t_start) - a.reserve))
    model.train_seconds = train_s
    weights = out / f"ct_slices{res}.safetensors"
    saver = PeriodicExport(weights, a.save_every, dm.hparams.batch_size if a.batch_size is None else a.batch_size)
    logger = pl.loggers.CSVLogger(str(out), name="logs")
    ckpt = [pl.callbacks.ModelCheckpoint(save_last=True, every_n_train_steps=a.ckpt_every)] if a.ckpt_every else []
    trainer = pl.Trainer(
        max_steps=a.steps, max_time={"seconds": train_s}, accelerator=a.accelerator, devices=1, logger=logger,
        precision=a.precision, log_every_n_steps=25, enable_progress_bar=False, callbacks=[*ckpt, saver],
        enable_checkpointing=bool(a.ckpt_every), default_root_dir=str(out), limit_val_batches=val["limit_batches"],
    )
    t0 = time.perf_counter()
    trainer.fit(model, datamodule=dm)
    wall = time.perf_counter() - t0
    model.cpu()
    same_norm = torch.allclose(model.norm_mean, start.norm_mean) and torch.allclose(model.norm_std, start.norm_std)
    if not transfer and not same_norm:
        raise RuntimeError("the data's normaliser differs from the starting prior's: not the same training data")
    path = model.export(weights)
    batch = int(data["batch_size"])
    summary = {
        "steps": int(trainer.global_step), "slices_seen": int(trainer.global_step) * batch,
        "wall_s": round(wall, 1), "val_loss_start": val_start,
        "start": a.start, "shape": shape, "batch_size": batch, "n_volumes": int(data["generate"]["n_volumes"]),
        "n_train_slices": len(dm.train_set), "n_val_slices": len(dm.val_set),
        "lr": a.lr, "lr_min": a.lr_min, "warmup": a.warmup, "schedule_steps": a.steps, "train_seconds": train_s,
        "seed": a.seed, "accelerator": str(trainer.accelerator.__class__.__name__), "precision": a.precision,
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "train_loss_last": float(trainer.callback_metrics.get("train/loss_step", float("nan"))),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))  # written before the last validation
    summary["val_loss_new"] = validation_loss(DiffusionPrior.load(path), dm, **val)
    summary["run_wall_s"] = round(time.monotonic() - t_start, 1)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2), flush=True)
    return summary


if __name__ == "__main__":
    main()
