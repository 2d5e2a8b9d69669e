"""Lightning training for graph diffusion (imports pytorch_lightning; not loaded by ``import scidiff.graphs``).

:class:`GraphDataModule` turns a data set (MOSES subset or a SPECTRE-style synthetic set) into block-ordered
records; :class:`GraphDiffusionModule` trains a :class:`~scidiff.graphs.model.BlockDiffusion` on them. All
hyperparameters -- including the training-set statistics the model needs (marginals, sizes) -- are plain types,
so checkpoints load with ``weights_only=True``. :func:`run_config` runs a ``problems/<name>/config.yaml``.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from ..io import load_checkpoint
from .datasets import MosesSubset, SyntheticGraphs
from .model import BlockDiffusion, prepare
from .molecules import MOSES_ATOMS


class GraphDataModule(pl.LightningDataModule):
    """``dataset``: ``moses`` (with ``max_heavy_atoms``) or one of ``community_small``, ``planar``, ``sbm``."""

    def __init__(self, dataset: str = "community_small", max_heavy_atoms: int = 12, max_hops: int = 0,
                 batch_size: int = 32, root: str | None = None):
        super().__init__()
        if dataset != "moses" and dataset not in ("community_small", "planar", "sbm"):
            raise ValueError(f"unknown graph data set {dataset!r}; expected moses, community_small, planar or sbm")
        self.dataset, self.max_heavy_atoms, self.max_hops = dataset, max_heavy_atoms, max_hops
        self.batch_size, self.root = batch_size, root
        self.records = None

    @property
    def is_molecular(self) -> bool:
        return self.dataset == "moses"

    @property
    def types(self) -> tuple[int, int]:
        return (len(MOSES_ATOMS), 4) if self.is_molecular else (1, 2)

    def split(self, split: str) -> list:
        if self.is_molecular:
            return list(MosesSubset(self.root, split=split, max_heavy_atoms=self.max_heavy_atoms))
        return list(SyntheticGraphs(self.root, name=self.dataset, split=split))

    def setup(self, stage: str | None = None) -> None:
        if self.records is None:
            self.records = prepare(self.split("train"), self.max_hops)

    def statistics(self) -> dict:
        self.setup()
        return BlockDiffusion.statistics(self.records, *self.types)

    def train_dataloader(self):
        return DataLoader(self.records, batch_size=self.batch_size, shuffle=True, collate_fn=list, drop_last=True)


class GraphDiffusionModule(pl.LightningModule):
    """Trains ``BlockDiffusion(num_node_types, num_edge_types, **statistics, **model options)`` with AdamW."""

    def __init__(self, num_node_types: int, num_edge_types: int, statistics: dict, max_hops: int = 0, T: int = 100,
                 transition: str = "marginal", hidden: int = 64, hidden_e: int = 32, layers: int = 4, heads: int = 4,
                 ppgn: bool = False, lambda_e: float = 5.0, lr: float = 5e-4, blocks_per_graph: int | None = None,
                 molecular: bool = False):
        super().__init__()
        self.save_hyperparameters()
        self.model = BlockDiffusion(num_node_types, num_edge_types, **statistics, max_hops=max_hops, T=T,
                                    transition=transition, hidden=hidden, hidden_e=hidden_e, layers=layers, heads=heads,
                                    ppgn=ppgn, lambda_e=lambda_e)

    def training_step(self, batch, batch_idx):
        out = self.model.loss(batch, blocks_per_graph=self.hparams.blocks_per_graph)
        self.log_dict({f"train/{k}": v for k, v in out.items()}, prog_bar=True, batch_size=len(batch))
        return out["loss"]

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=self.hparams.lr)

    @classmethod
    def load(cls, path: str | Path) -> "GraphDiffusionModule":
        """Rebuild from a Lightning checkpoint with ``weights_only=True`` (no code is unpickled)."""
        ckpt = load_checkpoint(path)
        module = cls(**ckpt["hyper_parameters"])
        module.load_state_dict(ckpt["state_dict"])
        return module.eval()


def run_config(config: dict) -> dict:
    """Train a graph diffusion model from a problem config (keys ``data``, ``model``, ``trainer``, ``sample``),
    save ``<out>/model.ckpt``, write samples (SMILES + SDF for molecules) and score them."""
    from .metrics import graph_mmds, validity_uniqueness_novelty
    from .writers import graphs_from_types, write_molecules

    out_dir = Path(config.get("out", "outputs/graphs"))
    out_dir.mkdir(parents=True, exist_ok=True)
    data = GraphDataModule(**config.get("data", {}))
    data.setup()
    module = GraphDiffusionModule(*data.types, statistics=data.statistics(), max_hops=data.max_hops,
                                  molecular=data.is_molecular, **config.get("model", {}))
    trainer_kw = {"max_steps": 200, "logger": False, "enable_checkpointing": False, "enable_progress_bar": False,
                  "accelerator": "cpu", "devices": 1, **config.get("trainer", {})}
    pl.seed_everything(config.get("seed", 0), verbose=False)
    t0 = time.perf_counter()
    trainer = pl.Trainer(default_root_dir=str(out_dir), **trainer_kw)
    trainer.fit(module, data)
    train_s = time.perf_counter() - t0
    ckpt = out_dir / "model.ckpt"
    trainer.save_checkpoint(ckpt, weights_only=False)
    s = config.get("sample", {})
    t0 = time.perf_counter()
    graphs, counts = module.model.sample(s.get("n", 64), steps=s.get("steps"), generator=torch.Generator().manual_seed(s.get("seed", 0)))
    report = {"steps": trainer.global_step, "train_s": train_s, "sample_s": time.perf_counter() - t0, **counts,
              "checkpoint": str(ckpt)}
    if data.is_molecular:
        smiles = write_molecules(graphs, out_dir / "samples")
        report.update(validity_uniqueness_novelty(smiles, [d.smiles for d in data.split("train")]))
    else:
        ref = graphs_from_types(data.split("test"))
        report.update(graph_mmds([g for g in graphs_from_types(graphs)], ref, ("degree", "clustering", "spectral")))
    return report
