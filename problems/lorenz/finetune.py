"""Continue training a Lorenz-63 or FitzHugh-Nagumo prior from its exported weights at a cosine-decaying rate.

The shipped prior was trained at a constant learning rate (1e-3) and its validation loss had levelled off; a
decaying rate averages out the gradient noise that a constant rate leaves in the weights (Loshchilov & Hutter 2017,
SGDR; the cosine shape). The rate follows ``lr * 0.5 * (1 + cos(pi * t))`` after a short warm-up, where ``t`` is the
larger of the step fraction ``step / max_steps`` and the time fraction ``elapsed / max_time``: the decay finishes
within the wall-time budget however loaded the machine is.

The export holds the sampling (EMA) weights only: they start both the trained and the averaged copy; the optimiser
state starts fresh, hence the warm-up. The shipped normaliser is kept (the weights were trained in its units); the
windows are drawn with ``--data-seed``. Window ``i`` uses seed ``data_seed + i``, so only a seed at or beyond the
previous run's ``seed + n`` gives windows the previous run has not seen: the default ``1`` (the shipped stage 2)
shares 63 999 of its 64 000 windows with stage 1 (seed 0), in a new train/validation split.

``--tail`` draws from the ``--n`` windows (a larger pool) with oversampling of the tail: windows are drawn from a proposal that gives the strata of ``max_t x`` cut at the pool's
``--quantiles`` the ``--shares`` of every batch, and each window's EDM loss is weighted by ``p / q``
(:class:`~scidiff.data.weighted.OversampledDataModule`). The minimiser is still the unconditional law; batches hold
about 20 times more windows beyond the 1 % level and 70 times more beyond the 0.1 % level than plain draws.

The windows come from :func:`~scidiff.dynamics.make_trajectory_dataset` with the system's burn-in: 3 000 RK4 steps
since the burn-in was found too short (``datasets/lorenz.md``), so a continuation of the earlier weights on fresh
seeds (``--data-seed 3000000``) moves the prior onto the attractor's law.

Run (one CPU thread, stops itself after ``--minutes``)::

    python problems/lorenz/finetune.py --init scidiff/assets/lorenz63.safetensors --minutes 19 \
        --out outputs/lorenz_ft
    python problems/lorenz/finetune.py --init scidiff/assets/lorenz63.safetensors --minutes 19 --tail \
        --n 256000 --data-seed 2000000 --lr 3e-4 --out outputs/lorenz_tail
    python problems/lorenz/finetune.py --init scidiff/assets/lorenz63.safetensors --minutes 16.5 --n 96000 \
        --data-seed 3000000 --lr 6e-4 --max-steps 4500 --out outputs/lorenz_attr
    python problems/lorenz/finetune.py --init outputs/lorenz_attr2/lorenz63.safetensors --minutes 17 --tail \
        --n 192000 --data-seed 5000000 --lr 2e-4 --max-steps 4000 --shares 0.75 0.15 0.07 0.03 --out outputs/lorenz_s5

    python problems/lorenz/finetune.py --system fitzhugh_nagumo --init <fhn stage 2> --tail --n 32000 \
        --data-seed 2000000 --lr 3e-4 --max-steps 12000 --minutes 18 --quantiles 0.9 0.99 --shares 0.75 0.18 0.07 \
        --out outputs/fhn3

The fourth Lorenz-63 command is stage 5: a mild tail weighting (the windows between the 1 % and 0.1 % levels of ``max_t x`` and those
beyond 0.1 % get about 8 and 30 times their share of plain draws) on 192 000 fresh attractor windows. The shipped
stage 6 continued it on an accelerator with the same weighting (``pool_stage.py``). The last command is the
shipped FitzHugh-Nagumo prior's stage 3 (``--system``; the tail is that of ``max_t v1``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pytorch_lightning as pl

from scidiff.data.datamodule import FieldDataModule
from scidiff.data.weighted import OversampledDataModule
from scidiff.dynamics.systems import get_system
from scidiff.priors import DiffusionPrior


class CosinePrior(DiffusionPrior):
    """A :class:`DiffusionPrior` that keeps its normaliser when the fit starts (the weights were trained in its
    units); the rate decays on the base class's cosine over ``lr_decay_steps`` and ``train_seconds``."""

    keep_normalizer: bool = True

    def on_fit_start(self) -> None:
        if not self.keep_normalizer:
            super().on_fit_start()


def build(init: str, lr: float, warmup: int, ema_decay: float, max_steps: int | None = None) -> CosinePrior:
    """A :class:`CosinePrior` with ``init``'s configuration and weights in both the trained and the EMA copy."""
    shipped = DiffusionPrior.load(init)
    config = dict(shipped.hparams)
    config.update(lr=lr, lr_warmup_steps=warmup, ema_decay=ema_decay, lr_final_fraction=0.01)
    if max_steps is not None:  # the cosine's length (the base class reads it); else the file's own
        config["lr_decay_steps"] = max_steps
    prior = CosinePrior(**config)
    prior.precond.load_state_dict(shipped.precond.state_dict())
    prior.ema.load_state_dict(shipped.precond.state_dict())
    prior.set_normalizer(shipped.norm_mean, shipped.norm_std)
    return prior


def max_x(fields):
    """The event statistic the tail is stratified by: the maximum over the window of the first variable (``x`` of
    Lorenz-63, ``v1`` of FitzHugh-Nagumo) of ``(N, C, T)`` windows in physical units."""
    return fields[:, 0].amax(-1)


def data_module(a, prior: CosinePrior) -> FieldDataModule:
    """Plain windows, or (``--tail``) a pool of windows drawn with tail oversampling, in weighted batches."""
    # the data in the units the weights were trained in (the prior's normaliser), whatever the new windows' moments
    common = dict(variables=list(get_system(a.system).variables), val_fraction=0.05, batch_size=a.batch_size,
                  normalizer=(prior.norm_mean.tolist(), prior.norm_std.tolist()))
    generate = {"name": a.system, "n": a.n, "res": prior.shape[-1], "seed": a.data_seed}
    if not a.tail:
        return FieldDataModule(generate=generate, **common)
    return OversampledDataModule(max_x, quantiles=a.quantiles, shares=a.shares, generate=generate, **common)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--system", default="lorenz63", choices=["lorenz63", "fitzhugh_nagumo"],
                   help="the simulator whose windows continue the training (the prior at --init must be of it)")
    p.add_argument("--init", default="scidiff/assets/lorenz63.safetensors")
    p.add_argument("--out", default="outputs/lorenz_ft")
    p.add_argument("--minutes", type=float, default=19.0)
    p.add_argument("--max-steps", type=int, default=4000)
    p.add_argument("--lr", type=float, default=6e-4)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--ema-decay", type=float, default=0.998)
    p.add_argument("--n", type=int, default=64000)
    p.add_argument("--data-seed", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--tail", action="store_true", help="oversample the tail of max_t x, with weights p/q")
    p.add_argument("--quantiles", type=float, nargs="+", default=[0.9, 0.99, 0.999])
    p.add_argument("--shares", type=float, nargs="+", default=[0.6, 0.2, 0.13, 0.07])
    a = p.parse_args(argv)

    pl.seed_everything(0)
    prior = build(a.init, a.lr, a.warmup, a.ema_decay, a.max_steps)
    prior.train_seconds = 60 * a.minutes
    data = data_module(a, prior)
    out = Path(a.out)
    trainer = pl.Trainer(
        max_steps=a.max_steps, max_time={"minutes": a.minutes}, accelerator="auto", devices=1,
        log_every_n_steps=50, enable_progress_bar=False, default_root_dir=str(out),
        # The tail pool's epoch is longer than the run: validate (3 200 plain windows) every 1 000 steps instead.
        **({"val_check_interval": 1000, "check_val_every_n_epoch": None, "limit_val_batches": 50} if a.tail else {}),
        logger=pl.loggers.CSVLogger(str(out), name="logs", flush_logs_every_n_steps=50),
        callbacks=[pl.callbacks.ModelCheckpoint(save_last=True, every_n_train_steps=100),
                   pl.callbacks.LearningRateMonitor(logging_interval="step")],
    )
    t0 = time.monotonic()
    trainer.fit(prior, datamodule=data)
    wall = time.monotonic() - t0
    path = prior.export(out / f"{a.system}.safetensors")
    record = {"steps": int(trainer.global_step), "windows_seen": int(trainer.global_step) * a.batch_size,
              "wall_s": round(wall, 1), "args": vars(a),
              "last_metrics": {k: float(v) for k, v in trainer.callback_metrics.items()}}
    (out / "run.json").write_text(json.dumps(record, indent=2))
    print(json.dumps(record, indent=2), "\nexported", path)


if __name__ == "__main__":
    main()
