"""Metrics for generated molecules and graphs, written against RDKit, networkx and numpy.

Molecules (conventions of MOSES, Polykovskiy et al. 2020, and DiGress): validity = RDKit sanitisation succeeds
(``None`` entries are invalid); uniqueness = distinct canonical SMILES among the valid; novelty = fraction of those
not in the training set; MOSES filters (no ring of >= 8 atoms, no charge, atoms in {C,N,S,O,F,Cl,Br,H}, no MCF or
PAINS alert, alert SMARTS read from the installed molsets wheel); SNN = mean over generated molecules of the
largest Tanimoto similarity to the reference (Morgan radius 2, 1024 bits); Frag / Scaf = cosine similarity of
BRICS-fragment / Bemis-Murcko-scaffold count vectors (scaffolds with fewer than 2 rings dropped, as MOSES does);
IntDiv_p = 1 - (mean pairwise T^p)^(1/p); FCD (Preuer et al. 2018) with the ChemNet weights that ship in
``fcd_torch``.

Graphs (GraphRNN / GRAN / SPECTRE convention): squared MMD with a Gaussian kernel on the total-variation distance
of normalised histograms -- degree (sigma 1), clustering (100 bins on [0, 1], sigma 0.1), spectrum of the
normalised Laplacian (200 bins on [-1e-5, 2], sigma 1) -- and a Gaussian kernel on the Euclidean distance of the
mean 4-node orbit counts per node (15 orbits, sigma 30; ORCA, Hocevar & Demsar 2014).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from functools import lru_cache

import networkx as nx
import numpy as np
from rdkit import Chem, DataStructs
from rdkit.Chem import AllChem
from rdkit.Chem.Scaffolds import MurckoScaffold

# ----- molecules ----------------------------------------------------------------------------------------------


def _canon(s: str | None) -> str | None:
    if s is None:
        return None
    mol = Chem.MolFromSmiles(s)
    return None if mol is None else Chem.MolToSmiles(mol)


def validity_uniqueness_novelty(smiles: Sequence[str | None], train: Iterable[str]) -> dict[str, float]:
    """Fractions: ``validity`` (of all), ``connected`` (valid and one fragment, of all), ``uniqueness`` (of valid),
    ``novelty`` (of unique), ``vun`` (valid, unique and novel, of all)."""
    if len(smiles) == 0:
        raise ValueError("no molecules to score")
    valid = [c for c in (_canon(s) for s in smiles) if c is not None]
    unique = set(valid)
    train_set = {c for c in (_canon(s) for s in train) if c is not None}
    novel = unique - train_set
    return {
        "validity": len(valid) / len(smiles),
        "connected": sum("." not in v for v in valid) / len(smiles),
        "uniqueness": len(unique) / len(valid) if valid else 0.0,
        "novelty": len(novel) / len(unique) if unique else 0.0,
        "vun": len(novel) / len(smiles),
    }


@lru_cache(maxsize=1)
def _alerts() -> tuple:
    import csv

    from .datasets import moses_data_dir

    base = moses_data_dir().parent.parent / "metrics"
    smarts = []
    with open(base / "mcf.csv") as f:
        smarts += [row["smarts"] for row in csv.DictReader(f)]
    with open(base / "wehi_pains.csv") as f:
        smarts += [row[0] for row in csv.reader(f)]
    return tuple(Chem.MolFromSmarts(s) for s in smarts)


MOSES_ALLOWED = frozenset({"C", "N", "S", "O", "F", "Cl", "Br", "H"})


def passes_filters(mol: Chem.Mol) -> bool:
    """MOSES' medicinal-chemistry filters for one molecule (see module docs)."""
    if any(len(r) >= 8 for r in mol.GetRingInfo().AtomRings()):
        return False
    if any(a.GetFormalCharge() != 0 or a.GetSymbol() not in MOSES_ALLOWED for a in mol.GetAtoms()):
        return False
    with_h = Chem.AddHs(mol)
    return not any(with_h.HasSubstructMatch(p) for p in _alerts())


def _mols(smiles: Iterable[str | None]) -> list[Chem.Mol]:
    mols = (Chem.MolFromSmiles(s) for s in smiles if s is not None)
    return [m for m in mols if m is not None]


def filters(smiles: Iterable[str | None]) -> float:
    """Fraction of the valid molecules that pass :func:`passes_filters`."""
    mols = _mols(smiles)
    return float(np.mean([passes_filters(m) for m in mols])) if mols else 0.0


def fingerprints(mols: Sequence[Chem.Mol]) -> list:
    gen = AllChem.GetMorganGenerator(radius=2, fpSize=1024)
    return [gen.GetFingerprint(m) for m in mols]


def snn(gen: Iterable[str], ref: Iterable[str]) -> float:
    """Mean nearest-neighbour Tanimoto similarity of generated molecules to the reference set."""
    ref_fps = fingerprints(_mols(ref))
    sims = [max(DataStructs.BulkTanimotoSimilarity(fp, ref_fps)) for fp in fingerprints(_mols(gen))]
    return float(np.mean(sims)) if sims else 0.0


def internal_diversity(gen: Iterable[str], p: int = 1) -> float:
    """IntDiv_p = 1 - (mean over all ordered pairs, self-pairs included, of Tanimoto^p)^(1/p) (MOSES)."""
    fps = fingerprints(_mols(gen))
    if not fps:
        return 0.0
    t = np.array([DataStructs.BulkTanimotoSimilarity(fp, fps) for fp in fps])
    return float(1 - np.mean(t**p) ** (1 / p))


def _cosine(a: Counter, b: Counter) -> float:
    keys = sorted(set(a) | set(b))
    va = np.array([a.get(k, 0) for k in keys], dtype=np.float64)
    vb = np.array([b.get(k, 0) for k in keys], dtype=np.float64)
    den = np.linalg.norm(va) * np.linalg.norm(vb)
    return float(va @ vb / den) if den > 0 else 0.0


def brics_fragments(mol: Chem.Mol) -> list[str]:
    frags = Chem.GetMolFrags(AllChem.FragmentOnBRICSBonds(mol), asMols=True)
    return [Chem.MolToSmiles(f) for f in frags]


def scaffold(mol: Chem.Mol, min_rings: int = 2) -> str | None:
    """Bemis-Murcko scaffold SMILES, ``None`` if it has fewer than ``min_rings`` rings."""
    scaf = MurckoScaffold.GetScaffoldForMol(mol)
    if scaf.GetNumAtoms() == 0 or scaf.GetRingInfo().NumRings() < min_rings:
        return None
    return Chem.MolToSmiles(scaf)


def fragment_similarity(gen: Iterable[str], ref: Iterable[str]) -> float:
    count = lambda smiles: Counter(f for m in _mols(smiles) for f in brics_fragments(m))  # noqa: E731
    return _cosine(count(gen), count(ref))


def scaffold_similarity(gen: Iterable[str], ref: Iterable[str], min_rings: int = 2) -> float:
    count = lambda smiles: Counter(s for m in _mols(smiles) if (s := scaffold(m, min_rings)) is not None)  # noqa: E731
    return _cosine(count(gen), count(ref))


@lru_cache(maxsize=1)
def _fcd_model():
    import warnings

    from fcd_torch import FCD

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return FCD(device="cpu", n_jobs=1, batch_size=256)


def fcd(gen: Sequence[str], ref: Sequence[str]) -> float:
    """Frechet ChemNet Distance between two SMILES sets (fcd_torch's bundled ChemNet; no download).

    FCD depends strongly on the set sizes: compare numbers only at equal sizes and reference."""
    gen, ref = [s for s in gen if s is not None], list(ref)
    if len(gen) < 2 or len(ref) < 2:
        raise ValueError(f"FCD needs at least 2 molecules in each set, got {len(gen)} and {len(ref)}")
    return float(_fcd_model()(ref, gen))


def molecule_metrics(smiles: Sequence[str | None], train: Sequence[str], test: Sequence[str], with_fcd: bool = True,
                     with_filters: bool = True) -> dict[str, float]:
    """V/U/N against ``train`` and FCD, SNN, Frag, Scaf, IntDiv against ``test`` (valid molecules only)."""
    out = validity_uniqueness_novelty(smiles, train)
    valid = [c for c in (_canon(s) for s in smiles) if c is not None]
    if valid:
        if with_filters:
            out["filters"] = filters(valid)
        out.update(snn=snn(valid, test), frag=fragment_similarity(valid, test), scaf=scaffold_similarity(valid, test),
                   intdiv=internal_diversity(valid))
        if with_fcd and len(valid) >= 2:
            out["fcd"] = fcd(valid, test)
    return out


# ----- graphs -------------------------------------------------------------------------------------------------


def gaussian_tv(a: np.ndarray, b: np.ndarray, sigma: float) -> float:
    """exp(-TV(a, b)^2 / (2 sigma^2)) for histograms normalised to sum 1 (shorter one padded with zeros)."""
    n = max(len(a), len(b))
    a = np.pad(np.asarray(a, dtype=np.float64), (0, n - len(a)))
    b = np.pad(np.asarray(b, dtype=np.float64), (0, n - len(b)))
    a, b = a / max(a.sum(), 1e-300), b / max(b.sum(), 1e-300)
    tv = 0.5 * np.abs(a - b).sum()
    return float(np.exp(-(tv**2) / (2 * sigma**2)))


def gaussian_l2(a: np.ndarray, b: np.ndarray, sigma: float) -> float:
    d = np.linalg.norm(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))
    return float(np.exp(-(d**2) / (2 * sigma**2)))


def mmd2(x: Sequence[np.ndarray], y: Sequence[np.ndarray], kernel, sigma: float) -> float:
    """Biased squared MMD: mean k(x, x') + mean k(y, y') - 2 mean k(x, y)."""
    if not len(x) or not len(y):
        raise ValueError("MMD needs two non-empty sets")
    kxx = np.mean([[kernel(a, b, sigma) for b in x] for a in x])
    kyy = np.mean([[kernel(a, b, sigma) for b in y] for a in y])
    kxy = np.mean([[kernel(a, b, sigma) for b in y] for a in x])
    return float(kxx + kyy - 2 * kxy)


def degree_histogram(g: nx.Graph) -> np.ndarray:
    return np.asarray(nx.degree_histogram(g), dtype=np.float64)


def clustering_histogram(g: nx.Graph, bins: int = 100) -> np.ndarray:
    return np.histogram(list(nx.clustering(g).values()), bins=bins, range=(0.0, 1.0))[0].astype(np.float64)


def spectral_histogram(g: nx.Graph, bins: int = 200) -> np.ndarray:
    if g.number_of_nodes() == 0:
        return np.zeros(bins)
    eig = np.linalg.eigvalsh(nx.normalized_laplacian_matrix(g).toarray())
    return np.histogram(eig, bins=bins, range=(-1e-5, 2.0))[0].astype(np.float64)


def orbit_counts(g: nx.Graph) -> np.ndarray:
    """Mean over nodes of the 15 node-orbit counts of 4-node graphlets (``orca-graphlets``, pure numpy ORCA)."""
    from orca import orca_nodes

    g = nx.convert_node_labels_to_integers(g)
    if g.number_of_edges() == 0:
        return np.zeros(15)
    counts = orca_nodes(np.array(list(g.edges), dtype=np.int64), g.number_of_nodes(), graphlet_size=4)
    return counts.mean(0).astype(np.float64)


GRAPH_STATS = {
    "degree": (degree_histogram, gaussian_tv, 1.0),
    "clustering": (clustering_histogram, gaussian_tv, 0.1),
    "spectral": (spectral_histogram, gaussian_tv, 1.0),
    "orbit": (orbit_counts, gaussian_l2, 30.0),
}


def graph_mmds(gen: Sequence[nx.Graph], ref: Sequence[nx.Graph], stats: Sequence[str] = tuple(GRAPH_STATS)) -> dict[str, float]:
    """Squared MMD between generated and reference graphs for each statistic in ``stats``."""
    out = {}
    for name in stats:
        fn, kernel, sigma = GRAPH_STATS[name]
        out[name] = mmd2([fn(g) for g in gen], [fn(g) for g in ref], kernel, sigma)
    return out
