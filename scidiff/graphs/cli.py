"""``scidiff graphs -c problems/<name>/config.yaml`` (train, sample, score) and
``scidiff sample --graphs MODEL --n 64 -o samples`` (SMILES + SDF for molecules, graph6 for graphs). ``MODEL`` is
a Lightning checkpoint written by ``scidiff graphs``, a ``.safetensors`` file written by
:func:`scidiff.graphs.save_model`, or the name of a shipped model (``moses15``, ``moses12``, ``moses15_pard``:
``scidiff/assets/<name>.safetensors``)."""

from __future__ import annotations

import argparse
from pathlib import Path


def train_main(argv: list[str]) -> dict:
    from .._config import load_config
    from .lightning import run_config

    p = argparse.ArgumentParser(prog="scidiff graphs", description="Train, sample and score a graph diffusion problem.")
    p.add_argument("-c", "--config", required=True, help="a problems/*/config.yaml with data/model/trainer/sample")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override an entry (YAML value)")
    a = p.parse_args(argv)
    report = run_config(load_config(a.config, a.set))
    for k, v in report.items():
        print(f"{k}: {v:.4g}" if isinstance(v, float) else f"{k}: {v}")
    return report


def load_graph_model(spec: str):
    """``(BlockDiffusion, molecular)`` from a Lightning checkpoint, a safetensors file or a shipped model name."""
    from .model import load_model

    if not (spec.endswith(".ckpt") or (Path(spec).is_file() and not spec.endswith(".safetensors"))):
        model, info = load_model(spec)
        return model, bool(info.get("molecular", model.kx > 1))
    from .lightning import GraphDiffusionModule

    module = GraphDiffusionModule.load(spec)
    return module.model, module.hparams.molecular


def sample_main(argv: list[str]) -> list:
    import networkx as nx
    import torch

    from .._files import atomic_path
    from ..diffusion import seeded_generators
    from .molecules import MAX_VALENCE
    from .writers import graphs_from_types, write_molecules

    p = argparse.ArgumentParser(prog="scidiff sample --graphs", description="Sample a trained graph diffusion model.")
    p.add_argument("--graphs", required=True, help="a checkpoint written by `scidiff graphs`, a .safetensors model "
                   "or a shipped model name (moses15, moses12, moses15_pard)")
    p.add_argument("--n", type=int, default=64)
    p.add_argument("--steps", type=int, default=None, help="reverse steps per block (default: the model's T)")
    p.add_argument("--seed", type=int, default=0, help="sample i uses seed + i, whatever the batch size")
    p.add_argument("--valence-mask", action="store_true", help="molecules: the optional valence-constrained sampler "
                   "(bond orders beyond an atom's valence are masked at every step); off = the model's own distribution")
    p.add_argument("--corrector", type=int, default=0, help="forward-backward corrector moves per reverse step "
                   "(re-noise z_s to z_t, denoise again; one more denoiser call each)")
    p.add_argument("--corrector-t-max", type=int, default=None, help="corrector only at steps from t <= this")
    p.add_argument("-o", "--out", default="samples", help="output stem: writes STEM.smi + STEM.sdf or STEM.g6")
    a = p.parse_args(argv)
    model, molecular = load_graph_model(a.graphs)
    if a.valence_mask and not molecular:
        raise ValueError("--valence-mask needs a molecule model (atom and bond types)")
    with torch.no_grad():
        graphs, _ = model.sample(a.n, steps=a.steps, generator=seeded_generators(range(a.seed, a.seed + a.n)),
                                 max_valence=MAX_VALENCE if a.valence_mask else None, corrector=a.corrector,
                                 corrector_t_max=a.corrector_t_max)
    stem = Path(a.out)
    if molecular:
        smiles = write_molecules(graphs, stem)
        print(f"wrote {a.n} samples ({sum(s is not None for s in smiles)} valid) to {stem.with_suffix('.smi')} and .sdf")
        return smiles
    with atomic_path(stem.with_suffix(".g6")) as tmp, open(tmp, "wb") as f:
        for g in graphs_from_types(graphs):
            f.write(nx.to_graph6_bytes(g, header=False))
    print(f"wrote {a.n} graphs to {stem.with_suffix('.g6')}")
    return graphs
