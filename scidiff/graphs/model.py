"""Discrete graph diffusion, one-shot (DiGress) or block-wise autoregressive (PARD), in one model.

A graph is generated as a sequence of node blocks B_1, B_2, ... (PARD's degree-based decomposition,
:mod:`scidiff.graphs.blocks`); p(G) = prod_i p(B_i | B_<i), and each factor is a discrete diffusion over the new
block's node types and over all edges that touch the new block (to itself and to earlier blocks), with earlier
blocks held clean. One shared, permutation-equivariant denoiser serves every block (Zhao et al., NeurIPS 2024).
``max_hops = 0`` puts every node in one block: that is DiGress' one-shot model (Vignac et al., ICLR 2023), with
the number of nodes drawn from the training distribution.

Training is parallel over blocks: every prefix ``B_<=i`` of every graph in a minibatch becomes one item with its
own noise level, and one forward pass scores all of them (PARD's "batched sequential" mode, which needs no
causal mask). The size of the next block (0 = stop) is predicted by a second, small equivariant network on the
clean prefix; the first block's size comes from its training frequencies.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.data import Data

from ..diffusion.random import Generator
from .blocks import block_decomposition, order_by_blocks
from .discrete import (cosine_alpha_bar, forward_probs, limit_distribution, posterior_probs, sample_categorical,
                       symmetric_edge_sample, valence_constrained_edge_sample)
from .molecules import dense_types
from .networks import GraphTransformer, structural_features

Record = tuple[Tensor, Tensor, Tensor]  # (node types [n], edge classes [n, n], block sizes [m]), block-ordered


def prepare(data_list: Sequence[Data], max_hops: int) -> list[Record]:
    """Dense, block-ordered records of PyG graphs for :class:`BlockDiffusion`."""
    out = []
    for d in data_list:
        x, adj = dense_types(d)
        blocks = block_decomposition(d.edge_index, int(d.num_nodes), max_hops)
        out.append(order_by_blocks(x, adj, blocks))
    return out


def _pad(records: Sequence[tuple[Tensor, Tensor]], n: int) -> tuple[Tensor, Tensor, Tensor]:
    b = len(records)
    x = torch.zeros(b, n, dtype=torch.long)
    adj = torch.zeros(b, n, n, dtype=torch.long)
    mask = torch.zeros(b, n, dtype=torch.bool)
    for i, (xi, ai) in enumerate(records):
        k = xi.shape[0]
        x[i, :k], adj[i, :k, :k], mask[i, :k] = xi, ai, True
    return x, adj, mask


def _target_masks(mask: Tensor, start: Tensor) -> tuple[Tensor, Tensor]:
    """Nodes at index >= start are the new block; edges touching a new node are its edges."""
    idx = torch.arange(mask.shape[1], device=mask.device)
    tgt = mask & (idx[None] >= start[:, None])
    pair = mask[:, :, None] & mask[:, None, :] & ~torch.eye(mask.shape[1], dtype=torch.bool, device=mask.device)
    return tgt, pair & (tgt[:, :, None] | tgt[:, None, :])


class BlockDiffusion(nn.Module):
    """PARD (``max_hops >= 1``) or one-shot DiGress-style (``max_hops = 0``) discrete graph diffusion.

    Build it from data with :meth:`from_records`; ``loss`` trains, ``sample`` generates.
    """

    def __init__(self, num_node_types: int, num_edge_types: int, node_counts: Sequence[float],
                 edge_counts: Sequence[float], first_block_counts: Sequence[float], n_max: int, max_hops: int = 0,
                 T: int = 100, transition: str = "marginal", hidden: int = 64, hidden_e: int = 32, layers: int = 4,
                 heads: int = 4, ppgn: bool = False, lambda_e: float = 5.0, size_layers: int = 2,
                 max_block_size: int | None = None):
        super().__init__()
        # constructor arguments as plain types: saved beside the weights so a model rebuilds without pickles
        self.config = {"num_node_types": num_node_types, "num_edge_types": num_edge_types,
                       "node_counts": [float(v) for v in node_counts], "edge_counts": [float(v) for v in edge_counts],
                       "first_block_counts": [float(v) for v in first_block_counts], "n_max": int(n_max),
                       "max_hops": max_hops, "T": T, "transition": transition, "hidden": hidden, "hidden_e": hidden_e,
                       "layers": layers, "heads": heads, "ppgn": ppgn, "lambda_e": lambda_e, "size_layers": size_layers,
                       "max_block_size": max_block_size}
        self.kx, self.ke, self.n_max, self.max_hops, self.T = num_node_types, num_edge_types, n_max, max_hops, T
        self.lambda_e = lambda_e
        self.max_block_size = max_block_size or n_max
        self.register_buffer("m_x", limit_distribution(transition, torch.tensor(node_counts)).float())
        self.register_buffer("m_e", limit_distribution(transition, torch.tensor(edge_counts)).float())
        self.register_buffer("abar", cosine_alpha_bar(T).float())
        first = torch.as_tensor(first_block_counts, dtype=torch.float64)
        self.register_buffer("first_block_probs", (first / first.sum()).float())
        self.net = GraphTransformer(self.kx + 5, self.ke + 1, 4, self.kx, self.ke, hidden=hidden, hidden_e=hidden_e,
                                    layers=layers, heads=heads, ppgn=ppgn)
        self.size_net = None
        if max_hops > 0:
            self.size_net = GraphTransformer(self.kx + 4, self.ke, 2, 1, 1, out_y=self.max_block_size + 1,
                                             hidden=hidden, hidden_e=hidden_e, layers=size_layers, heads=heads)

    # ----- construction ----------------------------------------------------------------------------------------
    @staticmethod
    def statistics(records: Sequence[Record], num_node_types: int, num_edge_types: int) -> dict:
        """Marginals, largest graph and first-block sizes of a training set (keyword arguments of ``__init__``)."""
        nx_ = torch.zeros(num_node_types, dtype=torch.float64)
        ne = torch.zeros(num_edge_types, dtype=torch.float64)
        n_max = max(int(r[0].shape[0]) for r in records)
        first = torch.zeros(n_max + 1, dtype=torch.float64)
        biggest = 1
        for x, adj, sizes in records:
            n = x.shape[0]
            nx_ += torch.bincount(x, minlength=num_node_types).double()
            off = ~torch.eye(n, dtype=torch.bool)
            ne += torch.bincount(adj[off], minlength=num_edge_types).double()
            first[int(sizes[0])] += 1
            biggest = max(biggest, int(sizes.max()))
        return {"node_counts": nx_.tolist(), "edge_counts": ne.tolist(), "first_block_counts": first.tolist(),
                "n_max": n_max, "max_block_size": biggest}

    @classmethod
    def from_records(cls, records: Sequence[Record], num_node_types: int, num_edge_types: int, **kw) -> "BlockDiffusion":
        return cls(num_node_types, num_edge_types, **cls.statistics(records, num_node_types, num_edge_types), **kw)

    # ----- network inputs --------------------------------------------------------------------------------------
    def _denoise(self, xt: Tensor, et: Tensor, mask: Tensor, tgt: Tensor, tgt_e: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        node_f, graph_f = structural_features(et, mask)
        x_in = torch.cat([F.one_hot(xt, self.kx).float(), tgt.unsqueeze(-1).float(), node_f], -1)
        e_in = torch.cat([F.one_hot(et, self.ke).float(), tgt_e.unsqueeze(-1).float()], -1)
        n = mask.sum(1, keepdim=True).float()
        y = torch.cat([(t.float() / self.T).unsqueeze(-1), n / self.n_max, tgt.sum(1, keepdim=True).float() / self.n_max,
                       graph_f], -1)
        px, pe, _ = self.net(x_in, e_in, y, mask)
        return px, pe

    def _size_logits(self, x: Tensor, adj: Tensor, mask: Tensor) -> Tensor:
        node_f, graph_f = structural_features(adj, mask)
        x_in = torch.cat([F.one_hot(x, self.kx).float(), node_f], -1)
        y = torch.cat([mask.sum(1, keepdim=True).float() / self.n_max, graph_f], -1)
        return self.size_net(x_in, F.one_hot(adj, self.ke).float(), y, mask)[2]

    def noise(self, x0: Tensor, adj0: Tensor, tgt: Tensor, tgt_e: Tensor, t: Tensor, generator: Generator = None):
        """Draw z_t ~ q(z_t | x0) on the new block (nodes ``tgt``, edges ``tgt_e``); everything else stays clean."""
        return self._transition(x0, adj0, tgt, tgt_e, self.abar[t], generator)

    def _transition(self, x: Tensor, adj: Tensor, tgt: Tensor, tgt_e: Tensor, alpha: Tensor,
                    generator: Generator) -> tuple[Tensor, Tensor]:
        """One draw of the marginal transition alpha one_hot + (1 - alpha) m on the block ``tgt`` / ``tgt_e``; the
        rest of ``x``, ``adj`` is kept."""
        xt = sample_categorical(forward_probs(F.one_hot(x, self.kx).float(), alpha, self.m_x), generator)
        et = symmetric_edge_sample(forward_probs(F.one_hot(adj, self.ke).float(), alpha, self.m_e), generator)
        return torch.where(tgt, xt, x), torch.where(tgt_e, et, adj)

    # ----- training --------------------------------------------------------------------------------------------
    def loss(self, records: Sequence[Record], generator: torch.Generator | None = None,
             blocks_per_graph: int | None = None, t: int | None = None) -> dict[str, Tensor]:
        """CE(x) + lambda_e CE(E) on every block of every graph (or ``blocks_per_graph`` random ones), plus the
        next-block-size CE for PARD. ``t`` fixes the noise level (default: uniform on 1..T per item).
        Returns a dict with ``loss`` and its parts."""
        items, size_items = [], []
        for x, adj, sizes in records:
            ends = torch.cumsum(sizes, 0)
            chosen = range(len(sizes))
            if blocks_per_graph is not None and blocks_per_graph < len(sizes):
                chosen = torch.randperm(len(sizes), generator=generator)[:blocks_per_graph].tolist()
            for i in chosen:
                end = int(ends[i])
                items.append((x[:end], adj[:end, :end], end - int(sizes[i])))
            if self.size_net is not None:
                for i in chosen:
                    end = int(ends[i])
                    nxt = int(sizes[i + 1]) if i + 1 < len(sizes) else 0
                    size_items.append((x[:end], adj[:end, :end], min(nxt, self.max_block_size)))
        dev = self.abar.device
        x0, adj0, mask = (v.to(dev) for v in _pad([(a, b) for a, b, _ in items], max(a.shape[0] for a, _, _ in items)))
        tgt, tgt_e = _target_masks(mask, torch.tensor([s for _, _, s in items], device=dev))
        if t is None:
            t = torch.randint(1, self.T + 1, (len(items),), generator=generator).to(dev)
        else:
            t = torch.full((len(items),), int(t), device=dev)
        xt, et = self.noise(x0, adj0, tgt, tgt_e, t, generator)
        px, pe = self._denoise(xt, et, mask, tgt, tgt_e, t)
        loss_x = F.cross_entropy(px[tgt], x0[tgt]) if tgt.any() else px.sum() * 0
        loss_e = F.cross_entropy(pe[tgt_e], adj0[tgt_e]) if tgt_e.any() else pe.sum() * 0
        out = {"loss_x": loss_x, "loss_e": loss_e, "loss": loss_x + self.lambda_e * loss_e}
        if size_items:
            sx, sadj, smask = (v.to(dev) for v in _pad([(a, b) for a, b, _ in size_items], max(a.shape[0] for a, _, _ in size_items)))
            target = torch.tensor([s for _, _, s in size_items], device=dev)
            out["loss_size"] = F.cross_entropy(self._size_logits(sx, sadj, smask), target)
            out["loss"] = out["loss"] + out["loss_size"]
        return out

    # ----- generation ------------------------------------------------------------------------------------------
    def _time_grid(self, steps: int | None) -> list[int]:
        steps = self.T if steps is None else steps
        if not 1 <= steps <= self.T:
            raise ValueError(f"steps must lie in 1..T={self.T}, got {steps}")
        grid = torch.linspace(self.T, 0, steps + 1).round().long().unique_consecutive().tolist()
        return grid

    @torch.no_grad()
    def _denoise_block(self, x: Tensor, adj: Tensor, mask: Tensor, start: Tensor, grid: list[int], generator: Generator,
                       guidance: Callable | None, max_valence: Tensor | None = None, corrector: int = 0,
                       corrector_t_max: int | None = None) -> tuple[Tensor, Tensor, int]:
        """Reverse diffusion over the nodes at index >= ``start`` (and their edges); the prefix stays fixed.
        Returns the block and the number of denoiser calls made."""
        tgt, tgt_e = _target_masks(mask, start)
        b, n = x.shape
        xt = torch.where(tgt, sample_categorical(self.m_x.expand(b, n, -1), generator), x)
        et = torch.where(tgt_e, symmetric_edge_sample(self.m_e.expand(b, n, n, -1), generator), adj)
        calls = 0
        for t, s in zip(grid[:-1], grid[1:]):
            repeats = corrector if corrector_t_max is None or t <= corrector_t_max else 0
            for r in range(1 + repeats):
                if r:  # corrector: z_t ~ q(z_t | z_s), then the same reverse step again
                    xt, et = self._renoise(xt, et, x, adj, tgt, tgt_e, t, s, generator)
                xt, et = self._reverse_step(xt, et, x, adj, mask, tgt, tgt_e, t, s, generator, guidance, max_valence)
                calls += 1
        return xt, et, calls

    def _reverse_step(self, xt: Tensor, et: Tensor, x: Tensor, adj: Tensor, mask: Tensor, tgt: Tensor, tgt_e: Tensor,
                      t: int, s: int, generator: Generator, guidance: Callable | None,
                      max_valence: Tensor | None) -> tuple[Tensor, Tensor]:
        """z_s ~ p(z_s | z_t) on the new block; ``x``, ``adj`` hold the fixed prefix."""
        b = xt.shape[0]
        tt = torch.full((b,), t, device=xt.device)
        px, pe = self._denoise(xt, et, mask, tgt, tgt_e, tt)
        px, pe = px.softmax(-1), pe.softmax(-1)
        if s > 0:
            abar_t, abar_s = self.abar[t].expand(b), self.abar[s].expand(b)
            px = posterior_probs(F.one_hot(xt, self.kx).float(), px, abar_t / abar_s, abar_s, abar_t, self.m_x)
            pe = posterior_probs(F.one_hot(et, self.ke).float(), pe, abar_t / abar_s, abar_s, abar_t, self.m_e)
        if guidance is not None:
            with torch.enable_grad():
                gx, ge = guidance(xt, et, mask, tgt, tgt_e, tt)
            # DiGress regressor guidance: p(z_s | z_t, y) ∝ p(z_s | z_t) exp(<grad_{z_t} log p(y | z_t), z_s>)
            px = px * torch.exp(gx - gx.amax(-1, keepdim=True))
            pe = pe * torch.exp(ge - ge.amax(-1, keepdim=True))
            px, pe = px / px.sum(-1, keepdim=True), pe / pe.sum(-1, keepdim=True)
        xs = torch.where(tgt, sample_categorical(px, generator), x)
        if max_valence is None:
            es = torch.where(tgt_e, symmetric_edge_sample(pe, generator), adj)
        else:  # optional chemistry-aware step: bonds beyond an atom's valence get no probability
            es = valence_constrained_edge_sample(pe, adj, tgt_e, max_valence[xs] * mask, generator)
        return xs, es

    def _renoise(self, xs: Tensor, es: Tensor, x: Tensor, adj: Tensor, tgt: Tensor, tgt_e: Tensor, t: int, s: int,
                 generator: Generator) -> tuple[Tensor, Tensor]:
        """z_t ~ q(z_t | z_s) = alpha z_s + (1 - alpha) m with alpha = abar_t / abar_s (the forward steps s -> t)."""
        alpha = (self.abar[t] / self.abar[s]).expand(xs.shape[0])
        xt, et = self._transition(xs, es, tgt, tgt_e, alpha, generator)
        return torch.where(tgt, xt, x), torch.where(tgt_e, et, adj)

    @torch.no_grad()
    def sample(self, num: int, steps: int | None = None, generator: Generator = None, progress: bool = False,
               guidance: Callable | None = None, max_valence: Sequence[int] | Tensor | None = None,
               corrector: int = 0, corrector_t_max: int | None = None) -> tuple[list[tuple[Tensor, Tensor]], dict]:
        """``num`` graphs as ``(node types [n], edge classes [n, n])`` and a dict of counts (``nfe`` = denoiser
        evaluations per graph, ``blocks`` per graph). ``steps`` reverse steps per block (default T).

        ``max_valence`` (one entry per node type, edge class = bond order; e.g. :data:`~scidiff.graphs.molecules.MAX_VALENCE`)
        switches on an optional chemistry-aware sampler: at every reverse step bond orders that would take an
        atom past its valence are masked out (:func:`~scidiff.graphs.discrete.valence_constrained_edge_sample`).
        Off by default: the unconstrained sampler is the model's own distribution.

        ``corrector`` repeats each reverse step t -> s (with t <= ``corrector_t_max``, default every step) that many
        more times, each time after re-noising the draw forward, z_t ~ q(z_t | z_s). With the exact reverse kernel
        this forward-backward move leaves the marginal q(z_s) invariant (q(z_s) q(z_t | z_s) = q(z_t) q(z_s | z_t)),
        so it corrects the drift a learned denoiser accumulates without changing the law it aims at: the discrete
        counterpart of a predictor-corrector sampler (Song et al. 2021; Campbell et al. 2022 for discrete states)
        and of RePaint's resampling (Lugmayr et al. 2022). Each repeat costs one denoiser call."""
        from tqdm.auto import tqdm

        grid = self._time_grid(steps)
        if corrector < 0:
            raise ValueError(f"corrector must be >= 0 (forward-backward repeats per step), got {corrector}")
        dev = self.abar.device
        if max_valence is not None:
            max_valence = torch.as_tensor(max_valence, dtype=torch.long, device=dev)
            if max_valence.shape != (self.kx,):
                raise ValueError(f"max_valence needs one entry per node type ({self.kx}), got shape {tuple(max_valence.shape)}")
        x = torch.zeros(num, self.n_max, dtype=torch.long, device=dev)
        adj = torch.zeros(num, self.n_max, self.n_max, dtype=torch.long, device=dev)
        n = torch.zeros(num, dtype=torch.long, device=dev)
        size = sample_categorical(self.first_block_probs.expand(num, -1), generator).clamp(1, self.n_max)
        nfe = torch.zeros(num, dtype=torch.long)
        blocks = torch.zeros(num, dtype=torch.long)
        bar = tqdm(total=self.n_max, disable=not progress, desc="blocks")
        while bool((size > 0).any()):
            active = size > 0
            end = n + size
            width = int(end.max())
            mask = torch.arange(width, device=dev)[None] < end[:, None]
            xs, es, calls = self._denoise_block(x[:, :width], adj[:, :width, :width], mask, torch.where(active, n, end),
                                                grid, generator, guidance, max_valence, corrector, corrector_t_max)
            x[:, :width], adj[:, :width, :width] = xs, es
            nfe += active.long().cpu() * calls
            blocks += active.long().cpu()
            n = end
            if self.size_net is None:
                break
            logits = self._size_logits(x[:, :width], adj[:, :width, :width], mask)
            room = self.n_max - n  # never exceed the largest training graph
            too_big = torch.arange(logits.shape[1], device=dev)[None] > room[:, None]
            size = sample_categorical(logits.masked_fill(too_big, float("-inf")).softmax(-1), generator)
            size = torch.where(active, size, torch.zeros_like(size))
            bar.update(1)
        bar.close()
        graphs = [(x[i, : n[i]].cpu(), adj[i, : n[i], : n[i]].cpu()) for i in range(num)]
        return graphs, {"nfe": nfe.float().mean().item(), "blocks": blocks.float().mean().item()}


def fit(model: BlockDiffusion, records: Sequence[Record], steps: int | None = None, seconds: float | None = None,
        batch_size: int = 32, lr: float = 5e-4, blocks_per_graph: int | None = None, seed: int = 0,
        progress: bool = False, warmup: int = 0, ema: float | None = None,
        callback: Callable[[int, BlockDiffusion], None] | None = None, every: int = 0,
        stop: Callable[[int, float], bool] | None = None) -> dict:
    """Train with AdamW on random minibatches for ``steps`` steps or ``seconds`` of wall time (whichever ends
    first). ``warmup`` linearly ramps the learning rate over the first steps, then it stays constant, so a run
    stopped at step k is the same run as one asked for k steps. With ``ema`` (e.g. 0.999) an exponential moving
    average of the weights is kept and copied into ``model`` at the end (averaged weights sample better; Ho et
    al. 2020, Karras et al. 2022). ``callback(step, averaged_model)`` runs every ``every`` steps (checkpoints).
    ``stop(step, elapsed_seconds)`` is asked before every step and ends the run when it returns True (it may
    block, e.g. to keep two runs in step). Trains on the model's device. Returns ``{"steps", "graphs_seen", "seconds", "loss"}`` (loss = mean of the last 50 steps)."""
    import copy
    import time

    from tqdm.auto import tqdm

    if steps is None and seconds is None and stop is None:
        raise ValueError("give steps, seconds or stop")
    if ema is not None and not 0.0 < ema < 1.0:
        raise ValueError(f"ema must lie in (0, 1), got {ema}")
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: min(1.0, (k + 1) / warmup) if warmup else 1.0)
    averaged = copy.deepcopy(model).eval() if ema is not None else None
    model.train()
    start, losses, step = time.perf_counter(), [], 0
    bar = tqdm(total=steps, disable=not progress, desc="fit")
    def running() -> bool:
        elapsed = time.perf_counter() - start
        return ((steps is None or step < steps) and (seconds is None or elapsed < seconds)
                and (stop is None or not stop(step, elapsed)))

    while running():
        idx = torch.randint(len(records), (batch_size,), generator=g).tolist()
        loss = model.loss([records[i] for i in idx], generator=g, blocks_per_graph=blocks_per_graph)["loss"]
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if averaged is not None:
            with torch.no_grad():
                # warm start of the average (decay min(ema, (1+k)/(10+k))) so early checkpoints are not the init
                d = min(ema, (1 + step) / (10 + step))
                for pa, pm in zip(averaged.parameters(), model.parameters()):
                    pa.lerp_(pm, 1 - d)
        losses.append(loss.item())
        step += 1
        bar.update(1)
        if callback is not None and every and step % every == 0:
            callback(step, averaged if averaged is not None else model)
    bar.close()
    if averaged is not None:
        model.load_state_dict(averaged.state_dict())
    model.eval()
    return {"steps": step, "graphs_seen": step * batch_size, "seconds": time.perf_counter() - start,
            "loss": sum(losses[-50:]) / max(len(losses[-50:]), 1)}


def save_model(model: BlockDiffusion, path, info: dict | None = None):
    """Weights as safetensors with the constructor config (and ``info``, e.g. the training record) as JSON
    metadata; :func:`load_model` rebuilds the model without unpickling anything."""
    import json
    from pathlib import Path

    from safetensors.torch import save_file

    from .._files import atomic_path

    path = Path(path)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = {"format": "scidiff.graphs.BlockDiffusion", "config": json.dumps(model.config), "info": json.dumps(info or {})}
    with atomic_path(path) as tmp:
        save_file(tensors, tmp, metadata=meta)
    return path


def load_model(path, map_location: str | torch.device = "cpu") -> tuple[BlockDiffusion, dict]:
    """``(model in eval mode, info dict)`` from a file written by :func:`save_model`, or from the name of a model
    shipped in ``scidiff/assets`` (``"moses15"`` and ``"moses12"``: the one-shot models of the 15- and
    12-heavy-atom MOSES subsets; ``"moses15_pard"``: PARD on the 15-atom subset; model cards
    ``scidiff/assets/<name>.md``)."""
    import json
    from importlib.resources import files
    from pathlib import Path

    from safetensors import safe_open
    from safetensors.torch import load_file

    if not Path(path).exists() and isinstance(path, str) and "/" not in path and not path.endswith(".safetensors"):
        assets = files("scidiff") / "assets"
        if not (assets / f"{path}.safetensors").is_file():
            shipped = sorted(p.name.removesuffix(".safetensors") for p in assets.iterdir()
                             if p.name.startswith("moses") and p.name.endswith(".safetensors"))
            raise FileNotFoundError(f"no graph model {path!r}: not a file and not a shipped model (shipped: {shipped})")
        path = str(assets / f"{path}.safetensors")

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if meta.get("format") != "scidiff.graphs.BlockDiffusion":
        raise ValueError(f"{path} is not a graph diffusion model written by scidiff.graphs.save_model "
                         f"(format {meta.get('format')!r})")
    model = BlockDiffusion(**json.loads(meta["config"]))
    model.load_state_dict(load_file(str(path), device=str(map_location)))
    return model.to(map_location).eval(), json.loads(meta.get("info", "{}"))
