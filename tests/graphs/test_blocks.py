import networkx as nx
import pytest
import torch

pytest.importorskip("torch_geometric")

from scidiff.graphs.blocks import block_decomposition, order_by_blocks  # noqa: E402
from scidiff.graphs.datasets import community_small_graph, graph_to_data  # noqa: E402
from scidiff.graphs.molecules import dense_types, smiles_to_data  # noqa: E402


def blocks_of(g: nx.Graph, hops: int) -> torch.Tensor:
    d = graph_to_data(g)
    return block_decomposition(d.edge_index, d.num_nodes, hops)


@pytest.mark.parametrize("hops", [1, 2, 3])
@pytest.mark.parametrize("seed", range(4))
def test_permutation_invariant(seed, hops):
    """Relabelling the nodes relabels the blocks and nothing else: block(pi(v)) in pi(G) = block(v) in G."""
    g = community_small_graph(seed) if seed % 2 else nx.gnp_random_graph(14, 0.25, seed=seed)
    ids = blocks_of(g, hops)
    perm = torch.randperm(g.number_of_nodes(), generator=torch.Generator().manual_seed(seed))
    h = nx.relabel_nodes(g, {v: int(perm[v]) for v in g.nodes})
    h = nx.convert_node_labels_to_integers(h, ordering="sorted")
    ids_h = blocks_of(h, hops)
    assert torch.equal(ids_h[perm], ids)


def test_known_decompositions():
    # a star: leaves peeled first (generated last), the centre is the first block
    star = blocks_of(nx.star_graph(5), 1)
    assert star[0] == 0 and bool((star[1:] == 1).all())
    # a path of 5: ends, then their neighbours, then the middle -> middle generated first
    assert blocks_of(nx.path_graph(5), 1).tolist() == [2, 1, 0, 1, 2]
    # a cycle is vertex-transitive: one block; max_hops = 0 is always one block
    assert blocks_of(nx.cycle_graph(7), 3).unique().numel() == 1
    assert blocks_of(nx.path_graph(5), 0).unique().numel() == 1
    with pytest.raises(ValueError, match="outside"):
        block_decomposition(torch.tensor([[0], [9]]), 3)


def test_order_by_blocks_is_contiguous():
    d = smiles_to_data("CC(=O)Nc1ccc(Cl)cc1")
    x, adj = dense_types(d)
    ids = block_decomposition(d.edge_index, d.num_nodes, 3)
    xo, ao, sizes = order_by_blocks(x, adj, ids)
    assert int(sizes.sum()) == x.numel() and sorted(xo.tolist()) == sorted(x.tolist())
    assert int(ao.sum()) == int(adj.sum()) and torch.equal(ao, ao.T)
