"""Exact denoisers for small labelled-graph laws (no training needed to check the samplers)."""

import torch
import torch.nn.functional as F

from scidiff.graphs.discrete import forward_probs


def mixture_oracle(model, targets, weights):
    """The exact per-entry posterior p(x0 | z_t) of a mixture of labelled graphs (all of one size n):
    p(g | z_t) ∝ w_g prod_i q(z_t,i | g_i) prod_{i<j} q(z_t,ij | g_ij), marginalised onto each entry."""
    def denoise(xt, et, mask, tgt, tgt_e, t):
        abar = model.abar[t]
        logp = []
        for (gx, gadj), w in zip(targets, weights):
            px = forward_probs(F.one_hot(gx, model.kx).float()[None], abar, model.m_x)
            pe = forward_probs(F.one_hot(gadj, model.ke).float()[None], abar, model.m_e)
            lx = torch.log(px.gather(-1, xt.unsqueeze(-1)).squeeze(-1)).sum(1)
            le = torch.log(pe.gather(-1, et.unsqueeze(-1)).squeeze(-1)).triu(1).sum((1, 2))
            logp.append(lx + le + torch.log(torch.tensor(w)))
        post = torch.softmax(torch.stack(logp, 1), 1)  # [B, G]
        px = sum(post[:, g, None, None] * F.one_hot(gx, model.kx).float() for g, (gx, _) in enumerate(targets))
        pe = sum(post[:, g, None, None, None] * F.one_hot(ga, model.ke).float() for g, (_, ga) in enumerate(targets))
        return torch.log(px + 1e-12), torch.log(pe + 1e-12)
    return denoise
