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
