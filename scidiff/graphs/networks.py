"""Permutation-equivariant networks on dense graphs: a graph transformer with an optional PPGN edge update.

* Attention layer after DiGress (Vignac et al. 2023, Sec. 4.1): node attention whose scores are modulated by the
  edge features (FiLM: S * (1 + E_mul) + E_add), the scores themselves update the edges, and a global vector y
  (time, size) FiLMs both and is updated from pooled nodes and edges.
* PPGN update (Maron et al., NeurIPS 2019, "Provably powerful graph networks"), which PARD interleaves with the
  transformer to reach 2-FWL-like expressivity: E += Lin([E, (W1 E) @ (W2 E)]) where @ is the matrix product over
  nodes, channel by channel.
* Structural input features after DiGress' "extra features": degree, node 3- and 4-cycle counts (exact closed-walk
  formulas), bond-order sum (valency) and the graph's triangle count, computed from the current noisy graph.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def structural_features(adj_types: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Node features [B, N, 4] (degree, 3-cycles, 4-cycles, bond-order sum; /10, clipped at 1) and a graph
    feature [B, 1] (triangles / 10, clipped) from edge classes ``adj_types`` [B, N, N] (0 = no edge).

    Node 3-cycles = (A^3)_ii / 2; 4-cycles = ((A^4)_ii - d_i^2 - sum_{j~i} (d_j - 1)) / 2 (closed 4-walks minus
    the back-and-forth ones)."""
    em = (mask[:, :, None] & mask[:, None, :]).to(torch.float32)
    a = (adj_types > 0).to(torch.float32) * em
    deg = a.sum(-1)
    a2 = a @ a
    a3 = a2 @ a
    c3 = torch.diagonal(a3, dim1=1, dim2=2) / 2
    a4_ii = (a2 * a2.transpose(1, 2)).sum(-1)  # (A^4)_ii = sum_j (A^2)_ij (A^2)_ji
    c4 = (a4_ii - deg**2 - (a @ (deg - 1).clamp_min(0).unsqueeze(-1)).squeeze(-1)) / 2
    valence = (adj_types.to(torch.float32) * em).sum(-1)
    node = torch.stack([deg, c3, c4.clamp_min(0), valence], -1) / 10
    graph = (c3.sum(-1, keepdim=True) / 3) / 10
    return node.clamp(max=1.0) * mask.unsqueeze(-1), graph.clamp(max=1.0)


def _masked_mean(v: Tensor, m: Tensor, dims) -> Tensor:
    return (v * m).sum(dims) / m.sum(dims).clamp_min(1.0)


class GraphTransformerLayer(nn.Module):
    def __init__(self, dx: int, de: int, dy: int, heads: int = 4, ppgn: bool = False):
        super().__init__()
        if dx % heads:
            raise ValueError(f"hidden size {dx} must be divisible by heads={heads}")
        self.heads, self.dh = heads, dx // heads
        self.q, self.k, self.v = nn.Linear(dx, dx), nn.Linear(dx, dx), nn.Linear(dx, dx)
        self.e_mul, self.e_add = nn.Linear(de, dx), nn.Linear(de, dx)
        self.e_out, self.x_out = nn.Linear(dx, de), nn.Linear(dx, dx)
        self.y_x, self.y_e = nn.Linear(dy, 2 * dx), nn.Linear(dy, 2 * de)
        self.y_out = nn.Sequential(nn.Linear(dy + dx + de, dy), nn.SiLU(), nn.Linear(dy, dy))
        self.norm_x1, self.norm_x2 = nn.LayerNorm(dx), nn.LayerNorm(dx)
        self.norm_e1, self.norm_e2 = nn.LayerNorm(de), nn.LayerNorm(de)
        self.ffn_x = nn.Sequential(nn.Linear(dx, 2 * dx), nn.SiLU(), nn.Linear(2 * dx, dx))
        self.ffn_e = nn.Sequential(nn.Linear(de, 2 * de), nn.SiLU(), nn.Linear(2 * de, de))
        self.ppgn = ppgn
        if ppgn:
            self.p1, self.p2 = nn.Linear(de, de), nn.Linear(de, de)
            self.p_out = nn.Linear(2 * de, de)
            self.norm_p = nn.LayerNorm(de)

    def forward(self, x: Tensor, e: Tensor, y: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        b, n, _ = x.shape
        h, dh = self.heads, self.dh
        xm = mask.unsqueeze(-1).to(x.dtype)
        emb = mask[:, :, None] & mask[:, None, :]
        em = emb.unsqueeze(-1).to(x.dtype)
        q, k, v = (f(x).view(b, n, h, dh) for f in (self.q, self.k, self.v))
        s = q[:, :, None] * k[:, None] / math.sqrt(dh)  # [B, N, N, H, dh]
        s = s * (1 + self.e_mul(e).view(b, n, n, h, dh)) + self.e_add(e).view(b, n, n, h, dh)
        ye_mul, ye_add = self.y_e(y)[:, None, None].chunk(2, -1)
        e_new = self.e_out(s.flatten(-2)) * (1 + ye_mul) + ye_add
        logits = s.sum(-1).masked_fill(~mask[:, None, :, None], float("-inf"))
        att = torch.softmax(logits, dim=2).nan_to_num(0.0)
        x_new = torch.einsum("bijh,bjhd->bihd", att, v).reshape(b, n, -1)
        yx_mul, yx_add = self.y_x(y)[:, None].chunk(2, -1)
        x_new = self.x_out(x_new * (1 + yx_mul) + yx_add)
        x = self.norm_x1(x + x_new) * xm
        e = self.norm_e1(e + e_new) * em
        if self.ppgn:
            count = mask.sum(1).clamp_min(1).to(x.dtype)[:, None, None, None]
            prod = torch.einsum("bikc,bkjc->bijc", self.p1(e) * em, self.p2(e) * em) / count
            e = self.norm_p(e + self.p_out(torch.cat([e, prod], -1))) * em
        x = self.norm_x2(x + self.ffn_x(x)) * xm
        e = self.norm_e2(e + self.ffn_e(e)) * em
        y = y + self.y_out(torch.cat([y, _masked_mean(x, xm, 1), _masked_mean(e, em, (1, 2))], -1))
        return x, e, y


class GraphTransformer(nn.Module):
    """Dense equivariant denoiser: ``(X [B,N,in_x], E [B,N,N,in_e], y [B,in_y], mask [B,N]) ->
    (node logits [B,N,out_x], symmetric edge logits [B,N,N,out_e], graph logits [B,out_y] or None)``."""

    def __init__(self, in_x: int, in_e: int, in_y: int, out_x: int, out_e: int, out_y: int = 0, hidden: int = 64,
                 hidden_e: int = 32, hidden_y: int = 32, layers: int = 4, heads: int = 4, ppgn: bool = False):
        super().__init__()
        self.in_x = nn.Sequential(nn.Linear(in_x, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.in_e = nn.Sequential(nn.Linear(in_e, hidden_e), nn.SiLU(), nn.Linear(hidden_e, hidden_e))
        self.in_y = nn.Sequential(nn.Linear(in_y, hidden_y), nn.SiLU(), nn.Linear(hidden_y, hidden_y))
        self.layers = nn.ModuleList(GraphTransformerLayer(hidden, hidden_e, hidden_y, heads, ppgn) for _ in range(layers))
        self.out_x = nn.Sequential(nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, out_x))
        self.out_e = nn.Sequential(nn.Linear(hidden_e, hidden_e), nn.SiLU(), nn.Linear(hidden_e, out_e))
        self.out_y = nn.Linear(hidden_y, out_y) if out_y else None

    def forward(self, x: Tensor, e: Tensor, y: Tensor, mask: Tensor, features: bool = False):
        """``features=True`` also returns the last hidden graph vector (penultimate features, used by CGD)."""
        em = (mask[:, :, None] & mask[:, None, :]).unsqueeze(-1).to(x.dtype)
        hx, he, hy = self.in_x(x) * mask.unsqueeze(-1), self.in_e(e) * em, self.in_y(y)
        for layer in self.layers:
            hx, he, hy = layer(hx, he, hy, mask)
        ex = self.out_e(he)
        ex = (ex + ex.transpose(1, 2)) / 2
        out = (self.out_x(hx), ex, self.out_y(hy) if self.out_y is not None else None)
        return (*out, hy) if features else out
