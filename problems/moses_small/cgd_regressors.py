"""Train guidance regressors for a property of the MOSES subset out of distribution, plain and context-guided (CGD).

The out-of-distribution split of the CGD paper (Klarner et al., ICML 2024, Sec. 5): labels only for the training
molecules at or below the ``--quantile`` of the property; the context set is every training molecule, unlabelled.
Every regressor trains on noisy graphs at all noise levels of the denoiser (``--model``), as guidance queries it
along the whole reverse process. Each setting gets an equal share of ``--seconds``; for each we report the Gaussian
NLL on 256 training molecules above the cut (the paper picks the regularisation strength on such a split) and the
R^2 on the held-out test molecules at several noise levels, and write ``OUT/<name>.safetensors``::

    PYTHONPATH=. python problems/moses_small/cgd_regressors.py --property qed --seconds 1080 --out outputs/cgd/qed

``--property qed_noalerts`` is QED with its structural-alert term weighted 0 (see :func:`scidiff.graphs.molecules.qed_without_alerts`);
``--property logp_peak`` is the constructed test :func:`scidiff.graphs.molecules.logp_peak`.
``--lambda-s A B .. --lambda-d C D ..`` searches the two CGD scales separately, as the paper does (pairs with
lambda_d / lambda_s below 1e-3 skipped). ``--t-max N`` trains on noise levels t <= N only. ``--n-labelled N``
labels only N molecules drawn at random below the cut (a scarce-label split, where the unlabelled context
should matter most); the rest of the training set stays unlabelled context. ``--raw-labels`` keeps the labels' units (QED-type
targets lie in [0, 1] as the paper's docking objective does, so its variance target tau = 1 and its lambda grid
mean what they mean there).
``--evaluate FILES --bins-by logp`` prints saved regressors' mean predictions by bins of another property, and
with ``--gradient-norms`` the norms of their guidance gradients by those bins and by noise level (``--levels``).
``benchmarks/graphs.py --only cgd --cgd-regressors OUT/plain-*.safetensors OUT/cgd-*.safetensors`` then samples
with the best of each kind.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from scidiff.graphs import MosesSubset, load_model, prepare
from scidiff.graphs.guidance import (GraphRegressor, cgd_batches, cgd_scale_grid, gaussian_nll, labelled_indices,
                                     noisy_inputs, r_squared_by_noise, save_regressor, train_regressor)
from scidiff.graphs.molecules import molecular_properties


def property_values(data, name: str) -> torch.Tensor:
    from rdkit import Chem

    prop = molecular_properties()[name][1]
    return torch.tensor([prop(Chem.MolFromSmiles(d.smiles)) for d in data], dtype=torch.float32)


def descriptor_ceiling(records, values, test_records, test_values, cut: float) -> dict[str, float]:
    """How much of the property the :func:`~scidiff.graphs.guidance.descriptors` of clean molecules carry: least
    squares (ridge 1e-3) on the descriptors, and on them with all pairwise products, fitted on the labelled
    training molecules; R^2 on the held-out test molecules inside the labels and in all."""
    import torch.nn.functional as F

    from scidiff.graphs.guidance import descriptors
    from scidiff.graphs.model import _pad

    def design(recs, quadratic):
        x, a, m = _pad([(r[0], r[1]) for r in recs], 15)
        d = descriptors(F.one_hot(x, 7).double(), F.one_hot(a, 4).double(), m)
        if quadratic:
            i, j = torch.triu_indices(d.shape[1], d.shape[1])
            d = torch.cat([d, d[:, i] * d[:, j]], 1)
        return torch.cat([torch.ones(len(d), 1, dtype=d.dtype), d], 1)

    lab, inside = values <= cut, test_values <= cut
    out = {}
    for name, quadratic in (("linear", False), ("quadratic", True)):
        z, zt = design(records, quadratic)[lab], design(test_records, quadratic)
        w = torch.linalg.solve(z.T @ z + 1e-3 * torch.eye(z.shape[1], dtype=z.dtype), z.T @ values[lab].double())
        pred, y = zt @ w, test_values.double()
        for split, sel in (("inside", inside), ("all", torch.ones_like(inside))):
            out[f"{name} {split}"] = float(1 - ((pred[sel] - y[sel]) ** 2).sum() / ((y[sel] - y[sel].mean()) ** 2).sum())
    return out


def predictions_by_bin(paths, records, values, by, edges, n_max: int) -> None:
    """For each saved regressor: its mean prediction (property units) at t = 1 on the clean ``records``, in bins of
    the property ``by`` (e.g. logP for ``logp_peak``), beside the true mean ``values`` there. Shows whether a
    regressor fitted below the cut extrapolates past it, and which way."""
    from scidiff.graphs.guidance import load_regressor
    from scidiff.graphs.model import _pad

    x0, a0, mask = _pad([(r[0], r[1]) for r in records], n_max)
    t = torch.ones(len(records), dtype=torch.long)
    cells = [(lo, hi, (by > lo) & (by <= hi)) for lo, hi in zip(edges[:-1], edges[1:])]
    print("| | " + " | ".join(f"({lo:g}, {hi:g}]" for lo, hi, _ in cells) + " |")
    print("|---" * (len(cells) + 1) + "|")
    print("| molecules | " + " | ".join(str(int(sel.sum())) for *_, sel in cells) + " |")
    print("| true mean | " + " | ".join(f"{float(values[sel].mean()):.2f}" for *_, sel in cells) + " |")
    for path in paths:
        reg, info = load_regressor(path)
        with torch.no_grad():
            pred = reg(x0, a0, mask, t)[0] * info["label_std"] + info["label_mean"]
        print(f"| {info.get('setting', path)} | " + " | ".join(f"{float(pred[sel].mean()):.2f}" for *_, sel in cells) + " |")


def gradient_norms_by_bin(paths, model, records, by, edges, levels, n: int = 600) -> None:
    """For each saved regressor and noise level: the mean norm of its guidance gradient (weight 1, over atom and bond
    classes) on ``n`` random training molecules noised to that level, in bins of the property ``by``. Shows whether
    a regularised regressor guides less off the labelled data than on it, or less everywhere."""
    from scidiff.graphs.guidance import load_regressor, one_block_batch, property_guidance

    idx = torch.randperm(len(records), generator=torch.Generator().manual_seed(0))[:n].tolist()
    x0, a0, mask, tgt, tgt_e = one_block_batch(model, records, idx)
    cells = [(lo, hi, (by[idx] > lo) & (by[idx] <= hi)) for lo, hi in zip(edges[:-1], edges[1:])]
    print("| regressor | t | " + " | ".join(f"({lo:g}, {hi:g}]: {int(sel.sum())}" for lo, hi, sel in cells) + " |")
    print("|---" * (len(cells) + 2) + "|")
    regs = [load_regressor(p) for p in paths]
    for level in levels:
        t = torch.full((len(idx),), int(level))
        xt, et = model.noise(x0, a0, tgt, tgt_e, t, torch.Generator().manual_seed(int(level)))
        for reg, info in regs:
            gx, ge = property_guidance(reg, 1.0)(xt, et, mask, tgt, tgt_e, t)
            norm = (gx.pow(2).sum((1, 2)) + ge.pow(2).sum((1, 2, 3))).sqrt()
            print(f"| {info.get('setting')} | {level} | " + " | ".join(f"{float(norm[sel].mean()):.3f}" for *_, sel in cells)
                  + " |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--property", choices=sorted(molecular_properties()), default="qed")
    p.add_argument("--model", default="moses15", help="denoiser whose forward process noises the inputs")
    p.add_argument("--max-atoms", type=int, default=15)
    p.add_argument("--quantile", type=float, default=0.6)
    p.add_argument("--seconds", type=float, default=1080, help="wall-clock budget shared by all settings")
    p.add_argument("--steps", type=int, default=100_000, help="step cap per setting")
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--no-descriptors", action="store_true", help="the transformer alone (as before)")
    p.add_argument("--quadratic", action="store_true", help="the descriptors' pairwise products into the head too")
    p.add_argument("--no-transformer", action="store_true", help="an MLP on the descriptors and t alone")
    p.add_argument("--hidden-head", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--schedule", choices=["constant", "cosine"], default="constant")
    p.add_argument("--plain-decays", type=float, nargs="*", default=[0.01])
    p.add_argument("--cgd-lambdas", type=float, nargs="*", default=[0.01, 0.1], help="lambda_s = lambda_d settings")
    p.add_argument("--lambda-s", type=float, nargs="*", default=[],
                   help="with --lambda-d: the two CGD scales searched separately (all pairs with lambda_d / lambda_s >= 1e-3)")
    p.add_argument("--lambda-d", type=float, nargs="*", default=[])
    p.add_argument("--t-max", type=int, default=None,
                   help="train (and validate) only on noise levels t <= T_MAX; guidance with it is off above")
    p.add_argument("--unlabelled-context", action="store_true",
                   help="CGD's context set = the training molecules without labels only (default: all of them)")
    p.add_argument("--raw-labels", action="store_true",
                   help="centre the labels but keep their units (the paper's scale for [0, 1] targets); default: standardise")
    p.add_argument("--n-labelled", type=int, default=None,
                   help="labels for only this many molecules at or below the cut, drawn at random (a scarce-label split)")
    p.add_argument("--levels", type=int, nargs="+", default=[1, 25, 50, 75, 100])
    p.add_argument("--ceiling-only", action="store_true", help="only the least-squares R^2 of the clean descriptors")
    p.add_argument("--out", default=None)
    p.add_argument("--evaluate", nargs="+", default=None, metavar="FILE",
                   help="no training: mean predictions of saved regressors by bins of --bins-by on the training set")
    p.add_argument("--gradient-norms", action="store_true",
                   help="with --evaluate: guidance-gradient norms by bins of --bins-by at the noise levels --levels")
    p.add_argument("--bins-by", choices=sorted(molecular_properties()), default="logp",
                   help="property whose bins --evaluate uses")
    p.add_argument("--bin-edges", type=float, nargs="+", default=[-9, 1.5, 2.5, 2.78, 3.2, 3.5, 3.8, 9])
    args = p.parse_args()

    model, _ = load_model(args.model)
    train = list(MosesSubset(split="train", max_heavy_atoms=args.max_atoms))
    test = list(MosesSubset(split="test", max_heavy_atoms=args.max_atoms))
    recs, test_recs = prepare(train, 0), prepare(test, 0)
    values, test_values = property_values(train, args.property), property_values(test, args.property)
    cut = float(torch.quantile(values, args.quantile))
    labelled, context, val_inputs, val_y, mean, std = cgd_batches(model, recs, values, cut, t_max=args.t_max,
                                                                  unlabelled_context=args.unlabelled_context,
                                                                  n_labelled=args.n_labelled,
                                                                  standardise=not args.raw_labels)
    n_lab = len(labelled_indices(values, cut, args.n_labelled))
    inside = (test_values <= cut).nonzero().flatten().tolist()
    beyond = (test_values > cut).nonzero().flatten().tolist()
    if args.evaluate and args.gradient_norms:
        gradient_norms_by_bin(args.evaluate, model, recs, property_values(train, args.bins_by), args.bin_edges, args.levels)
        return
    if args.evaluate:
        predictions_by_bin(args.evaluate, recs, values, property_values(train, args.bins_by), args.bin_edges,
                           model.n_max)
        return
    if args.ceiling_only:
        print("R^2 of least squares on clean descriptors:", {k: round(v, 3) for k, v in
              descriptor_ceiling(recs, values, test_recs, test_values, cut).items()})
        from rdkit import Chem
        from rdkit.Chem import QED

        alerts = torch.tensor([float(QED.properties(Chem.MolFromSmiles(d.smiles)).ALERTS) for d in train])
        lab_mask = values <= cut
        print(f"QED structural alerts: present in {float((alerts[lab_mask] > 0).float().mean()):.2f} of the labelled and "
              f"{float((alerts[~lab_mask] > 0).float().mean()):.2f} of the other training molecules; correlation of the "
              f"alert count with the labels {float(torch.corrcoef(torch.stack([alerts[lab_mask], values[lab_mask]]))[0, 1]):.2f}")
        return
    if args.out is None:
        p.error("--out is required unless --ceiling-only")
    grid = [(f"plain-wd{wd:g}", None, {"weight_decay": wd}) for wd in args.plain_decays]
    grid += [(f"cgd-l{lam:g}", context, {"lambda_s": lam, "lambda_d": lam}) for lam in args.cgd_lambdas]
    if bool(args.lambda_s) != bool(args.lambda_d):
        p.error("--lambda-s and --lambda-d go together")
    grid += [(f"cgd-s{ls:g}-d{ld:g}", context, {"lambda_s": ls, "lambda_d": ld})
             for ls, ld in cgd_scale_grid(args.lambda_s, args.lambda_d) if ls != ld or ls not in args.cgd_lambdas]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"{args.property}: labels for {n_lab} of {len(recs)} training molecules (<= {cut:.3f}); held-out test "
          f"{len(inside)} inside / {len(beyond)} beyond; {len(grid)} settings, {args.seconds / len(grid):.0f} s each",
          flush=True)
    levels = " | ".join(f"R2 t={t}" for t in args.levels)
    print(f"\n| regressor | steps | s | final loss | OOD val NLL | mean prediction OOD val (truth {float(val_y.mean()):.2f}) | "
          f"held-out inside: {levels} | held-out all: {levels} | corr beyond, t=1 |")
    print("|---" * (7 + 2 * len(args.levels)) + "|")
    summary = {}
    for name, ctx, kw in grid:
        torch.manual_seed(0)
        reg = GraphRegressor(7, 4, model.n_max, model.T, hidden=args.hidden, hidden_e=args.hidden // 2,
                             layers=args.layers, descriptors=not args.no_descriptors, hidden_head=args.hidden_head,
                             quadratic=args.quadratic, transformer=not args.no_transformer)
        t0 = time.perf_counter()
        hist = train_regressor(reg, labelled, ctx, steps=args.steps, lr=args.lr, n_train_batches=max(n_lab // 64, 1),
                               seconds=args.seconds / len(grid), schedule=args.schedule, **kw)
        secs = time.perf_counter() - t0
        reg.eval()
        ev = torch.Generator().manual_seed(3)
        scale = lambda v: (v - mean) / std  # noqa: E731
        with torch.no_grad():
            mu, var, _ = reg(*val_inputs)
            nll = float(gaussian_nll(mu, var, val_y))
            r2_in = r_squared_by_noise(reg, model, [test_recs[i] for i in inside], scale(test_values[inside]), args.levels, ev)
            r2_all = r_squared_by_noise(reg, model, test_recs, scale(test_values), args.levels, ev)
            xb = noisy_inputs(model, [test_recs[i] for i in beyond], range(len(beyond)), ev)
            xb = (*xb[:3], torch.ones_like(xb[3]))  # clean graphs
            mb = reg(*xb)[0]
            corr = float(torch.corrcoef(torch.stack([mb, test_values[beyond]]))[0, 1])
        final = sum(hist[-100:]) / max(len(hist[-100:]), 1)
        info = {"property": args.property, "cut": cut, "label_mean": float(mean), "label_std": float(std),
                "steps": len(hist), "seconds": secs, "final_loss": final, "ood_val_nll": nll,
                "ood_val_mean_prediction": float(mu.mean()), "r2_inside": r2_in, "r2_all": r2_all,
                "corr_beyond": corr, "setting": name, "t_max": args.t_max, "n_labelled": n_lab,
                "label_scale": "raw" if args.raw_labels else "standardised",
                "context": "unlabelled" if args.unlabelled_context else "all", "command": "python problems/moses_small/cgd_regressors.py "
                + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items())}
        save_regressor(reg, out / f"{name}.safetensors", info)
        summary[name] = info
        print(f"| {name} | {len(hist)} | {secs:.0f} | {final:.3f} | {nll:.3f} | {float(mu.mean()):.2f} | "
              + " | ".join(f"{v:.3f}" for v in r2_in.values()) + " | " + " | ".join(f"{v:.3f}" for v in r2_all.values())
              + f" | {corr:.3f} |", flush=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
