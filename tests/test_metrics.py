"""Metrics against numpy / brute-force references and the bootstrap CI's coverage."""
import math

import numpy as np
import pytest
import torch

from course_lib.metrics import (fraction_better, fraction_squared_error, median_ci, mse,
                                nearest_neighbor_distance, r2)


@pytest.fixture
def pair():
    g = torch.Generator().manual_seed(0)
    target = torch.randn(6, 3, 5, 4, generator=g, dtype=torch.float64)
    pred = target + 0.3 * torch.randn(6, 3, 5, 4, generator=g, dtype=torch.float64)
    return pred, target


def test_r2_determination_vs_numpy(pair):
    pred, target = pair
    out = r2(pred, target)
    assert out.shape == (6,)
    for b in range(6):
        p, t = pred[b].numpy().ravel(), target[b].numpy().ravel()
        ref = 1 - np.sum((p - t) ** 2) / np.sum((t - t.mean()) ** 2)
        assert out[b].item() == pytest.approx(ref, rel=1e-12)
    assert torch.allclose(r2(target, target), torch.ones(6, dtype=torch.float64))
    # predicting the per-image mean gives 0; the determination is not symmetric
    assert torch.allclose(r2(target.mean((1, 2, 3), keepdim=True).expand_as(target), target),
                          torch.zeros(6, dtype=torch.float64), atol=1e-12)
    assert not torch.allclose(r2(pred, target), r2(target, pred))
    # a scaled copy is perfectly correlated but not a perfect prediction
    assert (r2(2 * target, target) < 0.5).all()


def test_r2_pearson_vs_numpy(pair):
    pred, target = pair
    out = r2(pred, target, kind="pearson")
    for b in range(6):
        ref = np.corrcoef(pred[b].numpy().ravel(), target[b].numpy().ravel())[0, 1] ** 2
        assert out[b].item() == pytest.approx(ref, rel=1e-12)
    assert torch.allclose(r2(2 * target + 1, target, kind="pearson"), torch.ones(6, dtype=torch.float64))
    assert torch.allclose(out, r2(target, pred, kind="pearson"))


def test_r2_constant_target_and_errors():
    t = torch.zeros(2, 1, 2, 2)
    assert r2(t, t).tolist() == [1.0, 1.0]
    assert r2(t + 1, t)[0] == -float("inf")
    with pytest.raises(ValueError, match="same shape"):
        r2(torch.zeros(2, 1, 2, 2), torch.zeros(2, 1, 2, 3))
    with pytest.raises(ValueError, match="kind"):
        r2(t, t, kind="spearman")
    with pytest.raises(TypeError, match="floating"):
        r2(t.long(), t)


def test_mse_and_fse(pair):
    pred, target = pair
    assert torch.allclose(mse(pred, target), ((pred - target) ** 2).mean((1, 2, 3)))
    fse = fraction_squared_error(pred, target)
    ref = torch.tensor([np.sum((pred[b].numpy() - target[b].numpy()) ** 2) / np.sum(target[b].numpy() ** 2)
                        for b in range(6)], dtype=torch.float64)
    assert torch.allclose(fse, ref, rtol=1e-12)
    assert torch.allclose(fraction_squared_error(target, target), torch.zeros(6, dtype=torch.float64))
    with pytest.raises(ValueError, match="zero norm"):
        fraction_squared_error(target, torch.zeros_like(target))


@pytest.mark.parametrize("chunk_size", [1, 3, 7, 100])
def test_nearest_neighbor_vs_brute_force(chunk_size):
    g = torch.Generator().manual_seed(1)
    train = torch.randn(23, 1, 4, 4, generator=g)
    x = torch.randn(9, 1, 4, 4, generator=g)
    x[2] = train[17] + 1e-3  # a near-copy must find its source
    dist, idx = nearest_neighbor_distance(x, train, chunk_size=chunk_size)
    brute = torch.cdist(x.flatten(1).double(), train.flatten(1).double())
    ref_d, ref_i = brute.min(1)
    assert torch.equal(idx, ref_i) and idx[2] == 17
    assert torch.allclose(dist.double(), ref_d, atol=1e-4)
    assert torch.allclose(nearest_neighbor_distance(x, train, chunk_size, return_index=False), dist)
    with pytest.raises(ValueError, match="differ"):
        nearest_neighbor_distance(x, train[:, :, :3])
    with pytest.raises(ValueError, match="chunk_size"):
        nearest_neighbor_distance(x, train, chunk_size=0)


def test_median_ci_matches_numpy_median_and_is_seeded():
    v = torch.tensor([3.0, 1.0, 4.0, 1.0, 5.0, 9.0])
    med, lo, hi = median_ci(v, n_boot=500, generator=torch.Generator().manual_seed(0))
    assert med == np.median(v.numpy()) and lo <= med <= hi
    assert median_ci(v, n_boot=500, generator=torch.Generator().manual_seed(0)) == (med, lo, hi)
    with pytest.raises(ValueError, match="empty"):
        median_ci([])
    with pytest.raises(ValueError, match="ci"):
        median_ci(v, ci=1.5)


def test_median_ci_coverage():
    """95% bootstrap CIs for the median of Exp(1) samples (true median ln 2) should cover it in
    about 95% of 200 repetitions; with binomial sd sqrt(.95*.05/200) = 1.5%, require >= 88%
    (the percentile bootstrap of a median undercovers slightly at n = 51)."""
    g = torch.Generator().manual_seed(0)
    reps, n = 200, 51
    cover, widths = 0, []
    for _ in range(reps):
        v = -torch.log(torch.rand(n, generator=g, dtype=torch.float64))
        _, lo, hi = median_ci(v, n_boot=400, generator=g)
        cover += lo <= math.log(2) <= hi
        widths.append(hi - lo)
    assert cover / reps >= 0.88
    # width close to the asymptotic 2 * 1.96 / (2 f(m) sqrt(n)), f(m) = 1/2 for Exp(1)
    expected = 2 * 1.96 / math.sqrt(n)
    assert 0.6 * expected < float(np.median(widths)) < 1.5 * expected


def test_fraction_better():
    assert fraction_better([1, 2, 3, 4], [0, 2, 5, 1]) == pytest.approx(0.625)
    with pytest.raises(ValueError):
        fraction_better([1, 2], [1])
