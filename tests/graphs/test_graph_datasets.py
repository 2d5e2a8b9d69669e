import networkx as nx
import pytest

pytest.importorskip("torch_geometric")

from scidiff.graphs.datasets import (SyntheticGraphs, community_small_graph, data_to_graph, planar_graph,  # noqa: E402
                                     sbm_graph, split_indices, synthetic_graphs)


def test_spectre_recipes():
    for seed in range(5):
        g = community_small_graph(seed)
        assert 12 <= g.number_of_nodes() <= 20 and nx.is_connected(g)
        p = planar_graph(seed)
        assert p.number_of_nodes() == 64 and nx.is_connected(p) and nx.check_planarity(p)[0]
        # a triangulation of n points with h on the hull has 3n - 3 - h edges
        assert 3 * 64 - 3 - p.number_of_edges() >= 3
    s = sbm_graph(0)
    assert 40 <= s.number_of_nodes() <= 200
    # graph i depends on its seed only
    assert nx.utils.graphs_equal(synthetic_graphs("community_small", 3)[2], community_small_graph(2))


def test_splits_and_cached_dataset(tmp_path):
    idx = split_indices(100)
    assert [len(idx[k]) for k in ("train", "val", "test")] == [64, 16, 20]
    assert len(set(sum((v.tolist() for v in idx.values()), []))) == 100
    ds = SyntheticGraphs(tmp_path, name="community_small", split="test")
    again = SyntheticGraphs(tmp_path, name="community_small", split="test")  # from the processed cache
    assert len(ds) == len(again) == 20
    assert nx.utils.graphs_equal(data_to_graph(ds[3]), data_to_graph(again[3]))
    with pytest.raises(ValueError, match="unknown synthetic graph set"):
        SyntheticGraphs(tmp_path, name="grid")
    with pytest.raises(ValueError, match="unknown split"):
        SyntheticGraphs(tmp_path, name="planar", split="validation")


def test_save_graphs_round_trip_and_format_check(tmp_path):
    import torch

    from scidiff.graphs import load_graphs, save_graphs, smiles_to_data
    from scidiff.graphs.datasets import graph_to_data

    graphs = [smiles_to_data("CC(=O)Nc1ccccc1"), smiles_to_data("O"), graph_to_data(community_small_graph(3))]
    back = load_graphs(save_graphs(graphs, tmp_path / "g.safetensors"))
    assert len(back) == 3
    for d, e in zip(graphs, back):
        assert int(e.num_nodes) == int(d.num_nodes)
        assert torch.equal(e.edge_index, d.edge_index.long())
        x = d.x.reshape(-1) if d.x is not None else torch.zeros(int(d.num_nodes), dtype=torch.long)
        assert torch.equal(e.x, x.long())
    with pytest.raises(ValueError, match="at least one graph"):
        save_graphs([], tmp_path / "empty.safetensors")
    from safetensors.torch import save_file
    save_file({"a": torch.zeros(1)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ValueError, match="not a graph file"):
        load_graphs(tmp_path / "other.safetensors")

