"""Graph and molecule generation: PARD (block-wise) against the one-shot DiGress-style baseline.

Both models are :class:`scidiff.graphs.BlockDiffusion` (marginal transitions, the same graph transformer and
structural features); the one-shot model puts all nodes in one block (``max_hops = 0``), PARD uses the
degree-based blocks with PPGN edge updates. Tables:

1. MOSES molecules with at most ``--max-atoms`` heavy atoms. Models come from ``--models LABEL=PATH`` (weights
   written by ``problems/moses_small/train.py``; their steps / molecules seen / wall time are read from the
   file) or, without ``--models``, are trained here for ``--seconds`` each. Each model is sampled twice: the
   model's own distribution (unconstrained) and, in a separately labelled row, with the optional
   valence-constrained sampler (``max_valence``: bond orders beyond an atom's valence are masked at every
   reverse step). Validity / uniqueness / novelty against the subset's training split, MOSES filters, FCD /
   SNN / Frag / Scaf against its test split, IntDiv; training molecules scored the same way calibrate FCD.
2. CGD: property guidance (``--cgd-property logp | qed | qed_noalerts | logp_peak``; the last is a constructed
   test) out of distribution (regressors see labels only below
   a quantile), a sweep of guidance weights for plain regressor guidance and for the context-guided (CGD)
   regressor. Each regressor's regularisation (weight decay; CGD prior scale) is picked by Gaussian NLL on an
   out-of-distribution validation split of molecules above the cut, as the CGD paper tunes it.
3. SPECTRE-style graphs (community-small at its usual size; planar and SBM scaled down so that a dense model
   trains in a minute of CPU): degree / clustering / spectral / orbit MMD^2 against the test split, with a
   train-vs-test floor; for planar also the share of planar, connected samples.

Columns ``nfe`` (denoiser evaluations per sample, excluding PARD's small block-size network) and ``samples/s``;
ratios are against the first row. Usage (repository root):

    PYTHONPATH=. python benchmarks/graphs.py --only molecules --models one-shot=scidiff/assets/moses15.safetensors
    PYTHONPATH=. python benchmarks/graphs.py --only molecules --models PARD=outputs/m15/pard_step3750.safetensors \
        one-shot=outputs/m15/oneshot_step3750.safetensors PARD-15=outputs/m15/pard_step3750.safetensors \
        --sample-steps PARD-15=15 --valence-models PARD
    PYTHONPATH=. python benchmarks/graphs.py --only molecules --models one-shot=scidiff/assets/moses15.safetensors \
        corrected=scidiff/assets/moses15.safetensors --correctors corrected=1@30 --no-valence-rows
    PYTHONPATH=. python benchmarks/graphs.py --only cgd --cgd-model scidiff/assets/moses15.safetensors --cgd-samples 192
    PYTHONPATH=. python benchmarks/graphs.py --only cgd --cgd-property qed --cgd-model moses15 \
        --cgd-regressors outputs/cgd/qed/*.safetensors --cgd-weights 5 20
    PYTHONPATH=. python benchmarks/graphs.py --only cgd --cgd-property logp_peak --cgd-model moses15 \
        --cgd-regressors outputs/cgd/lpk/*.safetensors --cgd-weights 3 10 20 --cgd-seeds 7 8
    PYTHONPATH=. python benchmarks/graphs.py --only graphs --graph-seconds 45
"""

from __future__ import annotations

import argparse
import time

import torch

from scidiff.graphs import (MAX_VALENCE, BlockDiffusion, MosesSubset, fit, load_model, moses_available, prepare,
                            split_indices, synthetic_graphs, types_to_smiles)
from scidiff.graphs.datasets import graph_to_data
from scidiff.graphs.metrics import graph_mmds, molecule_metrics, validity_uniqueness_novelty
from scidiff.graphs.molecules import molecular_properties

MOL_COLS = ["validity", "connected", "uniqueness", "novelty", "vun", "filters", "fcd", "snn", "frag", "scaf", "intdiv"]


def fmt(v) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def train_model(records, kx, ke, hops, T, seconds, seed=0) -> tuple[BlockDiffusion, dict]:
    """Same recipe as problems/moses_small/train.py: AdamW 1e-3 after 200 warm-up steps, EMA 0.999; PARD trains
    one random block per graph and step."""
    torch.manual_seed(seed)
    model = BlockDiffusion.from_records(records, kx, ke, max_hops=hops, T=T, ppgn=hops > 0)
    info = fit(model, records, seconds=seconds, batch_size=32, lr=1e-3, warmup=200, ema=0.999, seed=seed,
               blocks_per_graph=1 if hops else None)
    return model, info


def sample(model, n, seed, **kw) -> tuple[list, dict]:
    t0 = time.perf_counter()
    graphs, counts = model.sample(n, generator=torch.Generator().manual_seed(seed), **kw)
    return graphs, {**counts, "per_s": n / (time.perf_counter() - t0)}


def molecules(args) -> None:
    train = list(MosesSubset(split="train", max_heavy_atoms=args.max_atoms))
    test = list(MosesSubset(split="test", max_heavy_atoms=args.max_atoms))
    train_smiles, test_smiles = [d.smiles for d in train], [d.smiles for d in test]
    print(f"\n### MOSES, <= {args.max_atoms} heavy atoms: {len(train)} train / {len(test)} test molecules, "
          f"{args.samples} samples per row\n")
    if args.models:
        models = []
        for spec in args.models:
            label, path = spec.split("=", 1)
            model, info = load_model(path)
            models.append((label, model, info))
    else:
        models = []
        for label, hops, T in (("one-shot (T=100)", 0, 100), ("PARD (hops 3, T=20 per block)", 3, 20)):
            model, info = train_model(prepare(train, hops), 7, 4, hops, T, args.seconds)
            models.append((label, model, info))
    steps = {k: int(v) for k, v in (spec.split("=", 1) for spec in args.sample_steps)}
    correctors = {}
    for spec in args.correctors:  # LABEL=K or LABEL=K@TMAX
        label, k = spec.split("=", 1)
        k, _, t_max = k.partition("@")
        correctors[label] = {"corrector": int(k), "corrector_t_max": int(t_max) if t_max else None}
    print("| model | sampler | steps | molecules seen | train s | nfe / sample | blocks | samples/s | "
          + " | ".join(MOL_COLS) + " | V.U.N / first |")
    print("|---" * (len(MOL_COLS) + 9) + "|")
    base = None
    for label, model, info in models:
        for sampler, kw in (("unconstrained", {}), ("valence-masked (optional)", {"max_valence": MAX_VALENCE})):
            if sampler != "unconstrained" and (args.no_valence_rows or (args.valence_models and label not in args.valence_models)):
                continue
            graphs, c = sample(model, args.samples, args.seed, steps=steps.get(label), **correctors.get(label, {}), **kw)
            smiles = [types_to_smiles(x, a) for x, a in graphs]
            m = molecule_metrics(smiles, train_smiles, test_smiles)
            base = base or m["vun"]
            corr = correctors.get(label)
            if corr:
                sampler += f", corrector {corr['corrector']}" + (f" at t <= {corr['corrector_t_max']}" if corr["corrector_t_max"] else "")
            print(f"| {label} | {sampler} | {info.get('steps', '?')} | {info.get('graphs_seen', '?')} | "
                  f"{info.get('seconds', float('nan')):.0f} | {c['nfe']:.1f} | {c['blocks']:.2f} | {c['per_s']:.2f} | "
                  + " | ".join(fmt(m.get(k, float("nan"))) for k in MOL_COLS) + f" | {m['vun'] / max(base, 1e-9):.2f} |",
                  flush=True)
            print("  e.g.", ", ".join(s or "invalid" for s in smiles[:6]), flush=True)
    ref = molecule_metrics(train_smiles[: args.samples], train_smiles[args.samples:], test_smiles)
    print("| training molecules (reference) | – | – | – | – | – | – | – | "
          + " | ".join(fmt(ref.get(k, float("nan"))) for k in MOL_COLS) + " | – |")


def cgd(args) -> None:
    """Out-of-distribution property: regressors see only the lower ``--cgd-quantile`` of the training values of
    ``--cgd-property``; the context set is all training molecules without labels. Guidance pushes the property
    up; we count how often valid samples land past the largest labelled value, and how often they do so as
    unique molecules not in the training set ("novel hits", the CGD paper's count). Regressors are trained here
    (``--cgd-steps``) or read from files written by ``problems/moses_small/cgd_regressors.py``
    (``--cgd-regressors``; the best of each kind by out-of-distribution validation NLL is used; a regressor trained
    only up to noise level ``t_max`` is its own kind, validated at those levels and guiding only there)."""
    import numpy as np
    from rdkit import Chem

    from scidiff.graphs.guidance import (GraphRegressor, cgd_batches, gaussian_nll, load_regressor,
                                         property_guidance, train_regressor)

    train = list(MosesSubset(split="train", max_heavy_atoms=args.max_atoms))
    train_smiles = [d.smiles for d in train]
    if args.cgd_model:
        model, info = load_model(args.cgd_model)
    else:
        model, info = train_model(prepare(train, 0), 7, 4, 0, 100, args.seconds)
    recs = prepare(train, 0)
    prop_name, prop = molecular_properties()[args.cgd_property]
    values = torch.tensor([prop(Chem.MolFromSmiles(d.smiles)) for d in train], dtype=torch.float32)
    cut = float(torch.quantile(values, args.cgd_quantile))
    labelled, context, val_inputs, val_y, mean, std = cgd_batches(model, recs, values, cut)
    n_lab = int((values <= cut).sum())

    print(f"\n### CGD: {prop_name} guidance out of distribution (labels only for {prop_name} <= {cut:.2f}, the "
          f"{args.cgd_quantile:.0%} quantile; {n_lab} labelled, {len(recs)} context molecules, {len(val_y)} "
          f"out-of-distribution validation molecules; one-shot model, {info.get('steps', '?')} steps; "
          f"{args.cgd_samples} samples per row, same seeds)\n")
    print("| regressor | setting | out-of-distribution validation NLL | mean prediction on it (on each "
          "regressor's label scale; standardised truth %.2f) | train s |" % float(val_y.mean()))
    print("|---|---|---|---|---|")
    default = (None, None, False)  # a kind's split: (t_max, number of labels if scarce, raw label units)
    regs, best, splits = {}, {}, {}
    validation = {default: (val_inputs, val_y)}
    if args.cgd_regressors:
        candidates = []
        for path in args.cgd_regressors:
            reg, meta = load_regressor(path)
            if abs(meta.get("cut", cut) - cut) > 1e-4:
                raise ValueError(f"{path} was trained with labels up to {meta['cut']:.4f}, this split cuts at {cut:.4f}")
            name = "CGD" if meta["setting"].startswith("cgd") else "plain guidance"
            t_max, n_labels = meta.get("t_max"), meta.get("n_labelled", n_lab)
            raw = meta.get("label_scale") == "raw"
            if t_max is not None:
                name += f" (t <= {t_max})"
            if n_labels != n_lab:  # a scarce-label split: its own kind, validated on its own labels
                name += f" ({n_labels} labels)"
            if raw:  # labels in the property's units: its own kind, validated on that scale
                name += " (raw labels)"
            key = (t_max, None if n_labels == n_lab else n_labels, raw)
            if key not in validation:
                validation[key] = cgd_batches(model, recs, values, cut, t_max=t_max, n_labelled=key[1],
                                              standardise=not raw)[2:4]
            splits[name] = key
            candidates.append((name, reg, meta["setting"], meta.get("seconds", float("nan"))))
    else:
        candidates = []
        grid = [("plain guidance", None, {"weight_decay": wd}, f"weight decay {wd:g}") for wd in args.plain_decays]
        grid += [("CGD", context, {"lambda_s": lam, "lambda_d": lam, "weight_decay": 0.0},
                  f"lambda_s = lambda_d = {lam:g}") for lam in args.cgd_lambdas]
        for name, ctx, kw, setting in grid:
            torch.manual_seed(0)
            reg = GraphRegressor(7, 4, model.n_max, model.T)
            t0 = time.perf_counter()
            train_regressor(reg, labelled, ctx, steps=args.cgd_steps, lr=1e-3, n_train_batches=max(n_lab // 64, 1), **kw)
            candidates.append((name, reg.eval(), setting, time.perf_counter() - t0))
    for name, reg, setting, secs in candidates:
        v_in, v_y = validation[splits.get(name, default)]
        with torch.no_grad():
            mu, var, _ = reg(*v_in)
            nll = float(gaussian_nll(mu, var, v_y))
        print(f"| {name} | {setting} | {nll:.3f} | {float(mu.mean()):.2f} | {secs:.0f} |", flush=True)
        if nll < best.get(name, float("inf")):
            best[name], regs[name] = nll, reg
    kinds = {"plain": "plain guidance", "cgd": "CGD"}
    regs = {k: v for k, v in regs.items() if any(k.startswith(kinds[c]) for c in args.cgd_kinds)}
    print(f"\n| sampling | weight | seed | validity | unique | mean {prop_name} | top-10% {prop_name} | valid samples beyond "
          f"labels | valid and beyond / all samples | novel hits / all | max {prop_name} | samples/s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    runs = [("unguided", None, 0.0)] if not args.cgd_skip_unguided else []
    runs += [(n, r, w) for w in args.cgd_weights for n, r in regs.items()]
    pooled = {}
    for seed in args.cgd_seeds or [args.cgd_seed]:
        for name, reg, w in runs:
            guide = property_guidance(reg, w, splits.get(name, default)[0]) if reg is not None else None
            t0 = time.perf_counter()
            graphs, _ = model.sample(args.cgd_samples, generator=torch.Generator().manual_seed(seed), guidance=guide)
            rate = args.cgd_samples / (time.perf_counter() - t0)
            smiles = [types_to_smiles(x, a) for x, a in graphs]
            valid = [s for s in smiles if s is not None]
            raw = np.array([prop(Chem.MolFromSmiles(s)) for s in valid])
            vals = np.sort(raw)[::-1]
            hits = [s for s, v in zip(valid, raw) if v > cut]  # valid and beyond the labels
            novel_hits = round(validity_uniqueness_novelty(hits, train_smiles)["vun"] * len(hits)) if hits else 0
            nan = float("nan")
            top = vals[: max(len(vals) // 10, 1)].mean() if len(vals) else nan
            beyond = int((vals > cut).sum())
            pooled.setdefault((name, w), []).append((len(smiles), len(valid), beyond, top, vals, novel_hits))
            if args.cgd_property == "logp_peak":  # where the samples sit against the constructed optimum
                from rdkit.Chem import Crippen

                from scidiff.graphs.molecules import LOGP_PEAK

                logp = np.array([Crippen.MolLogP(Chem.MolFromSmiles(s)) for s in valid])
                print(f"  logP of the valid samples: mean {logp.mean():.2f}, past the optimum {LOGP_PEAK} "
                      f"{(logp > LOGP_PEAK).mean():.3f}, top-10 % {np.sort(logp)[::-1][: max(len(logp) // 10, 1)].mean():.2f}",
                      flush=True)
            print(f"| {name} | {w} | {seed} | {len(valid) / len(smiles):.3f} | {len(set(valid)) / max(len(valid), 1):.3f} | "
                  f"{vals.mean() if len(vals) else nan:.3f} | {top:.3f} | {beyond / max(len(vals), 1):.3f} | "
                  f"{beyond / len(smiles):.3f} | {novel_hits / len(smiles):.3f} | {vals.max() if len(vals) else nan:.3f} | "
                  f"{rate:.2f} |", flush=True)
    if len(args.cgd_seeds) > 1:
        _pooled_cgd_table(pooled, prop_name)


def _pooled_cgd_table(pooled: dict, prop_name: str) -> None:
    """Rows pooled over sampling seeds: shares with their binomial standard error over all samples; the top-10 %
    mean and the maximum as the mean over seeds with the standard error of that mean."""
    import numpy as np

    print(f"\n| sampling | weight | seeds | samples | valid | valid and beyond / all (s.e.) | novel hits / all (s.e.) | "
          f"top-10% {prop_name} (s.e.) | mean {prop_name} | max {prop_name} (s.e.) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    share = lambda k, n: f"{k / n:.3f} ({np.sqrt(k / n * (1 - k / n) / n):.3f})"  # noqa: E731
    for (name, w), rows in pooled.items():
        n, n_valid, n_beyond = (sum(r[i] for r in rows) for i in range(3))
        n_novel = sum(r[5] for r in rows)
        tops, maxes = np.array([r[3] for r in rows]), np.array([r[4].max() if len(r[4]) else np.nan for r in rows])
        se = lambda a: a.std(ddof=1) / np.sqrt(len(a))  # noqa: E731
        mean = np.concatenate([r[4] for r in rows]).mean()
        print(f"| {name} | {w} | {len(rows)} | {n} | {n_valid / n:.3f} | {share(n_beyond, n)} | {share(n_novel, n)} | "
              f"{tops.mean():.3f} ({se(tops):.3f}) | {mean:.3f} | {maxes.mean():.3f} ({se(maxes):.3f}) |", flush=True)


#: SPECTRE-style sets for the MMD table: (generator keyword arguments, number of graphs, reverse steps T).
GRAPH_SETS = {
    "community_small": ({}, 100),
    "planar (24 nodes)": ({"n": 24}, 120),
    "SBM (2-3 blocks of 8-12)": ({"blocks": (2, 3), "sizes": (8, 12), "p_in": 0.5, "p_out": 0.02}, 120),
}


def spectre(args) -> None:
    import networkx as nx

    for title, (kw, count) in GRAPH_SETS.items():
        name = "sbm" if title.startswith("SBM") else title.split()[0]
        graphs = synthetic_graphs(name, count, seed=0, **kw)
        split = split_indices(len(graphs), 0)
        train = [graph_to_data(graphs[i]) for i in split["train"].tolist()]
        ref = [graphs[i] for i in split["test"].tolist()]
        print(f"\n### {title} (SPECTRE recipe): {len(train)} train / {len(ref)} test graphs, {args.graph_samples} "
              f"samples, {args.graph_seconds:.0f} s training each\n")
        cols = ["degree", "clustering", "spectral", "orbit"]
        print("| model | steps | nfe / sample | blocks | samples/s | " + " | ".join(cols) + " | sum / one-shot | planar & connected |")
        print("|---" * (len(cols) + 7) + "|")
        base = None
        for label, hops, T in (("one-shot (T=100)", 0, 100), ("PARD (hops 1, T=12 per block)", 1, 12)):
            model, info = train_model(prepare(train, hops), 1, 2, hops, T, args.graph_seconds)
            out, c = sample(model, args.graph_samples, args.seed)
            gen = []
            for _, a in out:
                g = nx.empty_graph(a.shape[0])
                g.add_edges_from((a > 0).nonzero().tolist())
                gen.append(g)
            m = graph_mmds(gen, ref)
            total = sum(m.values())
            base = base or total
            ok = "–"
            if name == "planar":
                ok = f"{sum(nx.is_connected(g) and nx.check_planarity(g)[0] for g in gen if g.number_of_nodes()) / len(gen):.2f}"
            print(f"| {label} | {info['steps']} | {c['nfe']:.1f} | {c['blocks']:.2f} | {c['per_s']:.2f} | "
                  + " | ".join(f"{m[k]:.4f}" for k in cols) + f" | {total / base:.2f} | {ok} |", flush=True)
        m = graph_mmds([graphs[i] for i in split["train"].tolist()], ref)
        print("| train vs test (floor) | – | – | – | – | " + " | ".join(f"{m[k]:.4f}" for k in cols) + " | – | – |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--only", choices=["molecules", "cgd", "graphs"], nargs="+", default=["molecules", "cgd", "graphs"])
    p.add_argument("--models", nargs="*", default=[], metavar="LABEL=PATH", help="trained molecule models to score")
    p.add_argument("--sample-steps", nargs="*", default=[], metavar="LABEL=N",
                   help="reverse steps (per block) for a model of --models (default its T): equal-denoiser-call rows")
    p.add_argument("--correctors", nargs="*", default=[], metavar="LABEL=K[@TMAX]",
                   help="forward-backward corrector moves per reverse step for a model of --models (only at t <= TMAX)")
    p.add_argument("--seconds", type=float, default=150.0, help="training wall time per molecule model (no --models)")
    p.add_argument("--graph-seconds", type=float, default=45.0, help="training wall time per SPECTRE-style model")
    p.add_argument("--max-atoms", type=int, default=15)
    p.add_argument("--samples", type=int, default=256)
    p.add_argument("--graph-samples", type=int, default=48)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--no-valence-rows", action="store_true", help="skip the valence-masked sampler rows")
    p.add_argument("--valence-models", nargs="*", default=[], metavar="LABEL", help="valence-masked rows only for these")
    p.add_argument("--cgd-model", default=None, help="one-shot weights for the CGD table (default: train one)")
    p.add_argument("--cgd-property", choices=sorted(molecular_properties()), default="logp", help="guided property")
    p.add_argument("--cgd-quantile", type=float, default=0.6)
    p.add_argument("--cgd-steps", type=int, default=300)
    p.add_argument("--cgd-samples", type=int, default=128)
    p.add_argument("--cgd-seed", type=int, default=7, help="sampling seed of every CGD-table row")
    p.add_argument("--cgd-seeds", type=int, nargs="*", default=[],
                   help="several sampling seeds (instead of --cgd-seed), with a table pooled over them")
    p.add_argument("--cgd-weights", type=float, nargs="+", default=[3.0, 9.0])
    p.add_argument("--cgd-lambdas", type=float, nargs="+", default=[0.01, 0.1, 1.0],
                   help="CGD prior scales (lambda_s = lambda_d) tried; the best on the OOD validation split is used")
    p.add_argument("--plain-decays", type=float, nargs="+", default=[0.01, 0.1],
                   help="weight decays tried for the plain regressor; the best on the OOD validation split is used")
    p.add_argument("--cgd-regressors", nargs="*", default=[],
                   help="regressor files from problems/moses_small/cgd_regressors.py instead of training here")
    p.add_argument("--cgd-kinds", nargs="+", default=["plain", "cgd"], choices=["plain", "cgd"],
                   help="which guided rows to sample (e.g. one kind per process)")
    p.add_argument("--cgd-skip-unguided", action="store_true", help="no unguided row (e.g. a second process)")
    args = p.parse_args()
    torch.set_num_threads(1)
    if {"molecules", "cgd"} & set(args.only) and not moses_available():
        print("MOSES data files are absent (pip install --no-deps molsets): molecule tables skipped")
        args.only = [o for o in args.only if o == "graphs"]
    if "molecules" in args.only:
        molecules(args)
    if "cgd" in args.only:
        cgd(args)
    if "graphs" in args.only:
        spectre(args)


if __name__ == "__main__":
    main()
