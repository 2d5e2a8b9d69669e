"""Train the one-shot (``--hops 0``) or PARD (``--hops 3``) model on the MOSES subset and save safetensors.

Constant learning rate after a linear warm-up, with an EMA of the weights: the checkpoint written at step k every
``--every`` steps is the averaged model of a k-step run, so runs of different lengths compare at equal steps.

    PYTHONPATH=. python problems/moses_small/train.py --hops 0 --max-atoms 15 --seconds 1020 --every 250 --out outputs/m15/oneshot
    PYTHONPATH=. python problems/moses_small/train.py --hops 3 --T 20 --max-atoms 15 --seconds 1020 --every 250 --out outputs/m15/pard

The first is the shipped ``moses15`` (10 144 training molecules); ``--max-atoms 12`` gave ``moses12`` (435).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from scidiff.graphs import BlockDiffusion, MosesSubset, fit, load_model, prepare, save_model


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--hops", type=int, default=0, help="0 = one-shot (DiGress-style), >= 1 = PARD blocks")
    p.add_argument("--T", type=int, default=100, help="diffusion steps (per block for PARD)")
    p.add_argument("--max-atoms", type=int, default=15)
    p.add_argument("--seconds", type=float, default=None)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument("--ema", type=float, default=0.999)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--hidden-e", type=int, default=32)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--blocks-per-graph", type=int, default=1, help="PARD: random blocks per graph and step")
    p.add_argument("--every", type=int, default=500, help="write an averaged checkpoint every this many steps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--init", default=None, help="continue from saved weights (a file or a shipped name such as "
                   "moses15); the architecture comes from the file, the optimiser starts fresh")
    p.add_argument("--out", default="outputs/moses_small/oneshot", help="output stem (STEM.safetensors, STEM_step<k>...)")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(a.seed)
    train = list(MosesSubset(split="train", max_heavy_atoms=a.max_atoms))
    records = prepare(train, a.hops)
    if a.init:
        model, before = load_model(a.init)
        model.train()
        if model.config.get("max_hops", 0) != a.hops:
            raise ValueError(f"--init {a.init} has max_hops={model.config.get('max_hops')}, but --hops is {a.hops}")
    else:
        before = {}
        model = BlockDiffusion.from_records(records, 7, 4, max_hops=a.hops, T=a.T, ppgn=a.hops > 0, hidden=a.hidden,
                                            hidden_e=a.hidden_e, layers=a.layers)
    stem = Path(a.out)
    stem.parent.mkdir(parents=True, exist_ok=True)
    recipe = {("budget_" + k if k in ("steps", "seconds") else k): v for k, v in vars(a).items()}
    recipe.update(train_molecules=len(train), molecular=True)
    if before:  # the earlier stage's record, so the card can add the stages up
        recipe["init_record"] = {k: before[k] for k in ("steps", "graphs_seen", "seconds", "loss", "init_record")
                                 if k in before}  # nested, so every earlier stage stays on record
    t0 = time.perf_counter()

    def checkpoint(step, averaged):
        info = {"steps": step, "graphs_seen": step * a.batch_size, "seconds": time.perf_counter() - t0, **recipe}
        save_model(averaged, f"{stem}_step{step}.safetensors", info)
        print(json.dumps(info), flush=True)

    info = fit(model, records, steps=a.steps, seconds=a.seconds, batch_size=a.batch_size, lr=a.lr,
               blocks_per_graph=a.blocks_per_graph if a.hops else None, seed=a.seed, warmup=a.warmup, ema=a.ema,
               callback=checkpoint, every=a.every)
    info.update(recipe, params=sum(p.numel() for p in model.parameters()))
    save_model(model, f"{stem}.safetensors", info)
    print(json.dumps(info), flush=True)
    return info


if __name__ == "__main__":
    main()
