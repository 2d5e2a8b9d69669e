import torch

from scidiff.kernels import conjugate_gradient


def test_batched_cg_solves_spd_systems():
    g = torch.Generator().manual_seed(0)
    B = torch.randn(3, 6, 6, generator=g, dtype=torch.float64)
    S = B @ B.transpose(1, 2) + 0.1 * torch.eye(6, dtype=torch.float64)
    b = torch.randn(3, 6, generator=g, dtype=torch.float64)
    x = conjugate_gradient(lambda v: torch.einsum("bij,bj->bi", S, v), b, max_iter=200, tol=1e-12)
    assert torch.allclose(x, torch.linalg.solve(S, b), atol=1e-8)
