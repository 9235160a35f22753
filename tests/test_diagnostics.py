"""Tests of course_lib/diagnostics.py (Chapter 1: posterior collapse, novelty, fidelity proxy)."""
import math

import pytest
import torch

from course_lib import diagnostics as dg
from course_lib.denoisers import ClosedFormSmoothedDenoiser, IdealDenoiser


def _data(N=40, B=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    Y = torch.randn(N, 1, 3, 3, generator=g, dtype=torch.float64)
    x = torch.randn(B, 1, 3, 3, generator=g, dtype=torch.float64)
    return Y, x


def test_entropy_and_effective_number_limits_and_brute_force():
    Y, x = _data()
    D = IdealDenoiser(Y, chunk_size=6)
    for sigma in (0.3, 1.0):
        w = torch.softmax(-torch.cdist(x.flatten(1), Y.flatten(1)) ** 2 / (2 * sigma**2), -1)
        H = -(w * torch.log(w)).sum(-1)
        torch.testing.assert_close(dg.posterior_entropy(D, x, sigma), H, rtol=1e-7, atol=1e-9)
        torch.testing.assert_close(dg.effective_number(D, x, sigma), torch.exp(H), rtol=1e-7, atol=1e-9)
    # on a training image at tiny sigma: one image; at huge sigma: all N equally
    torch.testing.assert_close(dg.effective_number(D, Y[:3], 1e-3), torch.ones(3, dtype=torch.float64))
    torch.testing.assert_close(dg.effective_number(D, x, 1e4), torch.full((5,), 40.0, dtype=torch.float64),
                               rtol=1e-6, atol=0)
    # the smoothed variants expose their ideal denoiser
    C = ClosedFormSmoothedDenoiser(D, 0.5)
    torch.testing.assert_close(dg.posterior_entropy(C, x, 0.3), dg.posterior_entropy(D, x, 0.3))
    with pytest.raises(TypeError, match="IdealDenoiser"):
        dg.posterior_entropy(lambda x, s: x, x, 1.0)


def test_posterior_along_trajectory_stacks_the_per_step_summaries():
    Y, x = _data()
    D = IdealDenoiser(Y)
    sig = [3.0, 1.0, 0.2]
    xs = torch.stack([x, 0.5 * x + 0.5 * Y[:5], Y[:5] + 0.01 * x])
    out = dg.posterior_along_trajectory(D, xs, sig)
    assert out["entropy"].shape == (3, 5) and out["argmax"].shape == (3, 5)
    for t in range(3):
        st = D.posterior_stats(xs[t], sig[t])
        for k in ("entropy", "n_eff", "max_weight", "argmax"):
            assert torch.equal(out[k][t], st[k])
    assert torch.equal(out["argmax"][2], torch.arange(5))
    with pytest.raises(ValueError, match="> 0"):
        dg.posterior_along_trajectory(D, xs, [3.0, 1.0, 0.0])
    with pytest.raises(ValueError, match="states"):
        dg.posterior_along_trajectory(D, xs, [3.0, 1.0])


def test_collapse_sigma():
    sig = torch.tensor([10.0, 5.0, 2.0, 1.0, 0.5])
    mw = torch.tensor([[0.30, 0.20, 0.999],
                       [0.995, 0.30, 0.999],
                       [0.50, 0.40, 0.999],
                       [0.999, 0.98, 0.999],
                       [1.00, 0.985, 1.0]])
    out = dg.collapse_sigma(sig, mw, threshold=0.99)
    assert out[0] == 1.0          # 0.995 at sigma=5 does not count: it drops again at sigma=2
    assert math.isnan(out[1])     # never collapses above 0.99
    assert out[2] == 10.0         # collapsed from the start
    assert dg.collapse_sigma(sig, mw[:, 1], threshold=0.97) == 1.0
    with pytest.raises(ValueError, match="descending"):
        dg.collapse_sigma(sig.flip(0), mw)
    with pytest.raises(ValueError, match="threshold"):
        dg.collapse_sigma(sig, mw, threshold=1.0)


def test_collapse_on_a_real_ideal_trajectory_happens_before_the_end():
    """An Euler PF-ODE run of the ideal machine: the max weight ends at 1 and the collapse sigma is
    a genuine intermediate noise level (between the smallest and largest sigma)."""
    g = torch.Generator().manual_seed(4)
    Y = torch.rand(30, 1, 4, 4, generator=g, dtype=torch.float64) * 2 - 1
    D = IdealDenoiser(Y)
    sig = torch.logspace(1, -2, 25, dtype=torch.float64)
    x = 10 * torch.randn(6, 1, 4, 4, generator=g, dtype=torch.float64)
    xs = []
    for s0, s1 in zip(sig[:-1], sig[1:]):
        xs.append(x)
        x = x + (s1 - s0) * (x - D(x, float(s0))) / s0
    out = dg.posterior_along_trajectory(D, xs, sig[:-1])
    assert bool((out["max_weight"][-1] > 0.999).all())
    sc = dg.collapse_sigma(sig[:-1], out["max_weight"])
    assert bool(((sc > sig[-2]) & (sc < sig[0])).all())
    # n_eff decreases (weakly) from ~N to 1 along the way
    assert bool((out["n_eff"][0] > 10).all()) and bool((out["n_eff"][-1] < 1.01).all())


def test_novelty_and_memorized_fraction():
    Y, _ = _data()
    g = torch.Generator().manual_seed(9)
    delta = 0.01 * torch.randn(4, 1, 3, 3, generator=g, dtype=torch.float64)
    samples = torch.cat([Y[:3], Y[5:9] + delta])
    nov = dg.novelty(samples, Y)
    torch.testing.assert_close(nov[:3], torch.zeros(3, dtype=torch.float64), atol=1e-6, rtol=0)
    torch.testing.assert_close(nov[3:], delta.flatten(1).norm(dim=-1) / 3.0, rtol=1e-4, atol=1e-6)
    assert dg.memorized_fraction(nov, tol=1e-4) == pytest.approx(3 / 7)
    # float32 images far from the origin: an exact copy has novelty exactly 0 (no cancellation error)
    Y32 = (Y.float() + 30.0)
    assert torch.equal(dg.novelty(Y32[:4], Y32), torch.zeros(4))


def test_off_subspace_residual():
    g = torch.Generator().manual_seed(6)
    d, r = 16, 5
    U, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    mean = torch.randn(d, generator=g, dtype=torch.float64)
    inside = mean + torch.randn(7, r, generator=g, dtype=torch.float64) @ U[:, :r].T
    torch.testing.assert_close(dg.off_subspace_residual(inside.reshape(7, 1, 4, 4), mean, U[:, :r]),
                               torch.zeros(7, dtype=torch.float64), atol=1e-12, rtol=0)
    # isotropic noise of std s: E residual^2 = s^2 (d - r) / d; Monte Carlo over M samples
    s, M = 0.3, 20000
    noisy = mean + s * torch.randn(M, d, generator=g, dtype=torch.float64)
    res2 = dg.off_subspace_residual(noisy.reshape(M, 1, 4, 4), mean, U[:, :r]) ** 2
    expected = s**2 * (d - r) / d
    assert abs(res2.mean() - expected) < 5 * res2.std() / math.sqrt(M)
    with pytest.raises(ValueError, match="U must be"):
        dg.off_subspace_residual(noisy[:2].reshape(2, 1, 4, 4), mean, U[:3, :r])
