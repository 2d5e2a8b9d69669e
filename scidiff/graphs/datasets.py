"""Graph and molecule data sets: the MOSES molecules shipped in the ``molsets`` wheel, SPECTRE-style synthetic
graphs made with networkx, and PyG ``InMemoryDataset`` wrappers with processed caches.

MOSES (Polykovskiy et al., Front. Pharmacol. 2020) ships its splits as ``moses/dataset/data/{train,test,
test_scaffolds}.csv.gz`` inside the ``molsets`` wheel. The ``moses`` package itself no longer imports on current
RDKit/pandas, so the files are located through the import system without importing it
(``pip install --no-deps molsets`` installs them).

Synthetic sets follow the recipes of SPECTRE (Martinkus et al., ICML 2022), used by DiGress and PARD:
community-small (two G(n/2, 0.7) communities, 12-20 nodes), planar (Delaunay triangulations of 64 uniform
points) and SBM (2-5 communities of 20-40 nodes, p_in 0.3, p_out 0.005). Graph ``i`` is drawn from seed
``seed + i``, so a set does not depend on how many graphs are asked for.
"""

from __future__ import annotations

import gzip
import importlib.util
import os
from pathlib import Path

import networkx as nx
import numpy as np
import torch
from torch_geometric.data import Data, InMemoryDataset

from .molecules import MOSES_ATOMS, InvalidMoleculeError, heavy_atom_count, smiles_to_data

MOSES_SPLITS = ("train", "test", "test_scaffolds")


def cache_dir() -> Path:
    """Where processed data sets go: ``$SCIDIFF_CACHE`` or ``~/.cache/scidiff`` (never the repository)."""
    return Path(os.environ.get("SCIDIFF_CACHE", Path.home() / ".cache" / "scidiff"))


def moses_data_dir() -> Path:
    """The folder with the MOSES csv.gz files of the installed ``molsets`` wheel (the package is not imported)."""
    spec = importlib.util.find_spec("moses")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for loc in locations:
        path = Path(loc) / "dataset" / "data"
        if (path / "train.csv.gz").exists():
            return path
    raise FileNotFoundError(
        "the MOSES data files were not found: install them with `pip install --no-deps molsets` "
        "(the molsets wheel ships moses/dataset/data/train.csv.gz)"
    )


def moses_available() -> bool:
    try:
        moses_data_dir()
    except FileNotFoundError:
        return False
    return True


def moses_smiles(split: str = "train", max_heavy_atoms: int | None = None, limit: int | None = None) -> list[str]:
    """SMILES of a MOSES split, optionally only molecules with at most ``max_heavy_atoms`` heavy atoms.

    MOSES has 8-26 heavy atoms per molecule; ``max_heavy_atoms=15`` leaves about 10k training molecules, 12 about
    440, 9 only 37.
    """
    if split not in MOSES_SPLITS:
        raise ValueError(f"unknown MOSES split {split!r}; expected one of {MOSES_SPLITS}")
    with gzip.open(moses_data_dir() / f"{split}.csv.gz", "rt") as f:
        header = f.readline().strip().split(",")
        if header[0] != "SMILES":
            raise ValueError(f"unexpected MOSES header {header}")
        out = []
        for line in f:
            s = line.split(",", 1)[0].strip()
            if max_heavy_atoms is None or heavy_atom_count(s) <= max_heavy_atoms:
                out.append(s)
                if limit is not None and len(out) >= limit:
                    break
    return out


# ----- SPECTRE-style synthetic graphs ------------------------------------------------------------------------

def community_small_graph(seed: int) -> nx.Graph:
    """Two G(n/2, 0.7) communities, n ~ U{12..20}, joined by sparse inter-community edges (at least one)."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(12, 21))
    sizes = [n // 2, n - n // 2]
    g = nx.disjoint_union(*(nx.gnp_random_graph(s, 0.7, seed=int(rng.integers(2**31))) for s in sizes))
    left, right = range(sizes[0]), range(sizes[0], n)
    p_inter = 0.05 * 2 / (n / 2)  # SPECTRE: p = 0.05 * c / ((c - 1) * n/c) for c = 2 communities
    pairs = [(u, v) for u in left for v in right]
    chosen = [pairs[i] for i in np.flatnonzero(rng.random(len(pairs)) < p_inter)]
    if not chosen:
        chosen = [pairs[int(rng.integers(len(pairs)))]]
    g.add_edges_from(chosen)
    return g


def planar_graph(seed: int, n: int = 64) -> nx.Graph:
    """Delaunay triangulation of ``n`` uniform points in the unit square (SPECTRE's planar set)."""
    from scipy.spatial import Delaunay

    pts = np.random.default_rng(seed).random((n, 2))
    g = nx.empty_graph(n)
    for tri in Delaunay(pts).simplices:
        g.add_edges_from([(int(tri[0]), int(tri[1])), (int(tri[1]), int(tri[2])), (int(tri[0]), int(tri[2]))])
    return g


def sbm_graph(seed: int, blocks: tuple[int, int] = (2, 5), sizes: tuple[int, int] = (20, 40), p_in: float = 0.3,
              p_out: float = 0.005) -> nx.Graph:
    """Stochastic block model: ``blocks`` (inclusive range) communities of ``sizes`` nodes each, edge probability
    ``p_in`` inside and ``p_out`` between communities. Defaults are SPECTRE's (2-5 x 20-40, 0.3, 0.005)."""
    rng = np.random.default_rng(seed)
    k = int(rng.integers(blocks[0], blocks[1] + 1))
    sizes = [int(s) for s in rng.integers(sizes[0], sizes[1] + 1, size=k)]
    probs = np.full((k, k), p_out)
    np.fill_diagonal(probs, p_in)
    g = nx.stochastic_block_model(sizes, probs.tolist(), seed=int(rng.integers(2**31)))
    return nx.convert_node_labels_to_integers(nx.Graph(g))


SYNTHETIC = {"community_small": (community_small_graph, 100), "planar": (planar_graph, 200), "sbm": (sbm_graph, 200)}


def synthetic_graphs(name: str, num_graphs: int | None = None, seed: int = 0, **kw) -> list[nx.Graph]:
    """``num_graphs`` graphs of a SPECTRE-style set (defaults: 100 community-small, 200 planar, 200 SBM); ``kw``
    go to the generator (e.g. ``n`` for planar, ``blocks`` / ``sizes`` for SBM: scaled-down variants)."""
    if name not in SYNTHETIC:
        raise ValueError(f"unknown synthetic graph set {name!r}; expected one of {sorted(SYNTHETIC)}")
    fn, default = SYNTHETIC[name]
    return [fn(seed + i, **kw) for i in range(default if num_graphs is None else num_graphs)]


def graph_to_data(g: nx.Graph) -> Data:
    """An unlabelled networkx graph as ``Data`` with one node type (0) and one edge class (1).

    Integer-labelled nodes keep their labels as indices (node ``v`` becomes row ``v``), whatever the order in
    which networkx stores them."""
    nodes = list(g.nodes)
    try:
        nodes = sorted(nodes)
    except TypeError:  # labels that do not sort: keep networkx's order
        pass
    index = {v: i for i, v in enumerate(nodes)}
    pairs = [(index[u], index[v]) for u, v in g.edges if u != v]
    ei = torch.tensor(pairs, dtype=torch.long).reshape(-1, 2).T
    ei = torch.cat([ei, ei.flip(0)], 1)
    n = len(nodes)
    return Data(x=torch.zeros(n, dtype=torch.long), edge_index=ei, edge_attr=torch.ones(ei.shape[1], dtype=torch.long),
                num_nodes=n)


def data_to_graph(data: Data) -> nx.Graph:
    g = nx.empty_graph(int(data.num_nodes))
    g.add_edges_from(data.edge_index.T.tolist())
    return g


def split_indices(n: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """DiGress/SPECTRE split: a seeded permutation; 20 % test, then 80 % of the rest train and 20 % val."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_test = int(round(0.2 * n))
    n_train = int(round(0.8 * (n - n_test)))
    return {"test": perm[:n_test], "train": perm[n_test:n_test + n_train], "val": perm[n_test + n_train:]}


# ----- InMemoryDatasets ------------------------------------------------------------------------------------------

class _Cached(InMemoryDataset):
    """Built by :meth:`build` on first use and cached under ``root/processed`` (no download step)."""

    def __init__(self, root, transform=None, pre_transform=None, force_reload: bool = False):
        super().__init__(str(root), transform, pre_transform, force_reload=force_reload)
        self.load(self.processed_paths[0])

    @property
    def raw_file_names(self) -> list[str]:
        return []

    def download(self) -> None:  # everything is generated or read from installed files
        pass

    def process(self) -> None:
        data_list = self.build()
        if self.pre_transform is not None:
            data_list = [self.pre_transform(d) for d in data_list]
        self.save(data_list, self.processed_paths[0])


class MosesSubset(_Cached):
    """MOSES molecules with at most ``max_heavy_atoms`` heavy atoms, as kekulised ``Data`` (see
    :func:`~scidiff.graphs.molecules.smiles_to_data`). Molecules outside the atom vocabulary are skipped."""

    def __init__(self, root=None, split: str = "train", max_heavy_atoms: int = 15, limit: int | None = None, **kw):
        self.split, self.max_heavy_atoms, self.limit = split, max_heavy_atoms, limit
        root = cache_dir() / "moses" if root is None else root
        super().__init__(root, **kw)

    @property
    def processed_file_names(self) -> list[str]:
        return [f"{self.split}_le{self.max_heavy_atoms}_{self.limit or 'all'}.pt"]

    def build(self) -> list[Data]:
        out = []
        for s in moses_smiles(self.split, self.max_heavy_atoms, self.limit):
            try:
                out.append(smiles_to_data(s, MOSES_ATOMS))
            except InvalidMoleculeError:
                continue
        return out


class SyntheticGraphs(_Cached):
    """A SPECTRE-style synthetic set (``community_small``, ``planar``, ``sbm``) and one of its splits."""

    def __init__(self, root=None, name: str = "community_small", split: str = "train", num_graphs: int | None = None,
                 seed: int = 0, **kw):
        if name not in SYNTHETIC:
            raise ValueError(f"unknown synthetic graph set {name!r}; expected one of {sorted(SYNTHETIC)}")
        if split not in ("train", "val", "test"):
            raise ValueError(f"unknown split {split!r}; expected train, val or test")
        self.name, self.split, self.num_graphs, self.seed = name, split, num_graphs, seed
        root = cache_dir() / "spectre" if root is None else root
        super().__init__(root, **kw)

    @property
    def processed_file_names(self) -> list[str]:
        return [f"{self.name}_{self.num_graphs or 'default'}_s{self.seed}_{self.split}.pt"]

    def build(self) -> list[Data]:
        graphs = synthetic_graphs(self.name, self.num_graphs, self.seed)
        idx = split_indices(len(graphs), self.seed)[self.split]
        return [graph_to_data(graphs[i]) for i in idx.tolist()]


def save_graphs(data_list, path) -> Path:
    """Write typed graphs (``x``, ``edge_index``, ``edge_attr`` of each ``Data``) as one safetensors file:
    the node, edge and edge-type tensors concatenated, with per-graph node and edge counts. Featurising needs RDKit;
    training from the file (:func:`load_graphs`) does not. Node-local edge indices, so graphs are independent."""
    from safetensors.torch import save_file

    from .._files import atomic_path

    if not data_list:
        raise ValueError("save_graphs needs at least one graph")
    nodes = torch.tensor([int(d.num_nodes) for d in data_list], dtype=torch.int32)
    edges = torch.tensor([int(d.edge_index.shape[1]) for d in data_list], dtype=torch.int32)
    x = torch.cat([d.x.reshape(-1) if d.x is not None else torch.zeros(int(d.num_nodes), dtype=torch.long)
                   for d in data_list])
    attr = torch.cat([d.edge_attr.reshape(-1) if d.edge_attr is not None else torch.ones(d.edge_index.shape[1], dtype=torch.long)
                      for d in data_list])
    tensors = {"num_nodes": nodes, "num_edges": edges, "x": x.to(torch.int64), "edge_attr": attr.to(torch.int64),
               "edge_index": torch.cat([d.edge_index for d in data_list], 1).to(torch.int64).contiguous()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        save_file(tensors, tmp, metadata={"format": "scidiff.graphs.save_graphs"})
    return path


def load_graphs(path) -> list[Data]:
    """The graphs written by :func:`save_graphs` (``Data`` with ``x``, ``edge_index``, ``edge_attr``)."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), framework="pt") as f:
        fmt = (f.metadata() or {}).get("format")
    if fmt != "scidiff.graphs.save_graphs":
        raise ValueError(f"{path} is not a graph file written by scidiff.graphs.save_graphs (format {fmt!r})")
    t = load_file(str(path))
    xs = torch.split(t["x"], t["num_nodes"].tolist())
    eis = torch.split(t["edge_index"], t["num_edges"].tolist(), dim=1)
    attrs = torch.split(t["edge_attr"], t["num_edges"].tolist())
    return [Data(x=x, edge_index=ei, edge_attr=a, num_nodes=x.shape[0]) for x, ei, a in zip(xs, eis, attrs)]
