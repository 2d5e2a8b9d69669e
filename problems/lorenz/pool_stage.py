"""Continue the Lorenz-63 prior on millions of attractor windows simulated on the accelerator, with tail weighting.

The CPU stages (``finetune.py``) saw 64 000-192 000 windows per stage, of which 1 % lie beyond the 1 % level of
``max_t x``. Here a pool of millions of windows is simulated at once (vectorised RK4 over hundreds of thousands of
chains, :func:`~scidiff.dynamics.simulate` on ``device``): each chain is burnt in for the system's 3 000 RK4 steps
(30 time units) and then run on, and its saved trajectory is cut into windows ``--stride`` saved steps apart
(successive windows 1.6 time units apart, longer than the attractor's Lyapunov time of about 1.1). Batches are drawn
from the pool by the stratified proposal of :func:`~scidiff.data.weighted.stratified_proposal` with the loss weights
``p / q`` (the minimiser stays the unconditional law; Owen 2013, ch. 9), on a cosine learning rate over the wall-time
budget (:func:`~scidiff.priors.warmup_cosine`).

Everything happens on one device in a plain loop (no data loader: the pool lives on the device). The EMA weights are
exported every ``--save-every`` seconds and at the end. Before and after training the script measures, on the same
latent seeds, the prior's own ``P(max_t x > t)`` at the pool's 50 / 90 / 99 / 99.9 % levels (Heun, 24 steps) and the
EDM loss of a held-out set of plain windows (chains not in the training pool), overall and beyond the 99 % level.

Run (all of it, simulation included, within ``--seconds``; ``cuda`` when available, else the CPU at a small size)::

    python problems/lorenz/pool_stage.py --init scidiff/assets/lorenz63.safetensors --seconds 400 --out OUT
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
from torch import Tensor

from finetune import build, max_x
from scidiff.data.weighted import stratified_proposal
from scidiff.diffusion import edm_loss
from scidiff.dynamics import simulate
from scidiff.priors import warmup_cosine

LEVELS = (0.5, 0.9, 0.99, 0.999)


def attractor_windows(chains: int, saved: int, res: int, stride: int, seed: int, device, chunk: int = 131072) -> Tensor:
    """``(N, 3, res)`` float32 Lorenz-63 windows cut every ``stride`` saved steps from ``chains`` burnt-in chains.

    Chains are integrated ``chunk`` at a time (float64) to bound the memory of the saved trajectories; the windows
    of one chain are consecutive in the result, so a split by index separates chains.
    """
    if saved < res:
        raise ValueError(f"--saved ({saved}) must be at least the window length {res}")
    per_chain = (saved - res) // stride + 1
    pool = torch.empty(chains * per_chain, 3, res, device=device)
    g = torch.Generator().manual_seed(seed)
    for start in range(0, chains, chunk):
        traj = simulate("lorenz63", min(chunk, chains - start), saved, generator=g, device=device)  # (B, L, 3)
        windows = traj.float().unfold(1, res, stride).reshape(-1, 3, res)  # (B * per_chain, 3, res), chain-major
        pool[start * per_chain:start * per_chain + len(windows)] = windows
        del traj, windows
    return pool


@torch.no_grad()
def held_out_loss(prior, x: Tensor, tail: Tensor, seed: int, batch: int = 8192) -> dict:
    """EDM loss of the EMA denoiser on normalised windows ``x`` with fixed noise, overall and on ``tail`` (a mask)."""
    g = torch.Generator(device=x.device).manual_seed(seed)
    losses = torch.cat([
        edm_loss(prior.denoiser, x[i:i + batch], sigma_data=prior.hparams.sigma_data, p_mean=prior.hparams.p_mean,
                 p_std=prior.hparams.p_std, generator=g)
        for i in range(0, len(x), batch)
    ])
    return {"val_loss": float(losses.mean()), "val_loss_tail99": float(losses[tail].mean()), "n_tail99": int(tail.sum())}


@torch.no_grad()
def event_probabilities(prior, thresholds: Tensor, n: int, steps: int, seed: int, batch: int = 8192) -> list[float]:
    """The prior's ``P(max_t x > t)`` for each threshold, from ``n`` Heun samples with fixed latent seeds."""
    hits = torch.zeros(len(thresholds), dtype=torch.float64)
    for i in range(0, n, batch):
        g = torch.Generator(device=prior.device).manual_seed(seed + i)
        m = max_x(prior.sample(min(batch, n - i), steps, generator=g, progress=False)).double().cpu()
        hits += (m[:, None] > thresholds[None]).sum(0)
    return (hits / n).tolist()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--init", default="scidiff/assets/lorenz63.safetensors")
    p.add_argument("--out", required=True)
    p.add_argument("--seconds", type=float, default=400.0, help="wall-time budget of the whole run")
    p.add_argument("--chains", type=int, default=None, help="default 524 288 on an accelerator, 512 on the CPU")
    p.add_argument("--saved", type=int, default=512, help="saved steps per chain after the burn-in")
    p.add_argument("--stride", type=int, default=32)
    p.add_argument("--data-seed", type=int, default=6_000_000)
    p.add_argument("--val-chains", type=float, default=0.02, help="share of chains held out")
    p.add_argument("--batch-size", type=int, default=None, help="default 2 048 on an accelerator, 64 on the CPU")
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--warmup", type=int, default=300)
    p.add_argument("--ema-decay", type=float, default=0.999)
    p.add_argument("--quantiles", type=float, nargs="+", default=[0.9, 0.99, 0.999])
    p.add_argument("--shares", type=float, nargs="+", default=[0.75, 0.15, 0.07, 0.03])
    p.add_argument("--pe-samples", type=int, default=None, help="default 65 536 on an accelerator, 64 on the CPU")
    p.add_argument("--save-every", type=float, default=60.0)
    p.add_argument("--min-steps", type=int, default=0, help="optimiser steps taken even past the budget")
    p.add_argument("--margin", type=float, default=10.0, help="seconds kept for the final export beyond the evaluation")
    a = p.parse_args(argv)

    t0 = time.monotonic()
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = True  # fixed shapes: pick the fastest convolution once
    torch.set_num_threads(min(4, torch.get_num_threads()))
    chains = a.chains or (524288 if cuda else 512)
    batch = a.batch_size or (2048 if cuda else 64)
    pe_n = a.pe_samples or (65536 if cuda else 64)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    log = (out / "train.log").open("a")

    def say(msg: str) -> None:
        line = f"[{time.monotonic() - t0:7.1f}s] {msg}"
        print(line, flush=True)
        log.write(line + "\n")
        log.flush()

    torch.manual_seed(0)
    prior = build(a.init, a.lr, a.warmup, a.ema_decay).to(device)
    say(f"device {device} ({torch.cuda.get_device_name() if cuda else 'cpu'}), chains {chains}, batch {batch}")

    # -- the pool: training chains first, held-out chains last
    pool = attractor_windows(chains, a.saved, prior.shape[-1], a.stride, a.data_seed, device)
    per_chain = pool.shape[0] // chains
    n_val = max(1, int(chains * a.val_chains)) * per_chain
    train, val = pool[:-n_val], pool[-n_val:]
    stat = max_x(train)
    thresholds = torch.quantile(stat.double().cpu(), torch.tensor(LEVELS, dtype=torch.float64))
    q, w = stratified_proposal(stat.cpu(), a.quantiles, a.shares)
    q, w = q.to(device), w.float().to(device)
    val_tail = max_x(val) > thresholds[LEVELS.index(0.99)].item()
    # in the units the weights were trained in, in place (the pool is the largest tensor of the run)
    pool.sub_(prior.norm_mean.view(1, -1, 1)).div_(prior.norm_std.view(1, -1, 1))
    sim_s = time.monotonic() - t0
    say(f"pool: {len(train)} training windows, {len(val)} held-out ({per_chain} per chain), {sim_s:.1f}s; "
        f"max_t x levels {dict(zip(LEVELS, [round(v, 3) for v in thresholds.tolist()]))}")

    # -- before: the initial prior on the same noise and latent seeds as after
    t_eval = time.monotonic()
    before = held_out_loss(prior, val, val_tail, seed=1) | {
        "p_event": event_probabilities(prior, thresholds, pe_n, 24, seed=10**7)}
    eval_s = time.monotonic() - t_eval
    say(f"before: {json.dumps(before)} ({eval_s:.1f}s)")

    # -- training: stops so that the final evaluation and export fit in the budget
    opt = torch.optim.AdamW(prior.precond.parameters(), lr=a.lr, weight_decay=prior.hparams.weight_decay)
    params, ema = list(prior.precond.parameters()), list(prior.ema.parameters())
    g = torch.Generator(device=device).manual_seed(a.data_seed + 1)
    t_train, stop = time.monotonic(), t0 + a.seconds - 1.3 * eval_s - a.margin
    budget = max(1.0, stop - t_train)
    step, run_loss, last_save, history = 0, torch.zeros((), device=device), time.monotonic(), []
    prior.train()
    while step < a.min_steps or time.monotonic() < stop:
        lr = a.lr * warmup_cosine(step, a.warmup, 10**9, progress=(time.monotonic() - t_train) / budget)
        for group in opt.param_groups:
            group["lr"] = lr
        idx = torch.multinomial(q, batch, replacement=True, generator=g)
        loss = prior._loss((train[idx], w[idx]), generator=g)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            torch._foreach_lerp_(ema, params, 1 - a.ema_decay)
        run_loss += loss.detach()
        step += 1
        if step % 500 == 0:
            history.append({"step": step, "loss": float(run_loss) / 500, "lr": lr, "t": round(time.monotonic() - t0, 1)})
            run_loss.zero_()
            say(f"step {step} loss {history[-1]['loss']:.4f} lr {lr:.2e}")
        if time.monotonic() - last_save > a.save_every:
            prior.export(out / "lorenz63.safetensors")
            last_save = time.monotonic()
    train_s = time.monotonic() - t_train
    prior.eval()
    prior.export(out / "lorenz63.safetensors")
    after = held_out_loss(prior, val, val_tail, seed=1) | {
        "p_event": event_probabilities(prior, thresholds, pe_n, 24, seed=10**7)}
    say(f"after: {json.dumps(after)}")
    record = {
        "device": torch.cuda.get_device_name() if cuda else "cpu", "steps": step, "batch_size": batch,
        "windows_seen": step * batch, "training_windows": len(train), "held_out_windows": len(val),
        "simulation_s": round(sim_s, 1), "training_s": round(train_s, 1), "wall_s": round(time.monotonic() - t0, 1),
        "final_loss": history[-1]["loss"] if history else float(run_loss) / max(step, 1),
        "levels": dict(zip(LEVELS, thresholds.tolist())), "pe_samples": pe_n, "before": before, "after": after,
        "ratio_after_over_before": [x / y if y else math.nan for x, y in zip(after["p_event"], before["p_event"])],
        "history": history, "args": vars(a),
    }
    (out / "run.json").write_text(json.dumps(record, indent=2))
    say(f"done: {step} steps, {step * batch} windows seen, {record['wall_s']}s")


if __name__ == "__main__":
    main()
