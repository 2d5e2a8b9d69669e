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


def thread_probe(records, kx, ke, steps: int = 15) -> str:
    """Seconds per training step with one and with two torch threads (same model, same batches)."""
    out = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        model = BlockDiffusion.from_records(records, kx, ke, max_hops=0, T=100)
        info = fit(model, records, steps=steps, batch_size=32)
        out.append(f"{threads} thread(s): {info['seconds'] / steps:.3f} s/step")
    torch.set_num_threads(1)
    return "; ".join(out)


def train_and_sample(records, kx, ke, hops, T, steps, seconds, samples, batch_size, seed=0):
    torch.manual_seed(seed)
    model = BlockDiffusion.from_records(records, kx, ke, max_hops=hops, T=T, ppgn=hops > 0)
    # PARD: two random blocks per graph and step (an unbiased estimate of the all-block loss) keeps the cost of a
    # step close to the one-shot model's, so the same wall time buys a comparable number of steps.
    info = fit(model, records, seconds=seconds, batch_size=batch_size, lr=5e-4, seed=seed,
               blocks_per_graph=2 if hops else None)
    t0 = time.perf_counter()
    graphs, counts = model.sample(samples, steps=steps, generator=torch.Generator().manual_seed(seed + 1))
    info.update(counts, sample_s=time.perf_counter() - t0, params=sum(p.numel() for p in model.parameters()))
    return graphs, info


def fmt(v) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def molecules(args) -> None:
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
    base = None
    for name, (hops, T, steps) in configs.items():
        graphs, info = train_and_sample(prepare(train, hops), 7, 4, hops, T, steps, args.seconds, args.samples, 32)
        smiles = [types_to_smiles(x, a) for x, a in graphs]
        m = molecule_metrics(smiles, train_smiles, test_smiles)
        base = base or m["vun"]
        print(f"| {name} | {info['steps']} | {info['graphs_seen']} | {info['loss']:.3f} | {info['nfe']:.1f} | "
              f"{info['blocks']:.2f} | {args.samples / info['sample_s']:.1f} | "
              + " | ".join(fmt(m.get(c, float('nan'))) for c in cols) + f" | {m['vun'] / max(base, 1e-9):.2f} |")
        print("  e.g.", ", ".join(s or "invalid" for s in smiles[:6]))
    ref = molecule_metrics(train_smiles[: args.samples], train_smiles[args.samples:], test_smiles)
    print(f"| training molecules (reference) | – | – | – | – | – | – | " + " | ".join(fmt(ref.get(c, float('nan'))) for c in cols) + " | – |")


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
    p.add_argument("--skip", choices=["molecules", "graphs"], default=None)
    args = p.parse_args()
    torch.set_num_threads(1)
    if args.skip != "molecules":
        if moses_available():
            molecules(args)
        else:
            print("MOSES data files are absent (pip install --no-deps molsets): molecule table skipped")
    if args.skip != "graphs":
        community(args)


if __name__ == "__main__":
    main()
