import pytest
import torch

pytest.importorskip("rdkit")
pytest.importorskip("torch_geometric")

from rdkit import Chem  # noqa: E402

from scidiff.graphs.datasets import moses_available, moses_smiles  # noqa: E402
from scidiff.graphs.molecules import (InvalidMoleculeError, canonical_smiles, data_to_smiles, dense_types,  # noqa: E402
                                      heavy_atom_count, smiles_to_data, types_to_smiles)

SMILES = ["CCO", "c1ccccc1O", "CC(=O)Nc1ccc(Cl)cc1", "C#CCN1CCOCC1", "O=S(=O)(N)c1ccc(Br)cc1F", "C1CC2CCC1C2"]


@pytest.mark.parametrize("smiles", SMILES)
def test_smiles_round_trip(smiles):
    data = smiles_to_data(smiles)
    assert data.edge_index.shape[1] == 2 * Chem.MolFromSmiles(smiles).GetNumBonds()
    assert set(data.edge_attr.tolist()) <= {1, 2, 3}  # kekulised: no aromatic class
    assert data_to_smiles(data) == Chem.MolToSmiles(Chem.MolFromSmiles(smiles)) == data.smiles


def test_aromatic_rings_are_kekulised():
    x, adj = dense_types(smiles_to_data("c1ccccc1"))
    assert sorted(adj.sum(1).tolist()) == [3] * 6  # each carbon: one single + one double bond
    assert (adj == 2).sum() == 6  # three double bonds, both directions


def test_invalid_input_is_rejected():
    with pytest.raises(InvalidMoleculeError, match="cannot parse"):
        smiles_to_data("C1CC(")
    with pytest.raises(InvalidMoleculeError, match="not in the atom vocabulary"):
        smiles_to_data("CCP")
    with pytest.raises(InvalidMoleculeError, match="charged"):
        smiles_to_data("C[NH3+]")
    with pytest.raises(InvalidMoleculeError, match="no heavy atoms"):
        smiles_to_data("")
    with pytest.raises(InvalidMoleculeError, match="cannot parse"):
        canonical_smiles("not a smiles")


def test_dense_validity_check():
    # pentavalent carbon: RDKit's sanitisation rejects it, so the graph is not a molecule
    x = torch.zeros(6, dtype=torch.long)
    adj = torch.zeros(6, 6, dtype=torch.long)
    adj[0, 1:] = adj[1:, 0] = 1
    assert types_to_smiles(x, adj) is None
    adj[0, 5] = adj[5, 0] = 0
    assert types_to_smiles(x, adj) == "C.CC(C)(C)C"  # atom 5 is now a separate methane
    with pytest.raises(ValueError, match="symmetric"):
        types_to_smiles(x, torch.triu(adj))
    with pytest.raises(ValueError, match="edge classes"):
        types_to_smiles(x, adj * 5)


def test_heavy_atom_count_matches_rdkit():
    for s in SMILES + ["[nH]1cccc1", "ClC(Br)Cl"]:
        assert heavy_atom_count(s) == Chem.MolFromSmiles(s).GetNumHeavyAtoms()


@pytest.mark.skipif(not moses_available(), reason="MOSES data files (pip install --no-deps molsets) are absent")
def test_moses_subset_reader():
    smiles = moses_smiles("test", max_heavy_atoms=12)
    assert 20 < len(smiles) < 100  # 48 test molecules with <= 12 heavy atoms
    assert all(Chem.MolFromSmiles(s).GetNumHeavyAtoms() <= 12 for s in smiles)
    with pytest.raises(ValueError, match="unknown MOSES split"):
        moses_smiles("validation")
