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
import json
import math
import time

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


def cgd_scale_grid(lambdas_s, lambdas_d, min_ratio: float = 1e-3) -> list[tuple[float, float]]:
    """The (lambda_s, lambda_d) pairs of the CGD search: every combination except those with lambda_d / lambda_s
    below ``min_ratio`` (Klarner et al. 2024 skip them: a diagonal that small leaves K near singular)."""
    if any(v <= 0 for v in (*lambdas_s, *lambdas_d)):
        raise ValueError(f"CGD scales must be positive; got {list(lambdas_s)} and {list(lambdas_d)}")
    return [(ls, ld) for ls in lambdas_s for ld in lambdas_d if ld / ls >= min_ratio * (1 - 1e-9)]


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


#: Implicit-hydrogen valence of the MOSES atom alphabet (C, N, O, S, F, Cl, Br) and the atoms' masses (with H 1.008).
_H_VALENCE = (4.0, 3.0, 2.0, 2.0, 1.0, 1.0, 1.0)
_MASS = (12.011, 14.007, 15.999, 32.06, 18.998, 35.45, 79.904)


def descriptors(x1: Tensor, e1: Tensor, mask: Tensor) -> Tensor:
    """Pooled, differentiable counts behind QED's terms (Bickerton et al. 2012: weight, logP, H-bond acceptors and
    donors, polar surface, rotors, rings) from one-hot (or relaxed) atom types ``x1`` [B, N, 7] and bond classes
    ``e1`` [B, N, N, 4] (none, single, double, triple): atom-type counts, bond-order counts, implicit hydrogens
    (valence minus bond orders) in all and on N / O (donors), heavy atoms, ring count (bonds - atoms + 1) and
    weight. Scaled to about unit size; returns [B, 15]. Gradients flow to ``x1`` and ``e1``, so regressor
    guidance sees them."""
    if x1.shape[-1] != len(_H_VALENCE) or e1.shape[-1] != 4:
        raise ValueError(f"descriptors need the 7 MOSES atom types and 4 bond classes; got {x1.shape[-1]} and {e1.shape[-1]}")
    m = mask.to(x1.dtype)
    em = (m[:, :, None] * m[:, None, :]).unsqueeze(-1)
    x1, e1 = x1 * m.unsqueeze(-1), e1 * em
    order = e1 @ torch.arange(4, dtype=x1.dtype, device=x1.device)  # bond order per pair [B, N, N]
    valence = x1 @ x1.new_tensor(_H_VALENCE)
    h = F.relu(valence - order.sum(-1)) * m  # implicit hydrogens per atom
    atoms = x1.sum(1)  # [B, 7]
    bonds = e1[..., 1:].sum((1, 2)) / 2  # single / double / triple [B, 3]
    n = m.sum(1, keepdim=True)
    donors = (h * (x1[..., 1] + x1[..., 2])).sum(1, keepdim=True)
    rings = bonds.sum(-1, keepdim=True) - n + 1
    weight = (x1 @ x1.new_tensor(_MASS)).sum(1, keepdim=True) + 1.008 * h.sum(1, keepdim=True)
    return torch.cat([atoms / 5, bonds / 5, h.sum(1, keepdim=True) / 10, donors / 3, n / 10, rings / 2, weight / 200], -1)


#: Width of :func:`descriptors`.
N_DESCRIPTORS = 15


class GraphRegressor(nn.Module):
    """f(z_t, t) -> (mu, var, features) on noisy dense graphs (one-hot types as in :class:`BlockDiffusion`).

    With ``descriptors=True`` (MOSES alphabet only) a head MLP reads the transformer's graph vector together with
    :func:`descriptors` of the noisy graph, and its last hidden layer is the feature vector CGD uses.
    ``quadratic=True`` adds the descriptors' pairwise products to the head's input (least squares on them carries
    about 2.6 times the R^2 of the plain descriptors for QED without alerts), and ``transformer=False`` drops the
    graph transformer, leaving an MLP on the (quadratic) descriptors and t: a forward and backward pass at batch 64
    takes about 3 ms against 70 ms."""

    def __init__(self, num_node_types: int, num_edge_types: int, n_max: int, T: int, hidden: int = 32, hidden_e: int = 16,
                 layers: int = 2, descriptors: bool = False, hidden_head: int = 64, quadratic: bool = False,
                 transformer: bool = True):
        super().__init__()
        if not descriptors and (quadratic or not transformer):
            raise ValueError("quadratic=True and transformer=False need descriptors=True")
        self.kx, self.ke, self.n_max, self.T = num_node_types, num_edge_types, n_max, T
        self.config = {"hidden": hidden, "hidden_e": hidden_e, "layers": layers, "descriptors": descriptors,
                       "hidden_head": hidden_head, "quadratic": quadratic, "transformer": transformer}
        self.net = None
        if transformer:
            self.net = GraphTransformer(self.kx + 4, self.ke, 3, 1, 1, out_y=0 if descriptors else 2, hidden=hidden,
                                        hidden_e=hidden_e, layers=layers)
        self.head = None
        if descriptors:
            n_desc = N_DESCRIPTORS * (N_DESCRIPTORS + 3) // 2 if quadratic else N_DESCRIPTORS
            self.head = nn.Sequential(nn.Linear(32 * transformer + n_desc + 1, hidden_head), nn.SiLU(),
                                      nn.Linear(hidden_head, hidden_head), nn.SiLU())
            self.out = nn.Linear(hidden_head, 2)

    def _head_input(self, x1: Tensor, e1: Tensor, mask: Tensor, tt: Tensor) -> Tensor:
        d = descriptors(x1, e1, mask)
        if self.config["quadratic"]:
            i, j = torch.triu_indices(d.shape[1], d.shape[1], device=d.device)
            d = torch.cat([d, d[:, i] * d[:, j]], -1)
        return torch.cat([d, tt], -1)

    def forward_onehot(self, x1: Tensor, e1: Tensor, et: Tensor, mask: Tensor, t: Tensor):
        tt = (t.float() / self.T).unsqueeze(-1)
        if self.net is not None:
            node_f, graph_f = structural_features(et, mask)
            y = torch.cat([tt, mask.sum(1, keepdim=True).float() / self.n_max, graph_f], -1)
            _, _, out, h = self.net(torch.cat([x1, node_f], -1), e1, y, mask, features=True)
        if self.head is not None:
            z = self._head_input(x1, e1, mask, tt)
            h = self.head(torch.cat([h, z], -1) if self.net is not None else z)
            out = self.out(h)
        mu, s = out.unbind(-1)
        return mu, F.softplus(s) + 1e-4, h

    def forward(self, xt: Tensor, et: Tensor, mask: Tensor, t: Tensor):
        return self.forward_onehot(F.one_hot(xt, self.kx).float(), F.one_hot(et, self.ke).float(), et, mask, t)


def gaussian_nll(mu: Tensor, var: Tensor, y: Tensor) -> Tensor:
    return 0.5 * (torch.log(var) + (y - mu) ** 2 / var).mean()


def lr_factor(schedule: str, steps: int):
    """Learning-rate multiplier by step: 1 for ``"constant"``; for ``"cosine"`` a linear warm-up over 2 % of
    ``steps``, then a half cosine down to 0 at ``steps``."""
    if schedule == "constant":
        return lambda k: 1.0
    if schedule != "cosine":
        raise ValueError(f"schedule must be 'constant' or 'cosine', got {schedule!r}")
    warm = max(steps // 50, 1)
    return lambda k: min((k + 1) / warm, 0.5 * (1 + math.cos(math.pi * min(k, steps) / steps)))


#: The context-batch size the CGD penalty's weight is normalised to (Klarner et al. 2024, prop_trainer.py).
CONTEXT_POINTS = 512


def train_regressor(regressor: nn.Module, labelled, context=None, *, steps: int, lr: float = 1e-3,
                    lambda_s: float = 1.0, lambda_d: float = 1.0, tau: float = 1.0, weight_decay: float = 0.0,
                    n_train_batches: int = 1, seed: int = 0, seconds: float | None = None,
                    schedule: str = "constant") -> list[float]:
    """Fit ``regressor`` by Gaussian NLL on batches from ``labelled()`` -> (inputs, y, t in [0, 1]); with
    ``context()`` -> (inputs, t: a float or one per context point) also add the CGD penalty R of the C context
    points, scaled as in the paper's trainer by 512 / (batch size * n_train_batches * C): the 512 / C keeps the
    regulariser's weight independent of the context batch size. ``inputs`` is a tuple passed to the regressor.
    ``seconds`` stops earlier on a wall-clock budget. ``schedule="cosine"`` decays the learning rate to 0 over
    ``steps`` after a 2 % linear warm-up (:func:`lr_factor`). Returns the loss history."""
    torch.manual_seed(seed)
    frozen = copy.deepcopy(regressor).requires_grad_(False)  # the "context model": random init, never trained
    for m in frozen.modules():
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()
    opt = torch.optim.AdamW(regressor.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor(schedule, steps))
    history, start = [], time.perf_counter()
    for _ in range(steps):
        if seconds is not None and time.perf_counter() - start > seconds:
            break
        inputs, y, _ = labelled()
        mu, var, _ = regressor(*inputs)
        loss = gaussian_nll(mu, var, y)
        if context is not None:
            c_in, t = context()
            mu_c, var_c, _ = regressor(*c_in)
            with torch.no_grad():
                phi = frozen(*c_in)[2]
            penalty = cgd_penalty(mu_c, var_c, phi, t, lambda_s, lambda_d, tau)
            loss = loss + penalty * CONTEXT_POINTS / (y.shape[0] * n_train_batches * mu_c.shape[0])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        history.append(loss.item())
    return history


def property_guidance(regressor: GraphRegressor, weight: float, t_max: int | None = None):
    """A ``guidance`` callable for :meth:`BlockDiffusion.sample`: ``w * grad_{z_t} mu(z_t, t)`` per node and edge
    class (first-order expansion of the regressor around the current one-hot state, as DiGress does). With
    ``t_max`` guidance is off (zero tilt) at noise levels above it: for a regressor trained only up to there."""
    def guide(xt, et, mask, tgt, tgt_e, t):
        if t_max is not None and bool((t > t_max).all()):
            return (torch.zeros((*xt.shape, regressor.kx), device=xt.device),
                    torch.zeros((*et.shape, regressor.ke), device=et.device))
        x1 = F.one_hot(xt, regressor.kx).float().requires_grad_(True)
        e1 = F.one_hot(et, regressor.ke).float().requires_grad_(True)
        mu, _, _ = regressor.forward_onehot(x1, e1, et, mask, t)
        gx, ge = torch.autograd.grad(mu.sum(), (x1, e1))
        ge = (ge + ge.transpose(1, 2)) / 2
        on = torch.ones(t.shape, device=gx.device) if t_max is None else (t <= t_max).float()
        w = weight * on[:, None, None]
        return w * gx * tgt.unsqueeze(-1), w[..., None] * ge * tgt_e.unsqueeze(-1)
    return guide


def one_block_batch(model, records, idx=None):
    """The clean one-block graphs ``records[idx]`` (all when ``idx`` is None) padded to ``model.n_max``, with the
    target masks that make the whole graph one block: ``(x0, a0, mask, tgt, tgt_e)``, ready for ``model.noise``."""
    from .model import _pad, _target_masks

    idx = range(len(records)) if idx is None else idx
    x0, a0, mask = _pad([(records[i][0], records[i][1]) for i in idx], model.n_max)
    tgt, tgt_e = _target_masks(mask, torch.zeros(len(x0), dtype=torch.long))
    return x0, a0, mask, tgt, tgt_e


def noisy_inputs(model, records, idx, generator: torch.Generator, t_max: int | None = None):
    """Regressor inputs (z_t, E_t, mask, t) for the one-block ``records[idx]`` noised by ``model``'s forward
    process, one level t ~ U{1..T} per molecule (guidance meets every level, so the regressor trains on all), or
    t ~ U{1..t_max} for a regressor that guides only the low-noise end (``property_guidance(..., t_max)``)."""
    x0, a0, mask, tgt, tgt_e = one_block_batch(model, records, idx)
    if t_max is not None and not 1 <= t_max <= model.T:
        raise ValueError(f"t_max must be in 1..{model.T}, got {t_max}")
    t = torch.randint(1, (t_max or model.T) + 1, (len(idx),), generator=generator)
    xt, et = model.noise(x0, a0, tgt, tgt_e, t, generator)
    return xt, et, mask, t


def labelled_indices(values: Tensor, cut: float, n_labelled: int | None = None, seed: int = 0) -> list[int]:
    """The molecules that carry labels in the CGD split: those with ``values <= cut``, or ``n_labelled`` of them
    drawn at random (``seed``) for a scarce-label split, where an unlabelled context set should matter most."""
    lab = (values <= cut).nonzero().flatten()
    if n_labelled is not None:
        if not 2 <= n_labelled <= len(lab):
            raise ValueError(f"n_labelled must be in 2..{len(lab)} (the molecules at or below the cut), got {n_labelled}")
        lab = lab[torch.randperm(len(lab), generator=torch.Generator().manual_seed(seed))[:n_labelled]].sort().values
    return lab.tolist()


def cgd_batches(model, records, values: Tensor, cut: float, batch: int = 64, n_val: int = 256, t_max: int | None = None,
                unlabelled_context: bool = False, n_labelled: int | None = None, standardise: bool = True):
    """The CGD training split: labels only for ``values <= cut`` (or ``n_labelled`` of them, see
    :func:`labelled_indices`); every molecule is unlabelled context (only the molecules without labels with
    ``unlabelled_context``); ``n_val`` molecules beyond the cut form the
    out-of-distribution validation set (labels used only to pick the regularisation strength, as Klarner et al.
    2024). All inputs are noised at levels up to ``t_max`` (default T). Labels are centred on the labelled mean
    and divided by their std; ``standardise=False`` only centres them, keeping the property's own units, as the
    paper's trainer does (its labels lie in [0, 1] and its variance target tau = 1 is in those units: a few
    hundred label variances). Returns the labelled and context batch makers, the validation inputs and labels on that
    scale, and the labelled mean and the scale (the std, or 1)."""
    lab = labelled_indices(values, cut, n_labelled)
    above = (values > cut).nonzero().flatten()
    unlabelled = torch.ones(len(values), dtype=torch.bool)
    unlabelled[lab] = False
    unlabelled = unlabelled.nonzero().flatten()
    val = above[torch.randperm(len(above), generator=torch.Generator().manual_seed(1))[:n_val]].tolist()
    mean = values[lab].mean()
    std = values[lab].std() if standardise else torch.ones(())
    g = torch.Generator().manual_seed(0)

    def labelled():
        idx = [lab[i] for i in torch.randint(len(lab), (batch,), generator=g).tolist()]
        return noisy_inputs(model, records, idx, g, t_max), (values[idx] - mean) / std, 0.0

    def context():
        if unlabelled_context:
            idx = unlabelled[torch.randint(len(unlabelled), (batch,), generator=g)].tolist()
        else:
            idx = torch.randint(len(records), (batch,), generator=g).tolist()
        inputs = noisy_inputs(model, records, idx, g, t_max)
        return inputs, inputs[3].double() / model.T

    val_inputs = noisy_inputs(model, records, val, torch.Generator().manual_seed(2), t_max)
    return labelled, context, val_inputs, (values[val] - mean) / std, mean, std


@torch.no_grad()
def r_squared_by_noise(regressor: GraphRegressor, model, records, y: Tensor, levels, generator: torch.Generator,
                       draws: int = 2) -> dict[int, float]:
    """Coefficient of determination 1 - SSE / SST of the regressor's mean on ``records`` (labels ``y``, on the
    regressor's scale) at each noise level t in ``levels``, pooled over ``draws`` noise draws per molecule."""
    x0, a0, mask, tgt, tgt_e = one_block_batch(model, records)
    out = {}
    for level in levels:
        err = 0.0
        for _ in range(draws):
            t = torch.full((len(records),), int(level))
            xt, et = model.noise(x0, a0, tgt, tgt_e, t, generator)
            err += float(((regressor(xt, et, mask, t)[0] - y) ** 2).sum())
        out[int(level)] = 1.0 - err / (draws * float(((y - y.mean()) ** 2).sum()))
    return out


def save_regressor(regressor: GraphRegressor, path, info: dict | None = None):
    """Weights as safetensors with the constructor arguments and ``info`` (labels' mean / std, training record) as
    JSON metadata; :func:`load_regressor` rebuilds it without unpickling."""
    from pathlib import Path

    from safetensors.torch import save_file

    from .._files import atomic_path

    config = {"num_node_types": regressor.kx, "num_edge_types": regressor.ke, "n_max": regressor.n_max,
              "T": regressor.T, **regressor.config}
    meta = {"format": "scidiff.graphs.GraphRegressor", "config": json.dumps(config), "info": json.dumps(info or {})}
    with atomic_path(Path(path)) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in regressor.state_dict().items()}, tmp, metadata=meta)
    return Path(path)


def load_regressor(path) -> tuple[GraphRegressor, dict]:
    """``(regressor in eval mode, info)`` from a file written by :func:`save_regressor`."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if meta.get("format") != "scidiff.graphs.GraphRegressor":
        raise ValueError(f"{path} is not a guidance regressor written by save_regressor (format {meta.get('format')!r})")
    regressor = GraphRegressor(**json.loads(meta["config"]))
    regressor.load_state_dict(load_file(str(path)))
    return regressor.eval(), json.loads(meta.get("info", "{}"))
