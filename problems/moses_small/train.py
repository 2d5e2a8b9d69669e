"""Train the one-shot (``--hops 0``) or PARD (``--hops 3``) model on the MOSES subset and save safetensors.

Constant learning rate after a linear warm-up, with an EMA of the weights: the checkpoint written at step k every
``--every`` steps is the averaged model of a k-step run, so runs of different lengths compare at equal steps.

    PYTHONPATH=. python problems/moses_small/train.py --hops 0 --max-atoms 15 --seconds 1020 --every 250 --out outputs/m15/oneshot
    PYTHONPATH=. python problems/moses_small/train.py --hops 3 --T 20 --max-atoms 15 --seconds 1020 --every 250 --out outputs/m15/pard

The first is the shipped ``moses15`` (10 144 training molecules); ``--max-atoms 12`` gave ``moses12`` (435).

Without RDKit (e.g. on a GPU machine), featurise here and train there from the file::

    PYTHONPATH=. python problems/moses_small/train.py --max-atoms 15 --save-graphs .gpu_carry/graphs/moses15_train.safetensors
    PYTHONPATH=. python problems/moses_small/train.py --graphs .gpu_carry/graphs/moses15_train.safetensors --device auto ...

``--pace-file A --pace-peer B`` (and the mirror image in a second process) keeps two runs started together within
a few optimiser steps of each other and ends both at the same step once ``--seconds`` has passed, so models of
different cost (PARD and one-shot) compare at equal steps on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from scidiff._files import atomic_path
from scidiff.graphs import BlockDiffusion, MosesSubset, fit, load_graphs, load_model, prepare, save_graphs, save_model


class Lockstep:
    """``stop`` for :func:`~scidiff.graphs.fit` that paces two processes: each writes ``step up`` to its own file
    and reads its peer's. A run may lead by at most ``slack`` steps; once either has used ``seconds`` both are
    "up", the one behind catches up, and both stop at the same step. A peer silent for ``patience`` seconds
    (crashed, never started) is ignored from then on."""

    def __init__(self, mine: str, peer: str, seconds: float, slack: int = 20, patience: float = 60.0):
        self.mine, self.peer, self.seconds, self.slack, self.patience = Path(mine), Path(peer), seconds, slack, patience
        self.alone = False

    def _write(self, step: int, up: bool) -> None:
        with atomic_path(self.mine) as tmp:  # the peer never reads half a line
            Path(tmp).write_text(f"{step} {int(up)}")

    def _read(self) -> tuple[int, bool] | None:
        try:
            step, up = self.peer.read_text().split()
            return int(step), up == "1"
        except (FileNotFoundError, ValueError):
            return None

    def __call__(self, step: int, elapsed: float) -> bool:
        waited, up = time.perf_counter(), elapsed >= self.seconds
        while not self.alone:
            peer = self._read()
            up = up or (peer is not None and peer[1])
            self._write(step, up)
            if peer is None and up:
                return True  # the peer never started: nothing to wait for
            if peer is not None:
                if up and step < peer[0]:
                    return False  # behind at the end: catch up
                if up and peer[1]:
                    return True  # both up and level
                if not up and step < peer[0] + self.slack:
                    return False
            if time.perf_counter() - waited > self.patience:
                self.alone = True
            time.sleep(0.005)
        return up


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
    p.add_argument("--until", type=float, default=None, help="stop training at this Unix time (a wall-clock "
                   "deadline that includes start-up; combines with --seconds, whichever comes first)")
    p.add_argument("--keep", type=int, default=None, help="keep only the last KEEP step checkpoints")
    p.add_argument("--graphs", default=None, help="train from a file of save_graphs (no RDKit needed)")
    p.add_argument("--save-graphs", default=None, help="featurise the training molecules into this file and exit")
    p.add_argument("--device", default="cpu", help="cpu, cuda, or auto (cuda when available)")
    p.add_argument("--pace-file", default=None, help="lockstep with a peer run: this run's progress file")
    p.add_argument("--pace-peer", default=None, help="lockstep with a peer run: the peer's progress file")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(a.seed)
    device = torch.device("cuda" if a.device == "auto" and torch.cuda.is_available() else
                          "cpu" if a.device == "auto" else a.device)
    torch.backends.cuda.matmul.allow_tf32 = True
    train = load_graphs(a.graphs) if a.graphs else list(MosesSubset(split="train", max_heavy_atoms=a.max_atoms))
    if a.save_graphs:
        print(f"wrote {len(train)} graphs to {save_graphs(train, a.save_graphs)}")
        return {"graphs": len(train)}
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
    model.to(device)
    if a.until is not None:
        a.seconds = max(0.0, min(a.seconds or float("inf"), a.until - time.time()))
    stem = Path(a.out)
    stem.parent.mkdir(parents=True, exist_ok=True)
    recipe = {("budget_" + k if k in ("steps", "seconds") else k): v for k, v in vars(a).items()}
    recipe.update(train_molecules=len(train), molecular=True,
                  device=torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu")
    if before:  # the earlier stage's record, so the card can add the stages up
        recipe["init_record"] = {k: before[k] for k in ("steps", "graphs_seen", "seconds", "loss", "init_record")
                                 if k in before}  # nested, so every earlier stage stays on record
    t0, written = time.perf_counter(), []

    def checkpoint(step, averaged):
        info = {"steps": step, "graphs_seen": step * a.batch_size, "seconds": time.perf_counter() - t0, **recipe}
        written.append(save_model(averaged, f"{stem}_step{step}.safetensors", info))
        if a.keep is not None:
            while len(written) > a.keep:
                written.pop(0).unlink(missing_ok=True)
        print(json.dumps(info), flush=True)

    seconds, stop = a.seconds, None
    if a.pace_file or a.pace_peer:
        if not (a.pace_file and a.pace_peer and a.seconds is not None):
            raise ValueError("--pace-file needs --pace-peer and --seconds")
        seconds, stop = None, Lockstep(a.pace_file, a.pace_peer, a.seconds)
    info = fit(model, records, steps=a.steps, seconds=seconds, batch_size=a.batch_size, lr=a.lr,
               blocks_per_graph=a.blocks_per_graph if a.hops else None, seed=a.seed, warmup=a.warmup, ema=a.ema,
               callback=checkpoint, every=a.every, stop=stop)
    info.update(recipe, params=sum(p.numel() for p in model.parameters()))
    save_model(model, f"{stem}.safetensors", info)
    print(json.dumps(info), flush=True)
    return info


if __name__ == "__main__":
    main()
