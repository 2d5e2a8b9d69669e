"""Graph and molecule generation: PARD (block-wise) against the one-shot DiGress-style baseline, same budget.

Both models are the same :class:`scidiff.graphs.BlockDiffusion` (marginal transitions, the same graph
transformer and structural features); the one-shot model puts all nodes in one block (``max_hops = 0``), PARD
uses the degree-based blocks. Each is trained for the same wall-clock budget in this process, then samples are
scored:

1. MOSES molecules with at most ``--max-atoms`` heavy atoms: validity / uniqueness / novelty against the subset's
   training split, MOSES filters, FCD / SNN / Frag / Scaf against the subset's test split, IntDiv; a row of
   training molecules scored the same way calibrates the distances (FCD at this set size is far from 0 even for
   real molecules).
2. community-small (SPECTRE recipe): degree / clustering / spectral / orbit MMD^2 against the test split, with a
   train-vs-test row as the floor.

Columns ``nfe`` (denoiser evaluations per sample, excluding PARD's small block-size network) and ``samples/s``.
Ratios are against the one-shot row. Usage (repository root):

    PYTHONPATH=. python benchmarks/graphs.py [--seconds 150] [--graph-seconds 90] [--max-atoms 12] [--samples 256]
"""

from __future__ import annotations

import argparse
import time

import torch

from scidiff.graphs import BlockDiffusion, MosesSubset, SyntheticGraphs, fit, moses_available, prepare, types_to_smiles
from scidiff.graphs.datasets import data_to_graph
from scidiff.graphs.metrics import graph_mmds, molecule_metrics


def thread_probe(records, kx, ke, steps: int = 8) -> str:
    """Seconds per training step with one and with two torch threads (same model, same batches)."""
    out = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        model = BlockDiffusion.from_records(records, kx, ke, max_hops=0, T=100)
        info = fit(model, records, steps=steps, batch_size=32)
        out.append(f"{threads} thread(s): {info['seconds'] / steps:.3f} s/step")
    torch.set_num_threads(1)
    return "; ".join(out)


def train_and_sample(records, kx, ke, hops, T, steps, seconds, samples, batch_size, seed=0, keep=None):
    torch.manual_seed(seed)
    model = BlockDiffusion.from_records(records, kx, ke, max_hops=hops, T=T, ppgn=hops > 0)
    # PARD: two random blocks per graph and step (an unbiased estimate of the all-block loss) keeps the cost of a
    # step close to the one-shot model's, so the same wall time buys a comparable number of steps.
    info = fit(model, records, seconds=seconds, batch_size=batch_size, lr=5e-4, seed=seed,
               blocks_per_graph=2 if hops else None)
    t0 = time.perf_counter()
    graphs, counts = model.sample(samples, steps=steps, generator=torch.Generator().manual_seed(seed + 1))
    info.update(counts, sample_s=time.perf_counter() - t0, params=sum(p.numel() for p in model.parameters()))
    if keep is not None:
        keep[hops] = model
    return graphs, info


def fmt(v) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def molecules(args) -> dict:
    train = list(MosesSubset(split="train", max_heavy_atoms=args.max_atoms))
    test = list(MosesSubset(split="test", max_heavy_atoms=args.max_atoms))
    train_smiles, test_smiles = [d.smiles for d in train], [d.smiles for d in test]
    print(f"\n### MOSES, <= {args.max_atoms} heavy atoms: {len(train)} train / {len(test)} test molecules, "
          f"{args.samples} samples, {args.seconds:.0f} s training each\n")
    print("threads:", thread_probe(prepare(train, 0), 7, 4))
    configs = {"one-shot (DiGress-style)": (0, 100, None), "PARD (hops 3)": (3, 20, None)}
    cols = ["validity", "connected", "uniqueness", "novelty", "vun", "filters", "fcd", "snn", "frag", "scaf", "intdiv"]
    print("\n| model | steps | graphs seen | loss | nfe | blocks | samples/s | " + " | ".join(cols) + " | V.U.N / one-shot |")
    print("|---" * (len(cols) + 9) + "|")
    base, models = None, {}
    for name, (hops, T, steps) in configs.items():
        graphs, info = train_and_sample(prepare(train, hops), 7, 4, hops, T, steps, args.seconds, args.samples, 32,
                                        keep=models)
        smiles = [types_to_smiles(x, a) for x, a in graphs]
        m = molecule_metrics(smiles, train_smiles, test_smiles)
        base = base or m["vun"]
        print(f"| {name} | {info['steps']} | {info['graphs_seen']} | {info['loss']:.3f} | {info['nfe']:.1f} | "
              f"{info['blocks']:.2f} | {args.samples / info['sample_s']:.1f} | "
              + " | ".join(fmt(m.get(c, float('nan'))) for c in cols) + f" | {m['vun'] / max(base, 1e-9):.2f} |")
        print("  e.g.", ", ".join(s or "invalid" for s in smiles[:6]))
    ref = molecule_metrics(train_smiles[: args.samples], train_smiles[args.samples:], test_smiles)
    print("| training molecules (reference) | – | – | – | – | – | – | " + " | ".join(fmt(ref.get(c, float('nan'))) for c in cols) + " | – |")
    return {"model": models[0], "train": train}


def cgd(args, model, train) -> None:
    """Out-of-distribution logP: regressors see only the lower ``--cgd-quantile`` of training logP; the context set
    is all training molecules without labels. Guidance pushes logP up; we count how far samples get past the
    largest labelled value."""
    import numpy as np
    from rdkit import Chem
    from rdkit.Chem import Crippen

    from scidiff.graphs.guidance import GraphRegressor, property_guidance, train_regressor
    from scidiff.graphs.model import _pad, _target_masks

    recs = prepare(train, 0)
    logp = torch.tensor([Crippen.MolLogP(Chem.MolFromSmiles(d.smiles)) for d in train], dtype=torch.float32)
    cut = float(torch.quantile(logp, args.cgd_quantile))
    lab = [i for i in range(len(recs)) if logp[i] <= cut]
    mean, std = logp[lab].mean(), logp[lab].std()
    g = torch.Generator().manual_seed(0)

    def noisy(idx, t=None):
        x0, a0, mask = _pad([(recs[i][0], recs[i][1]) for i in idx], model.n_max)
        tgt, tgt_e = _target_masks(mask, torch.zeros(len(idx), dtype=torch.long))
        t = torch.randint(1, model.T + 1, (len(idx),), generator=g) if t is None else torch.full((len(idx),), t)
        xt, et = model.noise(x0, a0, tgt, tgt_e, t, g)
        return (xt, et, mask, t)

    def labelled():
        idx = [lab[i] for i in torch.randint(len(lab), (64,), generator=g).tolist()]
        return noisy(idx), (logp[idx] - mean) / std, 0.0

    def context():
        t = int(torch.randint(1, model.T + 1, (1,), generator=g))
        return noisy(torch.randint(len(recs), (64,), generator=g).tolist(), t), t / model.T

    print(f"\n### CGD: logP guidance out of distribution (labels only for logP <= {cut:.2f}, the "
          f"{args.cgd_quantile:.0%} quantile; {len(lab)} labelled, {len(recs)} context molecules; one-shot model above)\n")
    regs = {}
    for name, ctx in (("plain", None), ("context-guided", context)):
        torch.manual_seed(0)
        reg = GraphRegressor(7, 4, model.n_max, model.T)
        t0 = time.perf_counter()
        train_regressor(reg, labelled, ctx, steps=args.cgd_steps, lr=1e-3, lambda_s=0.01, lambda_d=10.0,
                        weight_decay=1e-2, n_train_batches=max(len(lab) // 64, 1))
        regs[name] = reg.eval()
        print(f"{name} regressor: {args.cgd_steps} steps, {time.perf_counter() - t0:.0f} s")
    print("\n| sampling | weight | validity | unique | mean logP | top-10% logP | beyond labels (logP > cut) | max logP |")
    print("|---|---|---|---|---|---|---|---|")
    runs = [("unguided", None, 0.0)] + [(n, r, w) for w in args.cgd_weights for n, r in regs.items()]
    for name, reg, w in runs:
        guide = property_guidance(reg, w) if reg is not None else None
        graphs, _ = model.sample(args.cgd_samples, generator=torch.Generator().manual_seed(7), guidance=guide)
        smiles = [types_to_smiles(x, a) for x, a in graphs]
        valid = [s for s in smiles if s is not None]
        vals = np.sort([Crippen.MolLogP(Chem.MolFromSmiles(s)) for s in valid])[::-1]
        top = vals[: max(len(vals) // 10, 1)].mean() if len(vals) else float("nan")
        print(f"| {name} | {w} | {len(valid) / len(smiles):.3f} | {len(set(valid)) / max(len(valid), 1):.3f} | "
              f"{vals.mean() if len(vals) else float('nan'):.2f} | {top:.2f} | {(vals > cut).mean() if len(vals) else 0:.3f} | "
              f"{vals.max() if len(vals) else float('nan'):.2f} |")


def community(args) -> None:
    train = list(SyntheticGraphs(name="community_small", split="train"))
    test = list(SyntheticGraphs(name="community_small", split="test"))
    ref = [data_to_graph(d) for d in test]
    print(f"\n### community-small (SPECTRE recipe): {len(train)} train / {len(test)} test graphs, "
          f"{args.graph_samples} samples, {args.graph_seconds:.0f} s training each\n")
    configs = {"one-shot (DiGress-style)": (0, 100, None), "PARD (hops 1)": (1, 12, None)}
    print("| model | steps | loss | nfe | blocks | samples/s | degree | clustering | spectral | orbit | sum / one-shot |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    base = None
    for name, (hops, T, steps) in configs.items():
        graphs, info = train_and_sample(prepare(train, hops), 1, 2, hops, T, steps, args.graph_seconds, args.graph_samples, 32)
        import networkx as nx

        gen = []
        for _, a in graphs:
            g = nx.empty_graph(a.shape[0])
            g.add_edges_from((a > 0).nonzero().tolist())
            gen.append(g)
        m = graph_mmds(gen, ref)
        total = sum(m.values())
        base = base or total
        print(f"| {name} | {info['steps']} | {info['loss']:.3f} | {info['nfe']:.1f} | {info['blocks']:.2f} | "
              f"{args.graph_samples / info['sample_s']:.1f} | " + " | ".join(f"{m[k]:.4f}" for k in ("degree", "clustering", "spectral", "orbit"))
              + f" | {total / base:.2f} |")
    m = graph_mmds([data_to_graph(d) for d in train], ref)
    print("| train vs test (floor) | – | – | – | – | – | " + " | ".join(f"{m[k]:.4f}" for k in ("degree", "clustering", "spectral", "orbit")) + " | – |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=150.0, help="training wall time per molecule model")
    p.add_argument("--graph-seconds", type=float, default=90.0, help="training wall time per community-small model")
    p.add_argument("--max-atoms", type=int, default=12)
    p.add_argument("--samples", type=int, default=256)
    p.add_argument("--graph-samples", type=int, default=64)
    p.add_argument("--cgd-quantile", type=float, default=0.6)
    p.add_argument("--cgd-steps", type=int, default=300)
    p.add_argument("--cgd-samples", type=int, default=128)
    p.add_argument("--cgd-weights", type=float, nargs="+", default=[1.0, 3.0])
    p.add_argument("--skip", choices=["molecules", "graphs", "cgd"], nargs="*", default=[])
    args = p.parse_args()
    torch.set_num_threads(1)
    if "molecules" not in args.skip:
        if moses_available():
            out = molecules(args)
            if "cgd" not in args.skip:
                cgd(args, out["model"], out["train"])
        else:
            print("MOSES data files are absent (pip install --no-deps molsets): molecule tables skipped")
    if "graphs" not in args.skip:
        community(args)


if __name__ == "__main__":
    main()
