"""Molecules as graphs: SMILES <-> PyG ``Data`` and dense type tensors, with RDKit chemistry.

A molecule is a graph of heavy atoms (hydrogens implicit) whose node type is an index into an atom vocabulary
and whose edge type is a kekulised bond order (1 single, 2 double, 3 triple; 0 = no bond in dense tensors).
Kekulising first keeps aromaticity out of the generative model, as DiGress does for MOSES/GuacaMol
(Vignac et al., ICLR 2023); RDKit re-perceives aromaticity when the molecule is sanitised.

``torch_geometric.utils.from_smiles`` turns an unparsable SMILES into an empty graph; here every SMILES is parsed
by RDKit first and a :class:`InvalidMoleculeError` names the problem.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch_geometric.data import Data

try:
    from rdkit import Chem, RDLogger
except ImportError:  # graphs featurised earlier (datasets.load_graphs) train and sample without RDKit
    Chem = RDLogger = None

#: Heavy atoms of the MOSES set (ZINC clean leads: C, N, S, O, F, Cl, Br with implicit H).
MOSES_ATOMS = ("C", "N", "O", "S", "F", "Cl", "Br")
#: Largest bond-order sum RDKit accepts for a neutral atom of each MOSES type (hydrogens implicit): C 4, N 3,
#: O 2, S 6, halogens 1. Used by the optional valence-constrained sampler.
MAX_VALENCE = (4, 3, 2, 6, 1, 1, 1)
#: Dense edge classes: 0 = no bond, then kekulised bond orders.
BOND_TYPES = (None, Chem.BondType.SINGLE, Chem.BondType.DOUBLE, Chem.BondType.TRIPLE) if Chem else None
_BOND_INDEX = {b: i for i, b in enumerate(BOND_TYPES) if b is not None} if Chem else {}

if RDLogger is not None:
    RDLogger.DisableLog("rdApp.*")  # parse failures are reported by our own errors, not on stderr


def _need_rdkit(what: str) -> None:
    if Chem is None:
        raise ImportError(f"{what} needs RDKit (pip install rdkit); without it, train from graphs featurised "
                          "elsewhere with scidiff.graphs.save_graphs / load_graphs")


class InvalidMoleculeError(ValueError):
    """A SMILES or molecule that cannot be represented (unparsable, charged, unknown element, ...)."""


def canonical_smiles(smiles: str) -> str:
    """RDKit canonical SMILES; raises :class:`InvalidMoleculeError` if RDKit cannot parse ``smiles``."""
    _need_rdkit("canonical_smiles")
    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        raise InvalidMoleculeError(f"RDKit cannot parse the SMILES {smiles!r}")
    return Chem.MolToSmiles(mol)


def smiles_to_data(smiles: str, atoms: tuple[str, ...] = MOSES_ATOMS) -> Data:
    """Parse ``smiles`` into ``Data(x=atom type [N], edge_index [2, 2M], edge_attr=bond order [2M], smiles)``.

    Raises :class:`InvalidMoleculeError` for an unparsable SMILES, a charged or radical atom, an element outside
    ``atoms`` or an empty molecule.
    """
    if not isinstance(smiles, str):
        raise InvalidMoleculeError(f"expected a SMILES string, got {type(smiles).__name__}")
    _need_rdkit("smiles_to_data")
    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        raise InvalidMoleculeError(f"RDKit cannot parse the SMILES {smiles!r}")
    if mol.GetNumAtoms() == 0:
        raise InvalidMoleculeError(f"the SMILES {smiles!r} has no heavy atoms")
    Chem.Kekulize(mol, clearAromaticFlags=True)
    index = {a: i for i, a in enumerate(atoms)}
    x = []
    for atom in mol.GetAtoms():
        sym = atom.GetSymbol()
        if sym not in index:
            raise InvalidMoleculeError(f"element {sym} of {smiles!r} is not in the atom vocabulary {atoms}")
        if atom.GetFormalCharge() != 0 or atom.GetNumRadicalElectrons() != 0:
            raise InvalidMoleculeError(f"{smiles!r} has a charged or radical atom ({sym}); only neutral molecules are modelled")
        x.append(index[sym])
    src, dst, attr = [], [], []
    for bond in mol.GetBonds():
        i, j = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
        order = _BOND_INDEX.get(bond.GetBondType())
        if order is None:
            raise InvalidMoleculeError(f"{smiles!r} has a bond of type {bond.GetBondType()} that does not kekulise")
        src += [i, j]
        dst += [j, i]
        attr += [order, order]
    return Data(
        x=torch.tensor(x, dtype=torch.long),
        edge_index=torch.tensor([src, dst], dtype=torch.long).reshape(2, -1),
        edge_attr=torch.tensor(attr, dtype=torch.long),
        smiles=Chem.MolToSmiles(Chem.MolFromSmiles(smiles)),
        num_nodes=len(x),
    )


def dense_types(data: Data) -> tuple[Tensor, Tensor]:
    """``(x [N], adj [N, N])`` long tensors: node types and edge classes (0 = no edge) of one graph."""
    n = int(data.num_nodes)
    x = data.x.long().reshape(n) if data.x is not None else torch.zeros(n, dtype=torch.long)
    adj = torch.zeros(n, n, dtype=torch.long)
    attr = data.edge_attr.long().reshape(-1) if data.edge_attr is not None else torch.ones(data.edge_index.shape[1], dtype=torch.long)
    adj[data.edge_index[0], data.edge_index[1]] = attr
    return x, adj


def types_to_mol(x: Tensor, adj: Tensor, atoms: tuple[str, ...] = MOSES_ATOMS) -> Chem.Mol | None:
    """Build and sanitise an RDKit molecule from dense types; ``None`` if RDKit rejects it (e.g. a valence error).

    ``adj`` must be symmetric with edge classes in ``0..3`` (no bond, single, double, triple).
    """
    _need_rdkit("types_to_mol")
    x, adj = torch.as_tensor(x).long(), torch.as_tensor(adj).long()
    n = x.shape[0]
    if adj.shape != (n, n):
        raise ValueError(f"adj must be ({n}, {n}) for {n} atoms, got {tuple(adj.shape)}")
    if not torch.equal(adj, adj.T):
        raise ValueError("adj must be symmetric")
    if adj.numel() and (int(adj.max()) >= len(BOND_TYPES) or int(adj.min()) < 0):
        raise ValueError(f"edge classes must lie in 0..{len(BOND_TYPES) - 1}")
    mol = Chem.RWMol()
    for t in x.tolist():
        if not 0 <= t < len(atoms):
            raise ValueError(f"atom type {t} outside the vocabulary of {len(atoms)} atoms")
        mol.AddAtom(Chem.Atom(atoms[t]))
    iu = torch.triu_indices(n, n, 1)
    for i, j in iu.T.tolist():
        b = int(adj[i, j])
        if b:
            mol.AddBond(i, j, BOND_TYPES[b])
    try:
        Chem.SanitizeMol(mol)
    except Exception:  # valence, kekulisation: RDKit raises several types
        return None
    return mol.GetMol()


def types_to_smiles(x: Tensor, adj: Tensor, atoms: tuple[str, ...] = MOSES_ATOMS) -> str | None:
    """Canonical SMILES of the dense graph, or ``None`` when it is not a valid molecule."""
    mol = types_to_mol(x, adj, atoms)
    return None if mol is None else Chem.MolToSmiles(mol)


def data_to_smiles(data: Data, atoms: tuple[str, ...] = MOSES_ATOMS) -> str | None:
    """Inverse of :func:`smiles_to_data` (canonical SMILES), ``None`` when not a valid molecule."""
    return types_to_smiles(*dense_types(data), atoms=atoms)


def heavy_atom_count(smiles: str) -> int:
    """Heavy atoms of a SMILES without parsing it (bracket atoms count once; ``Cl``/``Br`` are one atom).

    Used to filter millions of MOSES SMILES before the slower RDKit parse.
    """
    import re

    return len(re.findall(r"\[[^\]]*\]|Cl|Br|[BCNOSPFI]|[bcnosp]", smiles))


#: Optimum and fall-off of :func:`logp_peak` (Crippen logP units; 3.5 is the 95 % quantile of the <= 15-atom
#: MOSES training molecules, whose 60 % quantile is 2.78).
LOGP_PEAK, LOGP_PEAK_FALL = 3.5, 4.0


def qed_without_alerts(mol) -> float:
    """QED (Bickerton et al. 2012, mean weights) with weight 0 on its structural-alert term: the weighted geometric
    mean of the bell-shaped desirabilities of weight, logP, H-bond acceptors and donors, polar surface, rotors and
    aromatic rings. Each term has an optimum, so a trend fitted on low values can overshoot past it."""
    _need_rdkit("qed_without_alerts")
    from rdkit.Chem import QED

    return QED.qed(mol, w=QED.WEIGHT_MEAN._replace(ALERTS=0.0))


def logp_peak(mol) -> float:
    """A constructed guidance target: Crippen logP up to :data:`LOGP_PEAK`, then falling :data:`LOGP_PEAK_FALL`
    per unit. Made so that a regressor fitted only on low values (where it is logP itself) extrapolates the wrong
    way past the optimum: the failure of plain guidance that context-guided diffusion is meant to fix."""
    _need_rdkit("logp_peak")
    from rdkit.Chem import Crippen

    logp = Crippen.MolLogP(mol)
    return logp if logp <= LOGP_PEAK else LOGP_PEAK - LOGP_PEAK_FALL * (logp - LOGP_PEAK)


def molecular_properties() -> dict:
    """Guidance targets by name: ``(title, function of an RDKit molecule)``. Crippen logP is a sum of atom
    contributions (a regressor's linear extrapolation past the labels is roughly right); QED is a product of
    bell-shaped desirabilities of weight, logP, polar surface, H-bond counts, rotors, rings and alerts;
    ``qed_noalerts`` drops the alert term; ``logp_peak`` is the constructed test of :func:`logp_peak`."""
    _need_rdkit("molecular properties")
    from rdkit.Chem import QED, Crippen

    return {"logp": ("logP", Crippen.MolLogP), "qed": ("QED", QED.qed),
            "qed_noalerts": ("QED without alerts", qed_without_alerts),
            "logp_peak": ("logP with an optimum at 3.5", logp_peak)}
