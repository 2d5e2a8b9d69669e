import networkx as nx
import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("torch_geometric")

from graph_oracles import mixture_oracle  # noqa: E402

from scidiff.diffusion import seeded_generators  # noqa: E402
from scidiff.graphs.datasets import graph_to_data  # noqa: E402
from scidiff.graphs.model import BlockDiffusion, prepare  # noqa: E402
from scidiff.graphs.molecules import smiles_to_data, types_to_smiles  # noqa: E402


def test_one_shot_sampler_recovers_a_two_graph_mixture():
    """With the exact denoiser of a two-graph law, reverse sampling returns whole graphs (never a blend of the two)
    with the right frequencies: this checks the posterior step, the marginal noise and the block loop together."""
    path, star = nx.path_graph(5), nx.star_graph(4)
    recs = prepare([graph_to_data(path), graph_to_data(star)], 0)
    model = BlockDiffusion.from_records(recs, 1, 2, max_hops=0, T=60)
    targets = [(r[0], r[1]) for r in recs]
    model._denoise = mixture_oracle(model, targets, [0.3, 0.7])
    graphs, info = model.sample(300, generator=torch.Generator().manual_seed(0))
    assert info == {"nfe": 60.0, "blocks": 1.0}
    which = [next(i for i, (gx, ga) in enumerate(targets) if torch.equal(a, ga)) for _, a in graphs]
    frac_star = sum(which) / len(which)
    assert abs(frac_star - 0.7) < 0.08, frac_star


def test_pard_assembles_blocks_in_order():
    """With a denoiser that knows the graph and a size model that knows its block sizes, block-wise generation
    rebuilds the molecule exactly: each block is placed after the fixed prefix and touches only its own edges."""
    data = smiles_to_data("CC(=O)Nc1ccc(Cl)cc1")
    (x, adj, sizes), = prepare([data], 3)
    assert len(sizes) > 2
    model = BlockDiffusion.from_records([(x, adj, sizes)], 7, 4, max_hops=3, T=20)

    def denoise(xt, et, mask, tgt, tgt_e, t):
        n = xt.shape[1]
        # the prefix handed over must be the true one
        assert torch.equal(xt[~tgt & mask], x[:n].expand_as(xt)[~tgt & mask])
        return (20 * F.one_hot(x[:n], 7).float()).expand(xt.shape[0], -1, -1), (20 * F.one_hot(adj[:n, :n], 4).float()).expand(xt.shape[0], -1, -1, -1)

    ends = torch.cumsum(sizes, 0).tolist()

    def size_logits(xp, ap, mask):
        n = int(mask.sum(1).max())
        nxt = int(sizes[ends.index(n) + 1]) if ends.index(n) + 1 < len(sizes) else 0
        return 30 * F.one_hot(torch.tensor([nxt] * xp.shape[0]), model.max_block_size + 1).float()

    model._denoise, model._size_logits = denoise, size_logits
    graphs, info = model.sample(3, steps=5, generator=seeded_generators(3))
    assert info["blocks"] == len(sizes) and info["nfe"] == 5 * len(sizes)
    for gx, ga in graphs:
        assert types_to_smiles(gx, ga) == data.smiles


def test_sample_is_batch_independent_and_checks_steps():
    recs = prepare([graph_to_data(nx.path_graph(5)), graph_to_data(nx.star_graph(4))], 0)
    model = BlockDiffusion.from_records(recs, 1, 2, max_hops=0, T=30)
    model._denoise = mixture_oracle(model, [(r[0], r[1]) for r in recs], [0.5, 0.5])
    big, _ = model.sample(6, generator=seeded_generators(6))
    small, _ = model.sample(2, generator=seeded_generators([4, 5]))
    assert all(torch.equal(a[1], b[1]) for a, b in zip(big[4:], small))
    with pytest.raises(ValueError, match="steps must lie"):
        model.sample(2, steps=31)


@pytest.mark.parametrize("hops", [0, 2])
def test_training_learns_to_denoise(hops):
    """A hundred steps on two molecules: the near-clean loss (t = 1) falls far below its untrained value."""
    torch.manual_seed(0)
    recs = prepare([smiles_to_data(s) for s in ["CC(=O)O", "C1CC1N"]], hops)
    model = BlockDiffusion.from_records(recs, 7, 4, max_hops=hops, T=20, hidden=32, hidden_e=16, layers=2)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        before = model.loss(recs, generator=g, t=1)
    for _ in range(100):
        loss = model.loss(recs, generator=g)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        after = model.loss(recs, generator=g, t=1)
    assert after["loss_x"] < 0.3 * before["loss_x"] and after["loss_e"] < 0.3 * before["loss_e"], (before, after)
    if hops:
        assert after["loss_size"] < 0.3 * before["loss_size"]
