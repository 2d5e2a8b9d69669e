import math

import networkx as nx
import pytest
import torch

pytest.importorskip("torch_geometric")

from scidiff.graphs.datasets import graph_to_data  # noqa: E402
from scidiff.graphs.guidance import MLPRegressor, cgd_penalty, cgd_scales, train_regressor  # noqa: E402
from scidiff.graphs.model import BlockDiffusion, prepare  # noqa: E402

from graph_oracles import mixture_oracle  # noqa: E402


def test_cgd_penalty_matches_the_gaussian_formula():
    g = torch.Generator().manual_seed(0)
    mu, var, phi = torch.randn(5, generator=g, dtype=torch.float64), torch.rand(5, generator=g, dtype=torch.float64) + 0.5, torch.randn(5, 3, generator=g, dtype=torch.float64)
    t, ls, ld, tau = 0.3, 2.0, 0.5, 1.0
    c_s, c_d = cgd_scales(t, ls, ld)
    assert c_s == pytest.approx(ls / (1 + math.exp(7 * (t - 0.5))) + ls / 10)
    k = c_s * phi @ phi.T + c_d * torch.eye(5, dtype=torch.float64)

    def nll(v):
        return 0.5 * (v @ torch.linalg.solve(k, v) + torch.logdet(k) + 5 * math.log(2 * math.pi))

    assert cgd_penalty(mu, var, phi, t, ls, ld, tau).item() == pytest.approx((nll(mu) + nll(var - tau)).item(), rel=1e-10)
    with pytest.raises(ValueError, match="phi"):
        cgd_penalty(mu, var, phi[:3], t, ls, ld)



def test_cgd_penalty_with_one_noise_level_per_context_point():
    """The paper's trainer draws t per context point: K_ij = sqrt(c_s(t_i) c_s(t_j)) phi_i.phi_j + delta_ij c_d(t_i);
    a constant vector of levels gives the scalar-t penalty."""
    g = torch.Generator().manual_seed(1)
    mu, var = torch.randn(4, generator=g, dtype=torch.float64), torch.rand(4, generator=g, dtype=torch.float64) + 0.5
    phi, t = torch.randn(4, 3, generator=g, dtype=torch.float64), torch.tensor([0.05, 0.3, 0.6, 0.95], dtype=torch.float64)
    ls, ld = 0.7, 0.2
    c = [cgd_scales(float(ti), ls, ld) for ti in t]
    k = torch.tensor([[math.sqrt(c[i][0] * c[j][0]) * float(phi[i] @ phi[j]) + (c[i][1] if i == j else 0.0)
                       for j in range(4)] for i in range(4)], dtype=torch.float64)
    prior = torch.distributions.MultivariateNormal(torch.zeros(4, dtype=torch.float64), covariance_matrix=k)
    want = -(prior.log_prob(mu) + prior.log_prob(var - 1.0))
    assert cgd_penalty(mu, var, phi, t, ls, ld).item() == pytest.approx(want.item(), rel=1e-10)
    same = torch.full((4,), 0.3, dtype=torch.float64)
    assert cgd_penalty(mu, var, phi, same, ls, ld).item() == pytest.approx(cgd_penalty(mu, var, phi, 0.3, ls, ld).item(), rel=1e-12)

def test_context_regulariser_reverts_to_the_prior_off_the_data():
    """CGD's claim: trained with the context term, the regressor keeps fitting the labelled range but reverts to the
    prior mean (0) with a larger variance where only context points lie; the plain regressor extrapolates."""
    g = torch.Generator().manual_seed(0)

    def labelled():
        x = torch.rand(64, 1, generator=g) * 2 - 1  # labelled inputs in [-1, 1]
        return (x,), 2 * x[:, 0], 0.0

    def context():
        return (torch.rand(64, 1, generator=g) * 8 - 4,), 0.0  # unlabelled inputs in [-4, 4]

    torch.manual_seed(0)
    plain, guided = MLPRegressor(1), MLPRegressor(1)
    guided.load_state_dict(plain.state_dict())
    train_regressor(plain, labelled, steps=300, lr=3e-3)
    train_regressor(guided, labelled, context, steps=300, lr=3e-3, lambda_s=0.01, lambda_d=10.0)
    inside, outside = torch.tensor([[0.5]]), torch.tensor([[3.5], [-3.5]])
    with torch.no_grad():
        assert abs(guided(inside)[0].item() - 1.0) < 0.25  # still fits the data
        mu_p, var_p, _ = plain(outside)
        mu_g, var_g, _ = guided(outside)
    assert bool((mu_g.abs() < 0.5 * mu_p.abs()).all()), (mu_g, mu_p)
    assert bool((var_g > var_p).all()), (var_g, var_p)


def test_guidance_tilts_sampling_towards_the_property():
    """Exact denoiser of a 50/50 mix of a 5-path (4 edges) and a 5-cycle (5 edges); guiding with the gradient of
    w * (edge count) makes the cycle more frequent, and w = 0 leaves the law unchanged."""
    recs = prepare([graph_to_data(nx.path_graph(5)), graph_to_data(nx.cycle_graph(5))], 0)
    model = BlockDiffusion.from_records(recs, 1, 2, max_hops=0, T=40)
    model._denoise = mixture_oracle(model, [(r[0], r[1]) for r in recs], [0.5, 0.5])

    def edge_count_guidance(w):
        def guide(xt, et, mask, tgt, tgt_e, t):
            ge = torch.zeros(*et.shape, 2)
            ge[..., 1] = w  # d(#edges)/d(one-hot) = 1 on the "edge" class
            return torch.zeros(*xt.shape, 1), ge * tgt_e.unsqueeze(-1)
        return guide

    def cycle_fraction(w):
        graphs, _ = model.sample(200, generator=torch.Generator().manual_seed(0), guidance=edge_count_guidance(w))
        return sum(int(a.sum()) // 2 == 5 for _, a in graphs) / 200

    f0, f1 = cycle_fraction(0.0), cycle_fraction(1.0)
    assert abs(f0 - 0.5) < 0.1 and f1 > f0 + 0.15, (f0, f1)


def _dense_onehot(smiles_list):
    """One-hot atom types and bond classes of molecules, padded to a batch: (x1, e1, mask)."""
    from scidiff.graphs.model import _pad
    from scidiff.graphs.molecules import dense_types, smiles_to_data

    x, a, mask = _pad([dense_types(smiles_to_data(s)) for s in smiles_list], 12)
    return torch.nn.functional.one_hot(x, 7).float(), torch.nn.functional.one_hot(a, 4).float(), mask


def test_descriptors_agree_with_rdkit():
    """Heavy atoms, implicit hydrogens (all and on N / O), rings and molecular weight of hand-made molecules
    against RDKit's own counts."""
    pytest.importorskip("rdkit")
    from rdkit import Chem
    from rdkit.Chem import Descriptors, rdMolDescriptors

    from scidiff.graphs.guidance import descriptors

    smiles = ["CCO", "Oc1ccccc1", "CC(N)=O", "N#CCCl", "CS(=O)(=O)N", "C1CC1Br", "FC(F)(F)c1ccncc1"]
    x1, e1, mask = _dense_onehot(smiles)
    d = descriptors(x1, e1, mask)
    for i, s in enumerate(smiles):
        mol = Chem.MolFromSmiles(s)
        h_on_no = sum(a.GetTotalNumHs() for a in mol.GetAtoms() if a.GetSymbol() in "NO")
        assert d[i, 10].item() * 10 == pytest.approx(sum(a.GetTotalNumHs() for a in mol.GetAtoms()), abs=1e-5), s
        assert d[i, 11].item() * 3 == pytest.approx(h_on_no, abs=1e-5), s
        assert d[i, 12].item() * 10 == pytest.approx(mol.GetNumAtoms(), abs=1e-5), s
        assert d[i, 13].item() * 2 == pytest.approx(rdMolDescriptors.CalcNumRings(mol), abs=1e-5), s
        assert d[i, 14].item() * 200 == pytest.approx(Descriptors.MolWt(mol), abs=0.02), s
        assert d[i, :7].sum().item() * 5 == pytest.approx(mol.GetNumAtoms(), abs=1e-5), s


def test_descriptors_are_differentiable_and_check_the_alphabet():
    pytest.importorskip("rdkit")
    from scidiff.graphs.guidance import descriptors

    x1, e1, mask = _dense_onehot(["CCO", "c1ccccc1"])
    x1.requires_grad_(True)
    e1.requires_grad_(True)
    gx, ge = torch.autograd.grad(descriptors(x1, e1, mask)[:, 14].sum(), (x1, e1))  # d weight: the atom masses ...
    assert gx[0, 0, 0].item() * 200 == pytest.approx(12.011 + 1.008 * 4, abs=1e-3)
    assert ge[0, 0, 1, 1].item() < 0  # ... and a bond removes hydrogens
    assert gx[0, 5].abs().sum() == 0  # padding gets no gradient
    with pytest.raises(ValueError, match="7 MOSES atom types"):
        descriptors(x1[..., :5], e1, mask)


def test_r_squared_by_noise_is_one_for_an_exact_regressor_and_not_above_zero_for_a_constant():
    from scidiff.graphs.guidance import r_squared_by_noise

    recs = prepare([graph_to_data(nx.path_graph(n)) for n in (3, 4, 5, 6)], 0)
    model = BlockDiffusion.from_records(recs, 1, 2, max_hops=0, T=10)
    y = torch.tensor([3.0, 4.0, 5.0, 6.0])

    def exact(xt, et, mask, t):  # the node count is not noised (sizes are fixed)
        return mask.sum(1).float(), torch.ones(len(t)), None

    def constant(xt, et, mask, t):
        return torch.full((len(t),), 7.0), torch.ones(len(t)), None

    g = torch.Generator().manual_seed(0)
    assert r_squared_by_noise(exact, model, recs, y, [1, 5, 10], g) == pytest.approx({1: 1.0, 5: 1.0, 10: 1.0})
    r2 = r_squared_by_noise(constant, model, recs, y, [1, 10], g)
    assert r2[1] == pytest.approx(1 - (4**2 + 3**2 + 2**2 + 1) / 5.0)


@pytest.mark.parametrize("config", [{"hidden": 16, "hidden_e": 8, "layers": 1},
                                    {"quadratic": True, "transformer": False}])
def test_regressor_with_descriptors_learns_and_round_trips(tmp_path, config):
    """A descriptor regressor (with the graph transformer, or an MLP on the quadratic descriptors alone) fits
    molecular weight of noise-free molecules in a few hundred steps (R^2 > 0.9), saves to safetensors and loads
    back to the same predictions; a foreign file is refused."""
    pytest.importorskip("rdkit")
    from rdkit import Chem
    from rdkit.Chem import Descriptors

    from scidiff.graphs.guidance import GraphRegressor, load_regressor, save_regressor

    smiles = ["CCO", "Oc1ccccc1", "CC(N)=O", "N#CCCl", "CS(=O)(=O)N", "C1CC1Br", "CCCCCC", "OCC(O)CO", "CC#N", "C=CC=O"]
    x1, e1, mask = _dense_onehot(smiles)
    x, a = x1.argmax(-1), e1.argmax(-1)
    y = torch.tensor([Descriptors.MolWt(Chem.MolFromSmiles(s)) for s in smiles])
    y = (y - y.mean()) / y.std()
    t = torch.ones(len(smiles), dtype=torch.long)
    torch.manual_seed(0)
    reg = GraphRegressor(7, 4, 12, 10, descriptors=True, hidden_head=32, **config)
    train_regressor(reg, lambda: ((x, a, mask, t), y, 0.0), steps=300, lr=3e-3)
    with torch.no_grad():
        mu = reg(x, a, mask, t)[0]
    assert 1 - float(((mu - y) ** 2).sum() / ((y - y.mean()) ** 2).sum()) > 0.9
    path = save_regressor(reg, tmp_path / "reg.safetensors", {"cut": 0.5})
    back, info = load_regressor(path)
    assert info == {"cut": 0.5}
    with torch.no_grad():
        torch.testing.assert_close(back(x, a, mask, t)[0], mu)
    from safetensors.torch import save_file
    save_file({"w": torch.zeros(1)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ValueError, match="not a guidance regressor"):
        load_regressor(tmp_path / "other.safetensors")


def test_descriptor_options_need_descriptors():
    from scidiff.graphs.guidance import GraphRegressor

    for kw in ({"quadratic": True}, {"transformer": False}):
        with pytest.raises(ValueError, match="need descriptors=True"):
            GraphRegressor(7, 4, 12, 10, **kw)


def test_cosine_schedule_warms_up_peaks_and_ends_at_zero():
    from scidiff.graphs.guidance import lr_factor

    f = lr_factor("cosine", 1000)
    assert f(0) == pytest.approx(1 / 20) and f(19) == pytest.approx(1.0, abs=1e-3)
    assert f(500) == pytest.approx(0.5) and f(999) < 1e-4 and f(1000) == 0.0
    assert [lr_factor("constant", 10)(k) for k in (0, 9)] == [1.0, 1.0]
    with pytest.raises(ValueError, match="schedule"):
        lr_factor("linear", 10)


def test_logp_peak_is_logp_below_the_optimum_and_falls_past_it():
    pytest.importorskip("rdkit")
    from rdkit import Chem
    from rdkit.Chem import Crippen

    from scidiff.graphs.molecules import LOGP_PEAK, logp_peak, molecular_properties

    for smi in ("CCO", "c1ccccc1Cl", "CCCCCCCCCCCC", "BrC(Br)(Br)CCCCCCCC"):
        mol = Chem.MolFromSmiles(smi)
        logp = Crippen.MolLogP(mol)
        expect = logp if logp <= LOGP_PEAK else LOGP_PEAK - 4.0 * (logp - LOGP_PEAK)
        assert logp_peak(mol) == pytest.approx(expect)
    assert logp_peak(Chem.MolFromSmiles("CCCCCCCCCCCC")) < LOGP_PEAK < Crippen.MolLogP(Chem.MolFromSmiles("CCCCCCCCCCCC"))
    assert molecular_properties()["logp_peak"][1] is logp_peak


def test_train_regressor_stops_on_its_wall_clock_budget():
    g = torch.Generator().manual_seed(0)

    def labelled():
        x = torch.rand(16, 1, generator=g)
        return (x,), x[:, 0], 0.0

    hist = train_regressor(MLPRegressor(1), labelled, steps=10**6, seconds=0.3)
    assert 0 < len(hist) < 10**6


def test_cgd_batches_label_only_below_the_cut_and_validate_beyond_it():
    from scidiff.graphs.guidance import cgd_batches

    recs = prepare([graph_to_data(nx.path_graph(n)) for n in (3, 4, 5, 6, 7, 8)], 0)
    model = BlockDiffusion.from_records(recs, 1, 2, max_hops=0, T=10)
    values = torch.tensor([3.0, 4.0, 5.0, 6.0, 7.0, 8.0])  # the node count: readable from any noised input
    labelled, context, val_inputs, val_y, mean, std = cgd_batches(model, recs, values, 5.0, batch=16)
    assert float(mean) == 4.0 and float(std) == 1.0
    (xt, et, mask, t), y, _ = labelled()
    assert torch.equal(mask.sum(1).float(), y * std + mean)  # each label belongs to its molecule
    assert float((y * std + mean).max()) <= 5.0
    assert sorted((mask_v := val_inputs[2]).sum(1).tolist()) == [6, 7, 8]
    assert torch.equal(mask_v.sum(1).float(), val_y * std + mean)
    inputs, u = context()
    assert torch.equal(u, inputs[3].double() / model.T)


def test_cgd_scale_grid_skips_tiny_diagonals():
    from scidiff.graphs.guidance import cgd_scale_grid

    grid = cgd_scale_grid([1e-3, 1e-2, 1e-1, 1, 10], [1e-3, 1e-2, 1e-1, 1, 10])
    assert len(grid) == 24 and (10, 1e-3) not in grid and (10, 1e-2) in grid and (1e-3, 10) in grid
    with pytest.raises(ValueError, match="positive"):
        cgd_scale_grid([0.0], [1.0])


def test_low_noise_regressor_trains_and_guides_only_up_to_t_max():
    from scidiff.graphs.guidance import GraphRegressor, cgd_batches, property_guidance

    recs = prepare([graph_to_data(nx.path_graph(n)) for n in (3, 4, 5, 6)], 0)
    model = BlockDiffusion.from_records(recs, 1, 2, max_hops=0, T=10)
    labelled, context, val_inputs, *_ = cgd_batches(model, recs, torch.arange(4.0), 2.0, batch=64, t_max=3)
    levels = torch.cat([labelled()[0][3], context()[0][3], val_inputs[3]])
    assert levels.min() >= 1 and levels.max() == 3
    with pytest.raises(ValueError, match="t_max"):
        cgd_batches(model, recs, torch.arange(4.0), 2.0, t_max=11)
    reg = GraphRegressor(1, 2, model.n_max, model.T)
    xt, et, mask, _ = val_inputs
    tgt, tgt_e = mask, mask[:, :, None] & mask[:, None, :]
    gx, ge = property_guidance(reg, 5.0, t_max=3)(xt, et, mask, tgt, tgt_e, torch.full((len(xt),), 4))
    assert gx.shape == (*xt.shape, 1) and ge.shape == (*et.shape, 2) and not gx.any() and not ge.any()
    gx, ge = property_guidance(reg, 5.0, t_max=3)(xt, et, mask, tgt, tgt_e, torch.full((len(xt),), 3))
    gx0, ge0 = property_guidance(reg, 5.0)(xt, et, mask, tgt, tgt_e, torch.full((len(xt),), 3))
    assert ge.abs().sum() > 0 and torch.equal(gx, gx0) and torch.equal(ge, ge0)


def test_unlabelled_context_draws_only_molecules_without_labels():
    from scidiff.graphs.guidance import cgd_batches

    recs = prepare([graph_to_data(nx.path_graph(n)) for n in (3, 4, 5, 6, 7, 8)], 0)
    model = BlockDiffusion.from_records(recs, 1, 2, max_hops=0, T=10)
    _, context, *_ = cgd_batches(model, recs, torch.arange(3.0, 9.0), 5.0, batch=64, unlabelled_context=True)
    sizes = context()[0][2].sum(1)
    assert sizes.min() == 6 and sizes.max() == 8  # the node count is the value: only those above the cut


def test_scarce_labels_label_a_random_subset_below_the_cut_and_leave_the_rest_as_context():
    from scidiff.graphs.guidance import cgd_batches, labelled_indices

    sizes = list(range(3, 13))
    recs = prepare([graph_to_data(nx.path_graph(n)) for n in sizes], 0)
    model = BlockDiffusion.from_records(recs, 1, 2, max_hops=0, T=10)
    values = torch.tensor(sizes, dtype=torch.float32)  # the node count: readable from any noised input
    lab = labelled_indices(values, 8.0, n_labelled=3, seed=5)
    assert len(lab) == 3 and all(values[i] <= 8 for i in lab) and lab == labelled_indices(values, 8.0, 3, seed=5)
    assert labelled_indices(values, 8.0) == [0, 1, 2, 3, 4, 5]
    with pytest.raises(ValueError, match="n_labelled"):
        labelled_indices(values, 8.0, n_labelled=7)
    labelled, context, _, _, mean, std = cgd_batches(model, recs, values, 8.0, batch=64, n_labelled=3,
                                                     unlabelled_context=True)
    seen = set((labelled()[0][2].sum(1)).tolist())
    assert seen == {float(values[i]) for i in labelled_indices(values, 8.0, 3)}  # the split's default seed
    assert float(mean) == float(values[labelled_indices(values, 8.0, 3)].mean())
    ctx = set(context()[0][2].sum(1).tolist())
    assert not ctx & seen and ctx <= set(map(float, sizes)) and min(ctx) <= 8  # unlabelled ones below the cut too


def test_raw_labels_are_centred_but_keep_their_units():
    from scidiff.graphs.guidance import cgd_batches

    recs = prepare([graph_to_data(nx.path_graph(n)) for n in (3, 4, 5, 6, 7, 8)], 0)
    model = BlockDiffusion.from_records(recs, 1, 2, max_hops=0, T=10)
    values = torch.tensor([3.0, 4.0, 5.0, 6.0, 7.0, 8.0]) / 10  # a [0, 1] target, as in the paper
    labelled, _, val_inputs, val_y, mean, scale = cgd_batches(model, recs, values, 0.5, batch=16, standardise=False)
    assert float(mean) == pytest.approx(0.4) and float(scale) == 1.0
    (_, _, mask, _), y, _ = labelled()
    assert torch.allclose(y, mask.sum(1).float() / 10 - 0.4)
    assert torch.allclose(val_y, val_inputs[2].sum(1).float() / 10 - 0.4)


def test_context_penalty_is_weighted_as_in_the_paper_trainer():
    """loss = NLL + R * 512 / (B * n_train_batches * C) for B labelled and C context points (prop_trainer.py)."""
    import copy

    from scidiff.graphs.guidance import gaussian_nll

    x, xc = torch.linspace(-1, 1, 8)[:, None], torch.linspace(-3, 3, 16)[:, None]
    torch.manual_seed(0)
    reg = MLPRegressor(1)
    with torch.no_grad():
        mu, var, _ = reg(x)
        mu_c, var_c, _ = reg(xc)
    torch.manual_seed(0)  # train_regressor re-draws a copy's weights with its seed: the frozen context model
    frozen = copy.deepcopy(reg)
    for m in frozen.modules():
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()
    with torch.no_grad():
        phi = frozen(xc)[2]
    want = gaussian_nll(mu, var, x[:, 0]) + cgd_penalty(mu_c, var_c, phi, 0.2, 0.1, 1.0) * 512 / (8 * 3 * 16)
    hist = train_regressor(reg, lambda: ((x,), x[:, 0], 0.0), lambda: ((xc,), 0.2), steps=1, lr=0.0,
                           lambda_s=0.1, lambda_d=1.0, n_train_batches=3)
    assert hist[0] == pytest.approx(want.item(), rel=1e-5)
