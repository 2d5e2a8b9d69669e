import pytest
import torch

from scidiff.data.weighted import ImportanceSampler, OversampledDataModule, stratified_proposal, weighted_mean


def _pool(n=20000, seed=0):
    return torch.randn(n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_stratified_proposal_gives_the_shares_and_exact_weights():
    stat = _pool()
    q, w = stratified_proposal(stat, [0.9, 0.99], [0.5, 0.3, 0.2])
    assert q.sum().item() == pytest.approx(1.0)
    edges = torch.quantile(stat, torch.tensor([0.9, 0.99], dtype=torch.float64))
    stratum = torch.bucketize(stat, edges, right=True)
    for k, (share, mass) in enumerate(zip([0.5, 0.3, 0.2], [0.9, 0.09, 0.01])):
        assert q[stratum == k].sum().item() == pytest.approx(share)
        # w = p_k / share_k for every member of stratum k (p_k the stratum's share of the pool, exactly 0.9/0.09/0.01)
        torch.testing.assert_close(w[stratum == k], torch.full_like(w[stratum == k], mass / share), rtol=1e-3, atol=0)
    # E_q[w f] is the plain pool mean of any f: the weighted loss has the unweighted loss's minimiser.
    f = torch.rand(stat.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64) + stat**3
    assert (q * w * f).sum().item() == pytest.approx(f.mean().item(), rel=1e-10, abs=1e-12)


def test_importance_sampler_oversamples_the_tail_and_the_weighted_mean_is_unbiased():
    stat = _pool()
    q, w = stratified_proposal(stat, [0.9, 0.99], [0.5, 0.3, 0.2])
    threshold = torch.quantile(stat, 0.99)
    idx = torch.tensor(list(ImportanceSampler(q, 40000, seed=3)))
    assert (stat[idx] > threshold).double().mean().item() == pytest.approx(0.2, abs=0.01)  # 20x the plain 1 %
    # P(stat > q99) and E[stat^2] of the pool, recovered from the oversampled draws (Monte Carlo tolerances)
    p_tail = weighted_mean((stat[idx] > threshold).double(), w[idx]).item()
    assert p_tail == pytest.approx(0.01, abs=0.001)
    assert weighted_mean(stat[idx] ** 2, w[idx]).item() == pytest.approx(stat.pow(2).mean().item(), abs=0.03)
    # unweighted, the draws are biased: the weights are what makes it right
    assert stat[idx].pow(2).mean().item() > 1.5
    again = ImportanceSampler(q, 40000, seed=3)
    assert list(again)[:100] == idx[:100].tolist()
    again.set_epoch(1)
    assert list(again)[:100] != idx[:100].tolist()


def test_weighted_prior_loss_is_the_self_normalised_mean():
    from scidiff.priors import DiffusionPrior

    prior = DiffusionPrior(shape=[2, 8], network="mlp", network_kwargs={"hidden": 16, "depth": 2}, ema_decay=0)
    x = torch.randn(6, 2, 8, generator=torch.Generator().manual_seed(0))
    w = torch.tensor([0.1, 2.0, 0.5, 1.0, 3.0, 0.2])
    gens = lambda: [torch.Generator().manual_seed(i) for i in range(6)]  # noqa: E731
    from scidiff.diffusion import edm_loss

    per_item = edm_loss(prior.precond, x, sigma_data=1.0, p_mean=prior.hparams.p_mean, p_std=prior.hparams.p_std,
                        generator=gens())
    torch.testing.assert_close(prior._loss((x, w), gens()), (w * per_item).sum() / w.sum())
    torch.testing.assert_close(prior._loss((x, torch.ones(6)), gens()), prior._loss(x, gens()))


def _lorenz_module(**kwargs):
    return OversampledDataModule(lambda f: f[:, 0].amax(-1), quantiles=[0.5, 0.9], shares=[0.4, 0.3, 0.3],
                                 generate={"name": "lorenz63", "n": 200, "res": 8, "seed": 0},
                                 variables=["x", "y", "z"], val_fraction=0.1, batch_size=32, **kwargs)


def test_oversampled_data_module_weights_training_batches_only():
    dm = _lorenz_module(normalizer=([0.0, 0.0, 25.0], [8.0, 8.0, 5.0]))
    dm.setup()
    x, w = next(iter(dm.train_dataloader()))
    assert x.shape == (32, 3, 8) and w.shape == (32,)
    expected = torch.tensor([0.5 / 0.4, 0.4 / 0.3, 0.1 / 0.3])  # pool share / proposal share of each stratum
    assert all((expected - v).abs().min() < 0.02 for v in w.unique())
    assert len(dm.val_set.tensors) == 1  # validation stays a plain draw of the data law
    raw = dm.data[dm._split(200)[1]]
    torch.testing.assert_close(dm.val_set.tensors[0][:, 2], (raw[:, 2] - 25.0) / 5.0)  # the given units


def test_bad_inputs():
    stat = _pool(100)
    with pytest.raises(ValueError, match="NaN or inf"):
        stratified_proposal(torch.tensor([0.0, float("nan"), 1.0]), [0.5], [0.5, 0.5])
    with pytest.raises(ValueError, match="1D tensor"):
        stratified_proposal(stat.reshape(10, 10), [0.5], [0.5, 0.5])
    with pytest.raises(ValueError, match="increasing levels"):
        stratified_proposal(stat, [0.9, 0.5], [0.3, 0.3, 0.4])
    with pytest.raises(ValueError, match="one entry per stratum"):
        stratified_proposal(stat, [0.9], [0.3, 0.3, 0.4])
    with pytest.raises(ValueError, match="sum to 1"):
        stratified_proposal(stat, [0.9], [0.3, 0.3])
    with pytest.raises(ValueError, match="empty"):
        stratified_proposal(torch.zeros(100), [0.5], [0.5, 0.5])
    with pytest.raises(ValueError, match="differ in length"):
        weighted_mean(torch.ones(3), torch.ones(4))
    with pytest.raises(ValueError, match="lazy=False"):
        OversampledDataModule(lambda f: f, path="x.nc", lazy=True).setup()
