import pytest

pytest.importorskip("torch_geometric")
pytest.importorskip("pytorch_lightning")

from rdkit import Chem  # noqa: E402

from scidiff.cli import run  # noqa: E402
from scidiff.graphs.datasets import moses_available  # noqa: E402


def test_graph_problem_trains_and_samples(tmp_path):
    report = run(["graphs", "-c", "problems/spectre_community/config.yaml", "--set", f"out={tmp_path}",
                  "--set", "trainer.max_steps=3", "--set", "sample.n=4", "--set", "model.layers=1",
                  "--set", f"data.root={tmp_path / 'data'}"])
    assert report["steps"] == 3 and {"degree", "clustering", "spectral"} <= set(report)
    graphs = run(["sample", "--graphs", report["checkpoint"], "--n", "3", "--steps", "2", "-o", str(tmp_path / "g")])
    assert len(graphs) == 3 and len((tmp_path / "g.g6").read_text().splitlines()) == 3


@pytest.mark.slow  # reads the 1.6M-line MOSES training file (about 10 s) before training
@pytest.mark.skipif(not moses_available(), reason="MOSES data files (pip install --no-deps molsets) are absent")
def test_molecule_problem_writes_smiles_and_sdf(tmp_path):
    report = run(["graphs", "-c", "problems/moses_small/config.yaml", "--set", f"out={tmp_path}",
                  "--set", "trainer.max_steps=2", "--set", "sample.n=4", "--set", "model.layers=1",
                  "--set", "data.max_heavy_atoms=10", "--set", f"data.root={tmp_path / 'data'}"])
    assert 0 <= report["validity"] <= 1
    smiles = run(["sample", "--graphs", report["checkpoint"], "--n", "5", "--steps", "2", "-o", str(tmp_path / "m")])
    lines = (tmp_path / "m.smi").read_text().splitlines()
    assert len(lines) == 5 and lines[0].endswith("sample_0")
    text = (tmp_path / "m.sdf").read_text()
    sdf = [m for m in Chem.SDMolSupplier(str(tmp_path / "m.sdf")) if m is not None] if text else []
    assert len(sdf) == sum(s is not None for s in smiles)


def test_sample_cli_reads_safetensors_models_and_masks_valences(tmp_path):
    import torch

    from scidiff.graphs.model import BlockDiffusion, prepare, save_model
    from scidiff.graphs.molecules import smiles_to_data

    recs = prepare([smiles_to_data(s) for s in ("CC(=O)Nc1ccc(Cl)cc1", "O=C(O)c1ccccc1Br")], 0)
    torch.manual_seed(0)
    model = BlockDiffusion.from_records(recs, 7, 4, T=4, hidden=16, hidden_e=8, layers=1)
    path = save_model(model, tmp_path / "m.safetensors", {"molecular": True})
    smiles = run(["sample", "--graphs", str(path), "--n", "6", "--valence-mask", "-o", str(tmp_path / "m")])
    assert len(smiles) == 6 and all(s is not None for s in smiles)
    # the corrector reaches the sampler: with it the same seeds give other draws, and masked ones stay valid
    corrected = run(["sample", "--graphs", str(path), "--n", "6", "--valence-mask", "--corrector", "1",
                     "--corrector-t-max", "2", "-o", str(tmp_path / "c")])
    assert all(s is not None for s in corrected) and corrected != smiles
    with pytest.raises(FileNotFoundError, match="not a shipped model"):
        run(["sample", "--graphs", "no_such_model", "--n", "2", "-o", str(tmp_path / "x")])
