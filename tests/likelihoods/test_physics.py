import pytest
import torch

dinv = pytest.importorskip("deepinv")

from scidiff.likelihoods import (  # noqa: E402
    GaussianLikelihood, LinearGaussianLikelihood, MissingCapability, from_physics, in_model_units,
)

SHAPE = (1, 8, 8)


def _x(n=3, seed=0):
    return torch.randn(n, *SHAPE, generator=torch.Generator().manual_seed(seed))


def _check_energy_and_grad(lik, physics, y, sigma_y):
    x = _x()
    ref = lambda v: (y - physics.A(v)).pow(2).flatten(1).sum(1) / (2 * sigma_y**2)  # noqa: E731
    assert torch.allclose(lik.energy(x), ref(x), rtol=1e-5)
    xr = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(ref(xr).sum(), xr)
    assert torch.allclose(lik.grad(x), g, rtol=1e-4, atol=1e-5)


def test_decomposable_physics_gives_linear_likelihood_with_svd():
    physics = dinv.physics.Inpainting(img_size=SHAPE, mask=0.5, noise_model=dinv.physics.GaussianNoise(0.1),
                                      rng=torch.Generator().manual_seed(0))
    y = physics(_x(1, seed=5))
    lik = from_physics(physics, y, x_shape=SHAPE)
    assert isinstance(lik, LinearGaussianLikelihood)
    assert lik.sigma_y == pytest.approx(0.1)  # read from the noise model
    _check_energy_and_grad(lik, physics, y, 0.1)
    svd = lik.require("svd")
    x = _x()
    assert torch.allclose(svd.U(svd.singular_values * svd.V_adjoint(x)), lik.A(x), atol=1e-6)
    assert torch.allclose(lik.A_dagger(y), physics.A_dagger(y))
    assert physics.adjointness_test(x[:1]).abs() < 1e-5


def test_linear_physics_without_svd_and_explicit_sigma():
    physics = dinv.physics.Blur(filter=dinv.physics.functional.blur.gaussian_blur(sigma=(1.0, 1.0)), padding="circular")
    y = physics(_x(1, seed=2))
    lik = from_physics(physics, y, sigma_y=0.05)
    assert isinstance(lik, LinearGaussianLikelihood) and lik.svd is None
    _check_energy_and_grad(lik, physics, y, 0.05)
    with pytest.raises(MissingCapability, match="svd"):
        lik.require("svd")
    u = _x(1)
    assert torch.allclose((lik.A(u) * y).sum(), (u * lik.A_adjoint(y)).sum(), rtol=1e-4)


def test_nonlinear_physics_gives_generic_gaussian():
    physics = dinv.physics.Physics(A=lambda x: torch.tanh(x) ** 2, noise_model=dinv.physics.GaussianNoise(0.2))
    y = physics.A(_x(1, seed=3))
    lik = from_physics(physics, y)
    assert type(lik) is GaussianLikelihood
    _check_energy_and_grad(lik, physics, y, 0.2)
    with pytest.raises(MissingCapability):
        lik.require("A_dagger")


def test_errors():
    physics = dinv.physics.Inpainting(img_size=SHAPE, mask=0.5)
    y = physics(_x(1))
    with pytest.raises(ValueError, match="only GaussianNoise"):
        from_physics(physics, y)  # no noise model and no sigma_y
    with pytest.raises(ValueError, match="does not match the measurements"):
        from_physics(physics, y[..., :4], 0.1, x_shape=SHAPE)
    with pytest.raises(ValueError, match="does not match the measurements"):
        from_physics(physics, y[..., :4], 0.1).energy(_x())  # caught lazily without x_shape
    with pytest.raises(TypeError, match="deepinv.physics.Physics"):
        from_physics(lambda x: x, y, 0.1)
    with pytest.raises(ValueError, match="sigma_y must be positive"):
        from_physics(physics, y, 0.0)


def test_num_measurements_counts_observed_entries():
    """Inpainting returns a zero-filled image: only the kept pixels are measurements; a blur measures all."""
    noise = dinv.physics.GaussianNoise(0.1)
    inpaint = dinv.physics.Inpainting(img_size=(1, 8, 8), mask=0.25, noise_model=noise,
                                      rng=torch.Generator().manual_seed(0))
    y = torch.zeros(1, 1, 8, 8)
    assert from_physics(inpaint, y).num_measurements == int(inpaint.mask.sum())
    assert in_model_units(from_physics(inpaint, y), 0.5, 2.0, shape=(1, 8, 8)).num_measurements == int(inpaint.mask.sum())
    blur = dinv.physics.BlurFFT(img_size=(1, 8, 8), filter=dinv.physics.functional.blur.gaussian_blur(sigma=(1.0, 1.0)),
                                noise_model=noise)
    assert from_physics(blur, y).num_measurements == 64
    tomo = dinv.physics.Tomography(angles=4, img_width=8, normalize=True, noise_model=noise)
    assert from_physics(tomo, tomo.A(y)).num_measurements == tomo.A(y)[0].numel()
