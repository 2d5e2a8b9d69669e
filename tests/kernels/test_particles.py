import pytest
import torch

from scidiff.diffusion import seeded_generators
from scidiff.kernels import (
    RESAMPLING_SCHEMES,
    chunked,
    ess,
    gather_particles,
    joint_generator,
    normalize_log_weights,
    normalized_weights,
    resample,
    resample_if,
)


def _offspring(ancestors: torch.Tensor, n: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(ancestors, n).sum(-2).double()


@pytest.mark.parametrize("scheme", RESAMPLING_SCHEMES)
def test_resampling_is_unbiased(scheme):
    g = torch.Generator().manual_seed(0)
    n, reps = 7, 20000
    lw = torch.randn(n, generator=g, dtype=torch.float64) * 1.5
    lw[2] = -torch.inf  # a dead particle is never selected
    w = normalized_weights(lw)
    # reps independent systems in one batched call
    anc = resample(lw.expand(reps, n), scheme, generator=g)
    counts = _offspring(anc, n)
    assert anc.shape == (reps, n) and anc.dtype == torch.long
    assert (counts.sum(-1) == n).all()
    assert counts[:, 2].sum() == 0
    mean = counts.mean(0)
    # standard error of the mean count is at most sqrt(n w (1 - w) / reps) (multinomial is the worst case)
    se = (n * w * (1 - w) / reps).sqrt().clamp_min(1e-3)
    assert ((mean - n * w).abs() < 5 * se).all(), (mean, n * w)


def test_systematic_has_lower_variance_than_multinomial():
    g = torch.Generator().manual_seed(1)
    n, reps = 16, 4000
    lw = torch.randn(n, generator=g, dtype=torch.float64)
    var = {s: _offspring(resample(lw.expand(reps, n), s, generator=g), n).var(0).sum() for s in RESAMPLING_SCHEMES}
    assert var["systematic"] < 0.5 * var["multinomial"]
    assert var["stratified"] < var["multinomial"] and var["residual"] < var["multinomial"]


def test_residual_keeps_deterministic_copies():
    lw = torch.tensor([0.5, 0.25, 0.25]).log()  # N w = (1.5, 0.75, 0.75): particle 0 at least once
    anc = resample(lw.expand(1000, 3), "residual", generator=torch.Generator().manual_seed(0))
    assert (_offspring(anc, 3)[:, 0] >= 1).all()


def test_extreme_log_weights_stay_finite():
    lw = torch.tensor([-1e30, 0.0, 700.0, 699.0, -torch.inf])
    lwn = normalize_log_weights(lw)
    w = lwn.exp()
    assert torch.isfinite(lwn[:4]).all() and not torch.isnan(w).any()
    assert torch.allclose(w.sum(), torch.tensor(1.0, dtype=torch.float64))
    assert 1.0 <= float(ess(lw)) < 2.0
    for scheme in RESAMPLING_SCHEMES:
        anc = resample(lw, scheme, generator=torch.Generator().manual_seed(0))
        assert set(anc.tolist()) <= {2, 3}
    # all-dead system: uniform instead of NaN
    assert torch.allclose(normalized_weights(torch.full((4,), -torch.inf)), torch.full((4,), 0.25, dtype=torch.float64))
    assert torch.allclose(ess(torch.full((2, 5), 1e30)), torch.tensor([5.0, 5.0], dtype=torch.float64))


def test_resample_if_only_touches_degenerate_systems():
    lw = torch.stack([torch.zeros(8), torch.tensor([0.0] + [-50.0] * 7)])
    anc, new_lw, did = resample_if(lw, 0.5, generator=torch.Generator().manual_seed(0))
    assert did.tolist() == [False, True]
    assert anc[0].tolist() == list(range(8)) and (anc[1] == 0).all()
    assert torch.allclose(new_lw[1], torch.zeros(8, dtype=torch.float64))
    assert torch.allclose(new_lw[0].exp(), torch.full((8,), 1 / 8, dtype=torch.float64))
    _, _, never = resample_if(lw, 0.0)
    assert not never.any()


def test_gather_particles_and_generators():
    x = torch.arange(2 * 3 * 2).reshape(2, 3, 2)
    anc = torch.tensor([[2, 2, 0], [1, 0, 1]])
    out = gather_particles(x, anc)
    assert out[0, 0].tolist() == x[0, 2].tolist() and out[1, 1].tolist() == x[1, 0].tolist()
    with pytest.raises(ValueError, match="do not index"):
        gather_particles(x, anc[:1])
    # per-system generators: system results do not depend on how many systems are batched
    lw = torch.randn(3, 10, generator=torch.Generator().manual_seed(0))
    a3 = resample(lw, "multinomial", generator=seeded_generators(3))
    a1 = resample(lw[:1], "multinomial", generator=seeded_generators(1))
    assert torch.equal(a3[:1], a1)
    assert torch.equal(
        resample(lw, "stratified", generator=torch.Generator().manual_seed(5)),
        resample(lw, "stratified", generator=torch.Generator().manual_seed(5)),
    )
    gens = seeded_generators(2)
    assert joint_generator(gens) is gens[0] and joint_generator(None) is None


def test_chunked_matches_unchunked():
    x, s = torch.randn(10, 3), torch.rand(10)
    fn = lambda a, b: (a * b[:, None], a.sum(1))  # noqa: E731
    full = chunked(fn, x, s)
    parts = chunked(fn, x, s, max_batch_size=3)
    assert all(torch.equal(p, f) for p, f in zip(parts, full))
    assert torch.equal(chunked(lambda a: a * 2, x, max_batch_size=4), x * 2)
    with pytest.raises(ValueError, match="max_batch_size"):
        chunked(lambda a: a, x, max_batch_size=0)
    with pytest.raises(ValueError, match="share dim 0"):
        chunked(fn, x, s[:3], max_batch_size=2)


def test_bad_input():
    with pytest.raises(ValueError, match="NaN"):
        ess(torch.tensor([0.0, float("nan")]))
    with pytest.raises(ValueError, match=r"\+inf"):
        normalize_log_weights(torch.tensor([0.0, float("inf")]))
    with pytest.raises(ValueError, match="unknown resampling scheme"):
        resample(torch.zeros(3), "bogus")
    with pytest.raises(TypeError, match="tensor"):
        ess([0.0, 1.0])
    with pytest.raises(ValueError, match="threshold"):
        resample_if(torch.zeros(3), -1.0)


def test_resample_if_decides_on_the_device_and_draws_every_time():
    lw = torch.stack([torch.zeros(8), torch.tensor([0.0] + [-50.0] * 7)])
    # the generator advances by the same draw whether or not any system resamples (no host decision)
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    resample_if(torch.zeros(2, 8), 0.5, generator=g1)
    resample_if(lw, 0.5, generator=g2)
    assert torch.equal(torch.rand(3, generator=g1), torch.rand(3, generator=g2))
    # force: a system with a diverged particle resamples whatever its ESS
    anc, new_lw, did = resample_if(lw, 0.0, generator=torch.Generator().manual_seed(0),
                                   force=torch.tensor([True, False]))
    assert did.tolist() == [True, False] and anc[1].tolist() == list(range(8))
    assert torch.equal(new_lw[0], torch.zeros(8, dtype=torch.float64))
