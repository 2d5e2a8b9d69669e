"""PARD's block decomposition: the unique partial order of a graph's nodes from higher-order degrees.

Zhao, Ding & Akoglu, "Pard: Permutation-invariant autoregressive diffusion for graph generation" (NeurIPS 2024),
Sec. 3.1: repeatedly remove the set of nodes of smallest higher-order degree from the remaining graph. With
x_0 = 1 and x_k = (I + A_rem) x_{k-1} (k = 1..K), a node's weight is w = sum_k x_k N^(K-k), i.e. 1-hop counts
compared first, then 2-hop, ... All nodes that tie at the minimum form one block, so the blocks depend only on
the graph, never on the node labels. Generation runs in the reverse order of removal: the dense core first,
the leaves last. K = 0 gives a single block (plain one-shot diffusion).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def block_decomposition(edge_index: Tensor, num_nodes: int, max_hops: int = 3) -> Tensor:
    """Block id per node in generation order (0 = generated first) for an undirected graph.

    ``edge_index`` [2, E] may list each edge once or in both directions.
    """
    if max_hops < 0:
        raise ValueError(f"max_hops must be >= 0, got {max_hops}")
    n = int(num_nodes)
    ei = torch.as_tensor(edge_index).long()
    if ei.numel() and (int(ei.min()) < 0 or int(ei.max()) >= n):
        raise ValueError(f"edge_index refers to nodes outside 0..{n - 1}")
    adj = np.zeros((n, n), dtype=np.int64)
    adj[ei[0].numpy(), ei[1].numpy()] = 1
    adj = np.maximum(adj, adj.T)
    np.fill_diagonal(adj, 0)
    remaining = np.ones(n, dtype=bool)
    peeled: list[np.ndarray] = []
    while remaining.any():
        a_rem = adj * remaining[:, None] * remaining[None, :]
        x = np.ones(n, dtype=np.int64)
        w = np.zeros(n, dtype=np.int64)
        for _ in range(max_hops):
            x = x + a_rem @ x  # (I + A_rem) x_{k-1}
            w = w * n + x  # Horner form of sum_k x_k n^(K-k)
        block = remaining & (w == w[remaining].min())
        peeled.append(block)
        remaining &= ~block
    ids = np.empty(n, dtype=np.int64)
    for p, block in enumerate(peeled):
        ids[block] = len(peeled) - 1 - p
    return torch.from_numpy(ids)


def order_by_blocks(x: Tensor, adj: Tensor, blocks: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Relabel nodes so blocks are contiguous in generation order; returns ``(x, adj, block_sizes)``.

    The order inside a block is arbitrary: the denoiser is permutation equivariant."""
    perm = torch.argsort(blocks, stable=True)
    sizes = torch.bincount(blocks, minlength=int(blocks.max()) + 1 if blocks.numel() else 0)
    return x[perm], adj[perm][:, perm], sizes
