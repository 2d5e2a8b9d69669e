"""Model cards: what a shipped or exported prior was trained on, for how long, and how far its loss fell."""

from __future__ import annotations

import csv
import json
from pathlib import Path


def _last_logged(metrics_csv: Path, key: str) -> float | None:
    if not metrics_csv.is_file():
        return None
    value = None
    with open(metrics_csv) as f:
        for row in csv.DictReader(f):
            if row.get(key):
                value = float(row[key])
    return value


def training_record(ckpt: dict, ckpt_path: Path) -> dict:
    """Steps, epochs, images seen, wall time and last losses of a Lightning checkpoint (and its CSV log)."""
    data = {k: v for k, v in (ckpt.get("datamodule_hyper_parameters") or {}).items() if not str(k).startswith("_")}
    timer = next((v for k, v in ckpt.get("callbacks", {}).items() if k.startswith("Timer")), {})
    steps = int(ckpt.get("global_step", 0))
    metrics = ckpt_path.parent.parent / "metrics.csv"  # <log_dir>/checkpoints/<file>.ckpt
    return {
        "steps": steps,
        "epochs": int(ckpt.get("epoch", 0)),
        "batch_size": data.get("batch_size"),
        "images_seen": steps * data["batch_size"] if data.get("batch_size") else None,
        "wall_time_s": round(float(timer.get("time_elapsed", {}).get("train", 0.0)), 1) or None,
        "final_train_loss": _last_logged(metrics, "train/loss_step"),
        "final_val_loss": _last_logged(metrics, "val/loss"),
        "data": data,
    }


def write_model_card(prior, record: dict, path: str | Path, source: str = "") -> Path:
    """Write a Markdown model card next to an export."""
    path = Path(path)
    params = sum(p.numel() for p in prior.denoiser.parameters())
    lines = [
        f"# Model card: {path.stem}",
        "",
        f"- **Event shape:** {list(prior.shape)} (channels first)",
        f"- **Network:** {prior.hparams.network}, {params:,} parameters (EDM preconditioning, EMA weights)",
        f"- **Normaliser:** mean {[round(float(v), 5) for v in prior.norm_mean]}, "
        f"std {[round(float(v), 5) for v in prior.norm_std]} (samples are returned in physical units)",
        f"- **Training data:** `{json.dumps(record.get('data') or {})}`",
        f"- **Training:** {record['steps']} optimiser steps, {record['epochs']} epochs, batch size "
        f"{record['batch_size']}, {record['images_seen']} images seen, wall time {record['wall_time_s']} s",
        f"- **Final losses (EDM-weighted):** train {record['final_train_loss']}, validation {record['final_val_loss']}",
        f"- **Produced from:** `{source}`" if source else "",
        "",
        "## Configuration",
        "",
        "```json",
        json.dumps(dict(prior.hparams), indent=2),
        "```",
        "",
    ]
    path.write_text("\n".join(lines))
    return path
