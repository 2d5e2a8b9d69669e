import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("torch_geometric")

from scidiff.diffusion import seeded_generators  # noqa: E402
from scidiff.graphs.discrete import (cosine_alpha_bar, forward_probs, limit_distribution, posterior_probs,  # noqa: E402
                                     sample_categorical, symmetric_edge_sample)

M = torch.tensor([0.6, 0.25, 0.1, 0.05], dtype=torch.float64)


def q_step(alpha, m):  # one-step transition matrix Q_t = alpha I + (1 - alpha) 1 m^T
    return alpha * torch.eye(len(m), dtype=m.dtype) + (1 - alpha) * m[None]


def test_schedule_and_limit():
    abar = cosine_alpha_bar(50)
    assert abar[0] == 1 and abar[-1] < 1e-3 and bool((abar[1:] < abar[:-1]).all())
    assert torch.allclose(limit_distribution("uniform", torch.tensor([5.0, 1.0])), torch.tensor([0.5, 0.5], dtype=torch.float64))
    with pytest.raises(ValueError, match="unknown transition"):
        limit_distribution("absorbing", M)
    with pytest.raises(ValueError, match="T must be"):
        cosine_alpha_bar(0)


def test_noise_marginals_match_qbar():
    """Empirical class frequencies of z_t ~ q(z_t | x0) equal abar x0 + (1 - abar) m; and composing the one-step
    kernels Q_1 ... Q_t gives Qbar_t (the schedule is a Markov chain with the stated marginals)."""
    abar = cosine_alpha_bar(20)
    g = torch.Generator().manual_seed(0)
    x0 = torch.tensor([0, 1, 2, 3]).repeat(20000)
    onehot = F.one_hot(x0, 4).double()
    for t in (3, 10, 17):
        z = sample_categorical(forward_probs(onehot, abar[t].reshape(1), M), g)
        for c in range(4):
            freq = torch.bincount(z[x0 == c], minlength=4).double() / (x0 == c).sum()
            expect = abar[t] * F.one_hot(torch.tensor(c), 4).double() + (1 - abar[t]) * M
            assert torch.allclose(freq, expect, atol=0.015), (t, c, freq, expect)
        qbar = torch.eye(4, dtype=torch.float64)
        for k in range(1, t + 1):
            qbar = qbar @ q_step(abar[k] / abar[k - 1], M)
        assert torch.allclose(qbar, q_step(abar[t], M), atol=1e-12)


def test_posterior_is_bayes_consistent():
    """For a known x0, sum_k q(z_t = k | x0) q(z_s | z_t = k, x0) = q(z_s | x0), and each posterior equals
    q(z_t | z_s) q(z_s | x0) / q(z_t | x0) computed with explicit matrices."""
    abar = cosine_alpha_bar(30)
    s, t = 9, 14
    qs, qt, step = q_step(abar[s], M), q_step(abar[t], M), q_step(abar[t] / abar[s], M)
    for c in range(4):
        x0 = F.one_hot(torch.tensor([c]), 4).double()
        total = torch.zeros(4, dtype=torch.float64)
        for k in range(4):
            zt = F.one_hot(torch.tensor([k]), 4).double()
            post = posterior_probs(zt, x0, (abar[t] / abar[s]).reshape(1), abar[s].reshape(1), abar[t].reshape(1), M)[0]
            direct = step[:, k] * qs[c] / qt[c, k]
            assert torch.allclose(post, direct, atol=1e-12)
            total += qt[c, k] * post
        assert torch.allclose(total, qs[c], atol=1e-12)


def test_edges_symmetric_and_batch_independent():
    probs = forward_probs(F.one_hot(torch.zeros(3, 6, 6, dtype=torch.long), 2).double(), torch.full((3,), 0.3),
                          torch.tensor([0.5, 0.5], dtype=torch.float64))
    z = symmetric_edge_sample(probs, seeded_generators(3))
    assert torch.equal(z, z.transpose(1, 2)) and int(z.diagonal(dim1=1, dim2=2).abs().sum()) == 0
    z2 = symmetric_edge_sample(probs[1:2], seeded_generators([1]))
    assert torch.equal(z[1:2], z2)
