import pytest
import torch

pytest.importorskip("rdkit")

from rdkit import Chem  # noqa: E402

from scidiff.graphs.molecules import dense_types, smiles_to_data  # noqa: E402
from scidiff.graphs.writers import draw_grid, graphs_from_types, write_molecules  # noqa: E402


def test_smiles_sdf_and_grid(tmp_path):
    graphs = [dense_types(smiles_to_data(s)) for s in ("CCO", "c1ccccc1Cl")]
    bad = (torch.zeros(6, dtype=torch.long), torch.ones(6, 6, dtype=torch.long) - torch.eye(6, dtype=torch.long))
    smiles = write_molecules([graphs[0], bad, graphs[1]], tmp_path / "s")
    assert smiles == ["CCO", None, "Clc1ccccc1"]
    assert (tmp_path / "s.smi").read_text().splitlines() == ["CCO\tsample_0", "invalid\tsample_1", "Clc1ccccc1\tsample_2"]
    mols = list(Chem.SDMolSupplier(str(tmp_path / "s.sdf")))
    assert [m.GetProp("_Name") for m in mols] == ["sample_0", "sample_2"]
    assert draw_grid(smiles, tmp_path / "grid.png").read_bytes()[:4] == b"\x89PNG"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]  # atomic: no temporary left
    with pytest.raises(ValueError, match="no valid molecule"):
        draw_grid([None], tmp_path / "none.png")
    assert [g.number_of_edges() for g in graphs_from_types(graphs)] == [2, 7]
