"""The forward-backward corrector of the graph sampler: it keeps an exactly sampled law exact, mends the joint
errors of factorised reverse steps, counts its denoiser calls and stays batch-independent."""

import networkx as nx
import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("torch_geometric")

from graph_oracles import mixture_oracle  # noqa: E402

from scidiff.diffusion import seeded_generators  # noqa: E402
from scidiff.graphs.datasets import graph_to_data  # noqa: E402
from scidiff.graphs.model import BlockDiffusion, prepare  # noqa: E402

P_X = torch.tensor([0.6, 0.3, 0.1])  # node types, i.i.d.
P_E = torch.tensor([0.25, 0.75])  # the one edge of a two-node graph: absent / present


def _product_law_model(T=20):
    """Two-node graphs with independent node types and edge: the per-entry posterior is the exact reverse kernel,
    so reverse sampling is exact on any time grid. The marginals m (from the records) differ from the law."""
    recs = [(torch.tensor([a, b]), torch.tensor([[0, e], [e, 0]]), torch.tensor([2]))
            for a, b, e in [(0, 1, 0), (1, 2, 0), (2, 0, 1)]]
    model = BlockDiffusion.from_records(recs, 3, 2, max_hops=0, T=T, hidden=8, hidden_e=8, layers=1)
    assert not torch.allclose(model.m_x, P_X) and not torch.allclose(model.m_e, P_E)

    def exact(xt, et, mask, tgt, tgt_e, t):
        abar = model.abar[t].reshape(-1, 1, 1)
        # p(x0 = c | z_t = k) ∝ p(c) q(z_t = k | c), q(z_t = k | c) = abar [c = k] + (1 - abar) m_k
        lx = P_X * (abar * F.one_hot(xt, 3) + (1 - abar) * model.m_x[xt].unsqueeze(-1))
        le = P_E * (abar[..., None] * F.one_hot(et, 2) + (1 - abar[..., None]) * model.m_e[et].unsqueeze(-1))
        return lx.log(), le.log()

    model._denoise = exact
    return model


def test_corrector_keeps_an_exact_law():
    """Forward-backward moves with the exact kernel leave every q(z_s) invariant, so the samples keep the law's
    frequencies. Re-noising by the wrong amount fails here: not at all (repeating the step from z_s as if it were
    z_t: types 0.70 / 0.25 / 0.05), fully (alpha = 0) or twice over (alpha = abar_t^2 / abar_s: 0.55 / 0.32 / 0.13)."""
    model = _product_law_model()
    graphs, info = model.sample(3000, steps=4, corrector=2, generator=torch.Generator().manual_seed(0))
    assert info["nfe"] == 12
    x = torch.cat([gx for gx, _ in graphs])
    e = torch.stack([ga[0, 1] for _, ga in graphs])
    fx, fe = torch.bincount(x, minlength=3) / len(x), torch.bincount(e, minlength=2) / len(e)
    assert torch.allclose(fx, P_X, atol=0.025), fx
    assert torch.allclose(fe, P_E, atol=0.025), fe


def test_corrector_mends_factorised_steps():
    """With the exact per-entry denoiser of a two-graph law and only 3 reverse steps, entries drawn independently
    often blend the two graphs; corrector moves at each level bring most samples back to a whole graph."""
    path, star = nx.path_graph(5), nx.star_graph(4)
    recs = prepare([graph_to_data(path), graph_to_data(star)], 0)
    model = BlockDiffusion.from_records(recs, 1, 2, max_hops=0, T=60, hidden=8, hidden_e=8, layers=1)
    targets = [(r[0], r[1]) for r in recs]
    model._denoise = mixture_oracle(model, targets, [0.3, 0.7])

    def whole(corrector):
        graphs, _ = model.sample(400, steps=3, corrector=corrector, generator=torch.Generator().manual_seed(0))
        return sum(any(torch.equal(a, ga) for _, ga in targets) for _, a in graphs) / len(graphs)

    plain, corrected = whole(0), whole(3)
    assert plain < 0.88 and corrected > 0.93, (plain, corrected)


def test_corrector_window_calls_and_batch_independence():
    model = _product_law_model()
    # grid 20, 16, 12, 8, 4, 0: two steps start at t <= 10, each repeated twice more
    _, info = model.sample(4, steps=5, corrector=2, corrector_t_max=10, generator=seeded_generators(4))
    assert info["nfe"] == 5 + 2 * 2
    big, _ = model.sample(6, steps=5, corrector=1, generator=seeded_generators(6))
    small, _ = model.sample(2, steps=5, corrector=1, generator=seeded_generators([4, 5]))
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(big[4:], small))
    with pytest.raises(ValueError, match="corrector must be >= 0"):
        model.sample(2, corrector=-1)
