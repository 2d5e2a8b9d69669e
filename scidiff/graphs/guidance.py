"""Property guidance for discrete graph diffusion, plain or context-guided (CGD).

Regressor guidance (DiGress, Vignac et al. 2023, Sec. 5): a regressor f(z_t, t) predicts the property from the
noisy graph and the reverse step is tilted, p(z_s | z_t, y) ∝ p(z_s | z_t) exp(<grad_{z_t} g, z_s>), with
g = w * mu(z_t, t) (push the property up; see :func:`property_guidance`).

Context-guided diffusion (Klarner, Rudner, Morris, Deane & Teh, ICML 2024): the regressor is trained with a
regulariser on an unlabelled *context* set so that off the labelled data its predictions revert to the prior mean
and its variance grows. With Phi the penultimate features of a frozen, randomly initialised copy of the
regressor on the noised context batch, and t_i in [0, 1] the noise level of context point i,

    K_ij = sqrt(c_s(t_i) c_s(t_j)) phi_i . phi_j + delta_ij c_d(t_i),
    c_s(t) = l_s / (1 + e^{7(t - 1/2)}) + l_s / 10,   c_d(t) = l_d / (1 + e^{-7(t - 1/2)}) + l_d / 10,
    R = -log N(mu_ctx; 0, K) - log N(sigma^2_ctx; tau 1, K),

added to the Gaussian NLL of the labelled batch (labels standardised, so the prior mean 0 is the uninformative
prediction: the labelled mean). The feature term dominates at low noise and the diagonal at high noise, so the
regressor's predictions on noisy context points are pulled harder towards the prior. Small l_s, l_d make the
prior tight (strong regularisation); the paper tunes them on an out-of-distribution validation split.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .networks import GraphTransformer, structural_features


def cgd_scales(t, lambda_s: float, lambda_d: float):
    """(c_s(t), c_d(t)) of the CGD prior covariance; ``t`` in [0, 1] (0 = clean), a float or a tensor (same type back)."""
    tt = torch.as_tensor(t, dtype=torch.float64) if not isinstance(t, Tensor) else t
    c_s = lambda_s * torch.sigmoid(-7 * (tt - 0.5)) + lambda_s / 10  # lambda_s / (1 + e^{7(t - 1/2)}) + lambda_s / 10
    c_d = lambda_d * torch.sigmoid(7 * (tt - 0.5)) + lambda_d / 10
    return (c_s, c_d) if isinstance(t, Tensor) else (float(c_s), float(c_d))


def cgd_penalty(mu: Tensor, var: Tensor, phi: Tensor, t, lambda_s: float, lambda_d: float, tau: float = 1.0) -> Tensor:
    """R = -log N(mu; 0, K) - log N(var; tau, K) on a context batch (``mu``, ``var`` [C], features ``phi`` [C, D]);
    ``t`` is one noise level in [0, 1] for the batch or one per context point ([C], as in the paper's trainer)."""
    if mu.shape != var.shape or mu.dim() != 1 or phi.shape[0] != mu.shape[0]:
        raise ValueError(f"mu and var must be [C] and phi [C, D]; got {tuple(mu.shape)}, {tuple(var.shape)}, {tuple(phi.shape)}")
    t = torch.as_tensor(t, dtype=phi.dtype, device=phi.device).expand(mu.shape[0])
    c_s, c_d = cgd_scales(t, lambda_s, lambda_d)
    scaled = phi * c_s.sqrt().unsqueeze(-1)
    k = scaled @ scaled.T + torch.diag(c_d)
    prior = torch.distributions.MultivariateNormal(torch.zeros_like(mu), covariance_matrix=k)
    return -prior.log_prob(mu) - prior.log_prob(var - tau)


class MLPRegressor(nn.Module):
    """A small heteroscedastic regressor on vectors: ``x -> (mu, var, features)`` (used to check CGD itself)."""

    def __init__(self, dim: int, hidden: int = 64):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU())
        self.head = nn.Linear(hidden, 2)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        h = self.body(x)
        mu, s = self.head(h).unbind(-1)
        return mu, F.softplus(s) + 1e-4, h


class GraphRegressor(nn.Module):
    """f(z_t, t) -> (mu, var, features) on noisy dense graphs (one-hot types as in :class:`BlockDiffusion`)."""

    def __init__(self, num_node_types: int, num_edge_types: int, n_max: int, T: int, hidden: int = 32, hidden_e: int = 16,
                 layers: int = 2):
        super().__init__()
        self.kx, self.ke, self.n_max, self.T = num_node_types, num_edge_types, n_max, T
        self.net = GraphTransformer(self.kx + 4, self.ke, 3, 1, 1, out_y=2, hidden=hidden, hidden_e=hidden_e,
                                    layers=layers)

    def forward_onehot(self, x1: Tensor, e1: Tensor, et: Tensor, mask: Tensor, t: Tensor):
        node_f, graph_f = structural_features(et, mask)
        y = torch.cat([(t.float() / self.T).unsqueeze(-1), mask.sum(1, keepdim=True).float() / self.n_max, graph_f], -1)
        _, _, out, h = self.net(torch.cat([x1, node_f], -1), e1, y, mask, features=True)
        mu, s = out.unbind(-1)
        return mu, F.softplus(s) + 1e-4, h

    def forward(self, xt: Tensor, et: Tensor, mask: Tensor, t: Tensor):
        return self.forward_onehot(F.one_hot(xt, self.kx).float(), F.one_hot(et, self.ke).float(), et, mask, t)


def gaussian_nll(mu: Tensor, var: Tensor, y: Tensor) -> Tensor:
    return 0.5 * (torch.log(var) + (y - mu) ** 2 / var).mean()


def train_regressor(regressor: nn.Module, labelled, context=None, *, steps: int, lr: float = 1e-3,
                    lambda_s: float = 1.0, lambda_d: float = 1.0, tau: float = 1.0, weight_decay: float = 0.0,
                    n_train_batches: int = 1, seed: int = 0) -> list[float]:
    """Fit ``regressor`` by Gaussian NLL on batches from ``labelled()`` -> (inputs, y, t in [0, 1]); with
    ``context()`` -> (inputs, t: a float or one per context point) also add the CGD penalty, scaled by
    1 / (batch size * n_train_batches) as in the paper's trainer. ``inputs`` is a tuple passed to the regressor. Returns the loss history."""
    torch.manual_seed(seed)
    frozen = copy.deepcopy(regressor).requires_grad_(False)  # the "context model": random init, never trained
    for m in frozen.modules():
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()
    opt = torch.optim.AdamW(regressor.parameters(), lr=lr, weight_decay=weight_decay)
    history = []
    for _ in range(steps):
        inputs, y, _ = labelled()
        mu, var, _ = regressor(*inputs)
        loss = gaussian_nll(mu, var, y)
        if context is not None:
            c_in, t = context()
            mu_c, var_c, _ = regressor(*c_in)
            with torch.no_grad():
                phi = frozen(*c_in)[2]
            loss = loss + cgd_penalty(mu_c, var_c, phi, t, lambda_s, lambda_d, tau) / (y.shape[0] * n_train_batches)
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(loss.item())
    return history


def property_guidance(regressor: GraphRegressor, weight: float):
    """A ``guidance`` callable for :meth:`BlockDiffusion.sample`: ``w * grad_{z_t} mu(z_t, t)`` per node and edge
    class (first-order expansion of the regressor around the current one-hot state, as DiGress does)."""
    def guide(xt, et, mask, tgt, tgt_e, t):
        x1 = F.one_hot(xt, regressor.kx).float().requires_grad_(True)
        e1 = F.one_hot(et, regressor.ke).float().requires_grad_(True)
        mu, _, _ = regressor.forward_onehot(x1, e1, et, mask, t)
        gx, ge = torch.autograd.grad(mu.sum(), (x1, e1))
        ge = (ge + ge.transpose(1, 2)) / 2
        return weight * gx * tgt.unsqueeze(-1), weight * ge * tgt_e.unsqueeze(-1)
    return guide
