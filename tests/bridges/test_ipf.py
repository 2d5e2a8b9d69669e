import pytest
import torch
from torch import nn

from scidiff.bridges import flower, run_problem
from scidiff.bridges.ipf import ForwardBackwardNet, divergence_loss, simulate_paths, train_ipf
from scidiff.bridges.matching import sample_bridge, train_bridge


class _Outward(nn.Module):
    """An adversarial policy pushing every point radially outwards, hard."""

    def forward(self, x, t):
        return 50.0 * x / x.norm(dim=-1, keepdim=True).clamp_min(1e-3)


class _Linear(nn.Module):
    def __init__(self, A):
        super().__init__()
        self.A = A

    def forward(self, x, t):
        return x @ self.A.T


def test_hutchinson_divergence_is_unbiased():
    g = torch.Generator().manual_seed(0)
    A = torch.randn(3, 3, generator=g)
    x = torch.randn(20000, 3, generator=g)
    t = torch.zeros(20000)
    zero = torch.zeros(20000, 3)
    # loss = 1/2 |Ax|^2 + sigma tr(A) in expectation over the Rademacher probes.
    loss = divergence_loss(_Linear(A), zero, x, t, sigma=2.0, generator=g)
    expected = 0.5 * ((x @ A.T) ** 2).sum(-1).mean() + 2.0 * torch.trace(A)
    assert abs(float((loss - expected).detach())) < 0.06


def test_divergence_objective_is_minimised_by_the_time_reversal():
    # Paths of sigma dW from N(0, 1): p_t = N(0, 1 + sigma^2 t); with z_f = 0 the minimiser is z_b = sigma grad log p_t.
    g = torch.Generator().manual_seed(1)
    sigma, t = 0.8, 0.5
    x = torch.randn(50000, 1, generator=g) * (1 + sigma**2 * t) ** 0.5
    tt, zero = torch.full((50000,), t), torch.zeros(50000, 1)
    true = -sigma / (1 + sigma**2 * t)
    losses = {k: float(divergence_loss(_Linear(torch.tensor([[k]])), zero, x, tt, sigma, g))
              for k in (true, 0.7 * true, 1.3 * true, 0.0)}
    assert min(losses, key=losses.get) == true


def test_training_rollouts_are_reflected_inside_the_domain():
    dom = flower()
    g = torch.Generator().manual_seed(2)
    start = dom.sample_uniform(400, g)
    for direction in ("forward", "backward"):
        states, times = simulate_paths(_Outward(), start, 0.5, dom, direction, 20, generator=g)
        assert states.shape == (21, 400, 2) and times.shape == (21,)
        assert dom.contains(states.reshape(-1, 2)).all()
    loose, _ = simulate_paths(_Outward(), start, 0.5, dom, "forward", 20, boundary="none", generator=g)
    assert not dom.contains(loose[-1]).all()  # the same policy without reflection leaves


def test_ipf_on_a_domain_trains_and_samples_inside():
    dom = flower()
    g = torch.Generator().manual_seed(3)
    x0 = dom.sample_uniform(300, g) * 0.3
    x1 = dom.sample_uniform(300, g)
    net = train_bridge(x0, x1, 0.5, method="ipf", domain=dom, hidden=16, depth=2, generator=g, progress=False,
                       ipf={"n_stages": 1, "n_iter": 5, "n_paths": 64, "n_steps": 10, "batch_size": 64})
    assert isinstance(net, ForwardBackwardNet) and not net.training
    assert any(p.abs().sum() > 0 for p in net.z_f.net[-1].parameters())  # both halves were trained
    assert any(p.abs().sum() > 0 for p in net.z_b.net[-1].parameters())
    out = sample_bridge(net, x0[:100], 0.5, dom, n_steps=10, generator=g, progress=False)
    assert dom.contains(out).all()


def test_untrained_pair_is_the_reference_process():
    net = ForwardBackwardNet(2, sigma=0.7, hidden=8, depth=1)
    v, s = net(torch.randn(5, 2), torch.rand(5))
    assert (v == 0).all() and (s == 0).all()


def test_ipf_problem_config_runs():
    report = run_problem({"method": "ipf", "n_train": 200, "n_eval": 100, "hidden": 16, "depth": 2, "n_steps": 8,
                          "ipf": {"n_stages": 1, "n_iter": 3, "n_paths": 32, "batch_size": 32},
                          "boundaries": ["reflect"]})
    assert report["results"][0]["method"] == "ipf" and report["results"][0]["escaped_paths"] == 0


def test_bad_ipf_inputs_raise():
    x = torch.randn(10, 2)
    with pytest.raises(ValueError, match="method"):
        train_bridge(x, x, 1.0, method="dsb")
    with pytest.raises(ValueError, match="unknown ipf options"):
        train_bridge(x, x, 1.0, method="ipf", ipf={"stages": 2})
    with pytest.raises(ValueError, match="sigma"):
        train_ipf(x, x, 1.0, net=ForwardBackwardNet(2, sigma=0.5))
    with pytest.raises(ValueError, match="n_paths"):
        train_ipf(x, x, 1.0, n_paths=1)
    with pytest.raises(ValueError, match="outside"):
        train_ipf(x * 10, x, 1.0, domain=flower())
    with pytest.raises(ValueError, match="ipf config"):
        run_problem({"ipf": 3})


class _LinearPolicy(nn.Module):
    """``z(x, t) = a_k x + c_k`` on the Euler grid ``t_k = k / n``: a family that holds the Gaussian SB's policies."""

    def __init__(self, n):
        super().__init__()
        self.n = n
        self.a, self.c = nn.Parameter(torch.zeros(n + 1)), nn.Parameter(torch.zeros(n + 1))

    def forward(self, x, t):
        k = (t * self.n).round().long().clamp(0, self.n)
        return self.a[k, None] * x + self.c[k, None]


def test_ipf_with_linear_policies_on_a_coarse_grid_finds_the_gaussian_sb():
    # Cheap IPF: 10 Euler steps and per-step linear policies. Exact IPF on this grid converges to Cov(X0, X1) 0.615,
    # Var(X1) 1.025 (closed form 0.618, 1); pairing each cached state with the frozen policy at its own time instead
    # of the time of the step that produced it drifts to 0.58 and 0.88 (docs/bridges.md).
    n = 10
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(100000, 1, generator=g) - 0.1
    x1 = torch.randn(100000, 1, generator=g) + 0.1
    net = ForwardBackwardNet(1, 1.0, hidden=1, depth=1)
    net.z_f, net.z_b = _LinearPolicy(n), _LinearPolicy(n)
    train_ipf(x0, x1, 1.0, net=net, n_stages=5, n_iter=100, n_paths=20000, n_steps=n, batch_size=1024, lr=0.1,
              anneal=True, ema_decay=0.9, generator=g, progress=False)
    z0 = torch.randn(50000, 1, generator=g) - 0.1
    z1 = sample_bridge(net, z0, 1.0, n_steps=n, generator=g, progress=False)
    cov = torch.cov(torch.cat([z0, z1], 1).T.double())
    assert abs(float(cov[0, 1] / cov[0, 0]) - 0.618) < 0.025
    assert abs(float(cov[1, 1]) - 1.0) < 0.07 and abs(float(z1.mean()) - 0.1) < 0.05


@pytest.mark.slow
def test_ipf_recovers_the_gaussian_sb_coupling_to_0_01():
    # N(-0.1, 1) -> N(0.1, 1), sigma = 1: Cov(X0, X1) = (sqrt(5) - 1) / 2 = 0.6180. What it takes (docs/bridges.md):
    # the step-indexed cache (half_cache), 50000 paths per half (1000 leave a sampling error of 0.03 in the mean and
    # 0.045 in the variance of every rollout, and dC/dVar(X1) = 1/sqrt(5) here), and the learning rate annealed
    # within each half. About 4 minutes on one core.
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(100000, 1, generator=g) - 0.1
    x1 = torch.randn(100000, 1, generator=g) + 0.1
    net = train_ipf(x0, x1, 1.0, n_stages=6, n_iter=400, lr=3e-3, anneal=True, hidden=64, n_steps=50,
                    n_paths=50000, generator=g, progress=False)
    z0 = torch.randn(200000, 1, generator=g) - 0.1
    z1 = sample_bridge(net, z0, 1.0, n_steps=50, generator=g, progress=False)
    cov = torch.cov(torch.cat([z0, z1], 1).T.double())
    slope = float(cov[0, 1] / cov[0, 0])  # regression slope Cov / Var(X0): estimator noise about 0.002 here
    print(f"IPF 1D Gaussian: slope {slope:.4f} mean {float(z1.mean()):.4f} var {float(cov[1, 1]):.4f}")
    assert abs(slope - 0.6180) < 0.01
    assert abs(float(z1.mean()) - 0.1) < 0.02 and abs(float(cov[1, 1]) - 1.0) < 0.03
    back = sample_bridge(net, torch.randn(100000, 1, generator=g) + 0.1, 1.0, direction="backward", n_steps=50,
                         generator=g, progress=False)
    assert abs(float(back.mean()) + 0.1) < 0.02
