"""The optional valence-constrained sampler: it changes nothing when no constraint binds, never exceeds a
capacity, and turns an untrained model's over-valent molecules into ones RDKit accepts."""

import pytest
import torch

pytest.importorskip("torch_geometric")

from scidiff.diffusion import seeded_generators  # noqa: E402
from scidiff.graphs.discrete import symmetric_edge_sample, valence_constrained_edge_sample  # noqa: E402
from scidiff.graphs.model import BlockDiffusion, prepare  # noqa: E402
from scidiff.graphs.molecules import MAX_VALENCE, smiles_to_data, types_to_mol  # noqa: E402


def _probs(b=6, n=7, k=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    p = torch.rand(b, n, n, k, generator=g) ** 3
    p = (p + p.transpose(1, 2)) / 2
    return p / p.sum(-1, keepdim=True)


def test_identical_to_unconstrained_when_no_constraint_binds():
    p = _probs()
    free = torch.ones(6, 7, 7, dtype=torch.bool)
    fixed = torch.zeros(6, 7, 7, dtype=torch.long)
    a = symmetric_edge_sample(p, seeded_generators(range(6)))
    b = valence_constrained_edge_sample(p, fixed, free, torch.full((6, 7), 99), seeded_generators(range(6)))
    assert torch.equal(a, b)


def test_capacities_hold_and_fixed_pairs_are_kept_and_counted():
    b, n = 64, 7
    p = _probs(b, n, seed=1)
    g = torch.Generator().manual_seed(2)
    cap = torch.randint(0, 4, (b, n), generator=g)
    # a clean prefix (nodes 0..2) with a fixed single bond 0-1, as in a PARD block step
    fixed = torch.zeros(b, n, n, dtype=torch.long)
    fixed[:, 0, 1] = fixed[:, 1, 0] = 1
    cap[:, :2] = cap[:, :2].clamp_min(1)
    tgt = torch.arange(n) >= 3
    free = (tgt[:, None] | tgt[None, :]) & ~torch.eye(n, dtype=torch.bool)
    free = free.expand(b, n, n)
    z = valence_constrained_edge_sample(p, fixed, free, cap, torch.Generator().manual_seed(3))
    assert torch.equal(z, z.transpose(1, 2)) and (torch.diagonal(z, dim1=1, dim2=2) == 0).all()
    assert torch.equal(z[:, :3, :3], fixed[:, :3, :3])
    assert (z.sum(-1) <= cap).all()
    unconstrained = symmetric_edge_sample(p, torch.Generator().manual_seed(3))
    assert ((unconstrained * free).sum(-1) + fixed.sum(-1) > cap).any()  # the constraint did bind


@pytest.mark.parametrize("hops", [0, 3])
def test_untrained_model_over_valent_without_the_option_valid_with_it(hops):
    recs = prepare([smiles_to_data(s) for s in ("CC(=O)Nc1ccc(Cl)cc1", "O=C(O)c1ccccc1Br", "CSCC(N)C(=O)O")], hops)
    torch.manual_seed(0)
    model = BlockDiffusion.from_records(recs, 7, 4, max_hops=hops, T=8, hidden=16, hidden_e=8, layers=1)
    cap = torch.tensor(MAX_VALENCE)

    def over_valent(graphs):
        return sum(bool((a.sum(1) > cap[x]).any()) for x, a in graphs)

    plain, _ = model.sample(24, generator=torch.Generator().manual_seed(0))
    constrained, _ = model.sample(24, generator=torch.Generator().manual_seed(0), max_valence=MAX_VALENCE)
    assert over_valent(plain) > 6
    assert over_valent(constrained) == 0
    assert all(types_to_mol(x, a) is not None for x, a in constrained)


def test_max_valence_shape_is_checked():
    recs = prepare([smiles_to_data("CCO")], 0)
    model = BlockDiffusion.from_records(recs, 7, 4, T=4, hidden=16, hidden_e=8, layers=1)
    with pytest.raises(ValueError, match="max_valence needs one entry per node type"):
        model.sample(2, max_valence=[4, 3])


def test_fit_with_ema_and_save_load_round_trip(tmp_path):
    from scidiff.graphs.model import fit, load_model, save_model

    recs = prepare([smiles_to_data(s) for s in ("CCO", "CC(=O)O", "c1ccccc1")], 0)
    torch.manual_seed(0)
    model = BlockDiffusion.from_records(recs, 7, 4, T=6, hidden=16, hidden_e=8, layers=1)
    init = {k: v.clone() for k, v in model.state_dict().items()}
    twin = BlockDiffusion.from_records(recs, 7, 4, T=6, hidden=16, hidden_e=8, layers=1)
    twin.load_state_dict(init)
    fit(twin, recs, steps=1, batch_size=2, lr=1e-2)
    info = fit(model, recs, steps=1, batch_size=2, lr=1e-2, ema=0.999)
    # one step of averaging with the warm-started decay min(0.999, 1/10): 0.1 init + 0.9 trained
    for k, v in model.named_parameters():
        assert torch.allclose(v, 0.1 * init[k] + 0.9 * dict(twin.named_parameters())[k], atol=1e-6), k
    path = save_model(model, tmp_path / "m.safetensors", info)
    loaded, meta = load_model(path)
    assert meta["steps"] == 1
    a, _ = model.sample(3, generator=torch.Generator().manual_seed(0))
    b, _ = loaded.sample(3, generator=torch.Generator().manual_seed(0))
    assert all(torch.equal(x1, x2) and torch.equal(a1, a2) for (x1, a1), (x2, a2) in zip(a, b))



@pytest.mark.parametrize("name, n_max, hops, molecules, stages, total_steps, total_seen",
                         [("moses15", 15, 0, 10144, 6, 27536, 1357600), ("moses12", 12, 0, 435, 1, 7512, 240384),
                          ("moses15_pard", 15, 3, 10144, 4, 8851, 605120)])
def test_shipped_models_load_by_name_with_their_record(name, n_max, hops, molecules, stages, total_steps, total_seen):
    """The shipped weights resolve by name; their record says what they were trained on, stage by stage, and
    adds up to the totals of the model cards."""
    from scidiff.graphs.model import load_model

    model, info = load_model(name)
    assert model.n_max == n_max and model.config["max_hops"] == hops
    assert info["train_molecules"] == molecules and info["steps"] > 0
    assert info["graphs_seen"] == info.get("batch_size", 32) * info["steps"]
    records = [info]
    while "init_record" in records[-1]:
        records.append(records[-1]["init_record"])
    assert len(records) == stages and sum(r["steps"] for r in records) == total_steps
    assert sum(r["graphs_seen"] for r in records) == total_seen

def test_load_model_rejects_other_safetensors(tmp_path):
    from safetensors.torch import save_file

    from scidiff.graphs.model import load_model

    save_file({"w": torch.zeros(2)}, tmp_path / "other.safetensors", metadata={"format": "something-else"})
    with pytest.raises(ValueError, match="not a graph diffusion model"):
        load_model(tmp_path / "other.safetensors")


def test_fit_checks_its_budget_and_ema():
    from scidiff.graphs.model import fit

    recs = prepare([smiles_to_data("CCO")], 0)
    model = BlockDiffusion.from_records(recs, 7, 4, T=4, hidden=16, hidden_e=8, layers=1)
    with pytest.raises(ValueError, match="ema must lie in"):
        fit(model, recs, steps=1, ema=1.5)
    with pytest.raises(ValueError, match="give steps, seconds or stop"):
        fit(model, recs)
