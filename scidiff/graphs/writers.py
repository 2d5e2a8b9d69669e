"""Files for generated graphs: SMILES and SDF for molecules (written atomically), RDKit grid images, networkx views."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import networkx as nx
from rdkit import Chem
from torch_geometric.data import Data

from .._files import atomic_path
from .molecules import MOSES_ATOMS, types_to_mol


def write_molecules(graphs: Sequence, stem: str | Path, atoms: tuple[str, ...] = MOSES_ATOMS) -> list[str | None]:
    """Write ``stem.smi`` (one line per sample, ``invalid`` where RDKit rejects it) and ``stem.sdf`` (valid
    molecules, each titled with its sample index). ``graphs`` holds ``(node types, edge classes)`` pairs.
    Returns the canonical SMILES (``None`` for invalid samples)."""
    stem = Path(stem)
    mols = [types_to_mol(x, a, atoms) for x, a in graphs]
    smiles = [None if m is None else Chem.MolToSmiles(m) for m in mols]
    with atomic_path(stem.with_suffix(".smi")) as tmp, open(tmp, "w") as f:
        f.writelines(f"{s or 'invalid'}\tsample_{i}\n" for i, s in enumerate(smiles))
    with atomic_path(stem.with_suffix(".sdf")) as tmp:
        writer = Chem.SDWriter(tmp)
        for i, m in enumerate(mols):
            if m is not None:
                m.SetProp("_Name", f"sample_{i}")
                writer.write(m)
        writer.close()
    return smiles


def draw_grid(smiles: Sequence[str | None], path: str | Path, per_row: int = 6, size: int = 200) -> Path:
    """An RDKit grid image (PNG) of the valid molecules among ``smiles``."""
    from rdkit.Chem import Draw

    mols = [Chem.MolFromSmiles(s) for s in smiles if s is not None]
    if not mols:
        raise ValueError("no valid molecule to draw")
    img = Draw.MolsToGridImage(mols, molsPerRow=per_row, subImgSize=(size, size))
    path = Path(path)
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")
    return path


def graphs_from_types(items: Sequence) -> list[nx.Graph]:
    """networkx graphs from ``(node types, edge classes)`` pairs or PyG ``Data`` (edges = non-zero classes)."""
    out = []
    for item in items:
        if isinstance(item, Data):
            g = nx.empty_graph(int(item.num_nodes))
            g.add_edges_from(item.edge_index.T.tolist())
        else:
            _, adj = item
            g = nx.empty_graph(adj.shape[0])
            g.add_edges_from((adj > 0).nonzero().tolist())
        out.append(g)
    return out
