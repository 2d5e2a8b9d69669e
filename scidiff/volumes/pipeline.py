"""``scidiff reconstruct``: read a volume, measure it with the configured operator, reconstruct, write results.

A config (YAML, see ``problems/ct3d/``) names the operator, the method and its arguments::

    operator: {kind: sparse_view, n_views: 8}      # or limited_angle (range_deg), fan_beam (n_views), mri (acceleration)
    noise_sigma: 0.0                               # Gaussian noise on the measurements, in their units
    method: dds                                    # fbp | admm_tv | diffusion_mbir | dds
    method_args: {n_steps: 50, eta: 0.85}
    prior: ct_slices32                             # shipped prior name or a .safetensors/.ckpt path
    seed: 0
    n_samples: 1                                   # diffusion methods: > 1 returns the mean of that many seeds
    batch_size: null                               # samples per sampler call (memory knob; results do not change)

With ``n_samples > 1`` the reconstruction is the posterior mean of runs with seeds ``seed, seed + 1, ...``
(:func:`~scidiff.inverse.ensemble.posterior_ensemble`) and the report carries their voxel-wise std.

The input volume is the object; it is measured on a grid twice as fine (nearest-neighbour refinement,
so the reconstruction never sees its own discretisation), then reconstructed on the input grid.
"""

from __future__ import annotations

import time

import torch

from .io import to_xarray, spacing_of

METHODS = ("fbp", "admm_tv", "diffusion_mbir", "dds")


def build_operator(spec: dict, width: int):
    """The volume operator described by ``spec`` for slices ``width x width``."""
    from ..likelihoods.volume import SliceMRI, SliceTomography

    spec = dict(spec)
    kind = spec.pop("kind", None)
    if kind == "sparse_view":
        return SliceTomography.sparse_view(int(spec.pop("n_views", 8)), width, **spec)
    if kind == "limited_angle":
        return SliceTomography.limited_angle(width, **spec)
    if kind == "fan_beam":
        return SliceTomography.fan_beam(int(spec.pop("n_views", 8)), width, **spec)
    if kind == "mri":
        return SliceMRI.random_lines(width, generator=torch.Generator().manual_seed(int(spec.pop("seed", 0))), **spec)
    raise ValueError(f"operator kind must be 'sparse_view', 'limited_angle', 'fan_beam' or 'mri'; got {kind!r}")


def simulate(spec: dict, x, *, noise_sigma: float = 0.0, generator=None):
    """Measurements of ``x`` ``(B, 1, D, H, W)`` and the operator for reconstruction on ``x``'s grid.

    The object is refined 2x (in-plane and along z) and measured there, then binned to the coarse detector
    (CT, :func:`~scidiff.likelihoods.volume.coarsen_sinogram`) or sampled at the coarse grid's frequencies
    (MRI): ``op.A_from_finer``. The inverse crime is avoided.
    """
    op = build_operator(spec, x.shape[-1])
    x_fine = torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest")
    y = op.A_from_finer(x_fine)
    if noise_sigma > 0:
        y = y + noise_sigma * torch.randn(y.shape, generator=generator, dtype=y.dtype)
    return op, y


def load_slice_prior(name_or_path: str):
    from ..priors import DiffusionPrior

    return DiffusionPrior.from_name_or_path(name_or_path).eval()


def run_method(method: str, op, y, *, prior=None, method_args: dict | None = None, seed: int = 0, progress: bool = False,
               n_samples: int = 1, batch_size: int | None = None):
    """Reconstruct with one of :data:`METHODS`; returns ``(volume (B, 1, D, H, W), info)``. ``n_samples > 1``
    (diffusion methods, one volume): the volume is the mean of that many seeds, ``info["std"]`` their std."""
    from .. import inverse
    from ..inverse.ensemble import posterior_ensemble

    args = dict(method_args or {})
    if int(n_samples) < 1 or (int(n_samples) > 1 and method in ("fbp", "admm_tv")):
        raise ValueError(f"n_samples must be 1, or > 1 with a diffusion method (dds, diffusion_mbir); got {n_samples} "
                         f"with {method!r}, which is deterministic")
    start = time.perf_counter()
    if method == "fbp":
        x = inverse.fbp(op, y)
    elif method == "admm_tv":
        x = inverse.admm_tv(op, y, progress=progress, **args)
    elif method in ("diffusion_mbir", "dds"):
        if prior is None:
            raise ValueError(f"method {method!r} needs a slice prior (config key 'prior')")
        if tuple(prior.shape[1:]) != tuple(op.slice_shape):
            raise ValueError(f"the prior's slices are {tuple(prior.shape[1:])} but the volume's are {tuple(op.slice_shape)}")
        fn = getattr(inverse, method)
        if int(n_samples) > 1:
            post = posterior_ensemble(fn, prior, op, y, n_samples=n_samples, seed=seed, batch_size=batch_size,
                                      progress=progress, **args)
            x, std = post.mean()[None], post.std()[None]
        else:
            x = fn(prior, op, y, generator=torch.Generator().manual_seed(seed), progress=progress, **args).samples
    else:
        raise ValueError(f"method must be one of {METHODS}; got {method!r}")
    info = {"method": method, "wall_time_s": time.perf_counter() - start, **args}
    if int(n_samples) > 1:
        info.update(n_samples=int(n_samples), std=std)
    return x, info


def reconstruct(config: dict, volume, *, progress: bool = False):
    """Run a config on an input volume (``DataArray`` on ``z, y, x``); returns ``(reconstruction DataArray, report)``.
    With ``n_samples > 1`` the report's ``"std"`` is the voxel-wise std of the samples (a DataArray like the
    reconstruction): an uncertainty map."""
    if volume.shape[1] != volume.shape[2]:
        raise ValueError(f"axial slices must be square; got {volume.shape[1]} x {volume.shape[2]}")
    x = torch.as_tensor(volume.values, dtype=torch.float32)[None, None]
    seed = int(config.get("seed", 0))
    op, y = simulate(config["operator"], x, noise_sigma=float(config.get("noise_sigma", 0.0)),
                     generator=torch.Generator().manual_seed(seed + 1))
    prior = load_slice_prior(config["prior"]) if config.get("prior") else None
    rec, info = run_method(config.get("method", "admm_tv"), op, y, prior=prior, method_args=config.get("method_args"),
                           seed=seed, progress=progress, n_samples=int(config.get("n_samples", 1)),
                           batch_size=config.get("batch_size"))
    peak = float(x.max() - x.min()) or 1.0
    mse = float((rec - x).pow(2).mean())
    info["psnr_vs_input_db"] = 10 * torch.log10(torch.tensor(peak**2 / max(mse, 1e-20))).item()
    origin = tuple(float(volume[d][0]) for d in ("z", "y", "x"))
    attrs = {"method": info["method"], "operator": str(config["operator"])}
    da = to_xarray(rec[0, 0], spacing_of(volume), origin=origin, attrs=attrs)
    if "std" in info:
        attrs = {**attrs, "n_samples": info["n_samples"], "quantity": "posterior std"}
        info["std"] = to_xarray(info["std"][0, 0], spacing_of(volume), origin=origin, attrs=attrs)
    return da, info
