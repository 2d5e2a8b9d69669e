"""Latent DPS: Diffusion Posterior Sampling run on the latent state of a latent diffusion prior.

The baseline of ReSample (Song et al., ICLR 2024, arXiv 2307.08123, Sec. 3 "Latent-DPS"): DPS (Chung et al.,
ICLR 2023) with the data term seen through the decoder, ``|y - A(decode(z0_hat(z_t)))|``, and the gradient
taken through the latent denoiser *and* the decoder. It is :func:`scidiff.inverse.dps` applied to a
:class:`DecodedLikelihood`; the samples are decoded at the end.

A latent prior is anything with ``encode(x)``, ``decode(z)`` and a latent Denoiser ``prior(z, sigma)``
(:class:`scidiff.priors.LatentPrior`), or a plain Denoiser with ``encode``/``decode`` passed separately
(e.g. a Gaussian oracle in latent space and a linear decoder, where everything is known in closed form).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from ..likelihoods.base import Likelihood
from .dps import dps
from .posterior import Posterior

Map = Callable[[Tensor], Tensor]


def latent_parts(prior, encode: Map | None = None, decode: Map | None = None) -> tuple[Map, Map]:
    """``(encode, decode)`` of a latent prior: the arguments when given, else the prior's own methods."""
    encode = encode if encode is not None else getattr(prior, "encode", None)
    decode = decode if decode is not None else getattr(prior, "decode", None)
    if not callable(encode) or not callable(decode):
        raise TypeError(
            f"{type(prior).__name__} has no encode/decode: a latent sampler needs a latent prior "
            "(e.g. scidiff.priors.LatentPrior) or encode= and decode= functions"
        )
    return encode, decode


class DecodedLikelihood(Likelihood):
    """A pixel-space data term seen from latent space: ``energy(z) = base.energy(decode(z))``.

    Gradients flow through the decoder. ``sigma_y`` and ``residual`` of a Gaussian ``base`` are passed on.
    """

    def __init__(self, base: Likelihood, decode: Map):
        if not isinstance(base, Likelihood):
            raise TypeError(f"base must be a scidiff Likelihood, got {type(base).__name__}")
        self.base, self.decode = base, decode

    @property
    def sigma_y(self):
        return getattr(self.base, "sigma_y", None)

    def energy(self, z: Tensor, sigma: Tensor | None = None) -> Tensor:
        return self.base.energy(self.decode(z), sigma)

    def residual(self, z: Tensor) -> Tensor:
        return self.base.require("residual")(self.decode(z))


def latent_dps(
    prior,
    likelihood: Likelihood,
    shape: Sequence[int],
    sigmas: Tensor,
    *,
    encode: Map | None = None,
    decode: Map | None = None,
    zeta: float = 1.0,
    eta: float = 1.0,
    **kwargs,
) -> Posterior:
    """Latent DPS: ``shape = (N, *latent_shape)``; returns decoded (pixel-space) samples.

    Args:
        prior: the latent Denoiser, with ``encode``/``decode`` unless they are passed.
        likelihood: the pixel-space data term.
        sigmas: schedule of the latent diffusion (``ddpm_sigmas(1000)`` is the paper's DDPM grid).
        zeta, eta: DPS step size (normalised ``"norm"`` guidance, the reference code's) and DDIM stochasticity.
        kwargs: the remaining :func:`~scidiff.inverse.dps` arguments (``generator``, ``progress``, ``callback``...).

    Returns:
        :class:`Posterior` of decoded samples; ``info["latents"]`` holds the final latent states.
    """
    _, decode = latent_parts(prior, encode, decode)
    post = dps(prior, DecodedLikelihood(likelihood, decode), shape, sigmas, zeta=zeta, guidance="norm", eta=eta, **kwargs)
    with torch.no_grad():
        x = decode(post.samples)
    return Posterior(samples=x, info={**post.info, "method": "latent_dps", "latents": post.samples})
