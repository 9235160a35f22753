"""Tests of the ideal denoiser (course_lib/denoisers/ideal.py, Chapter 1)."""
import math

import pytest
import torch

from course_lib.denoisers import IdealDenoiser
from course_lib.sampling import sample
from course_lib.schedules import karras_sigmas

SIGMAS = [1e-3, 1e-2, 0.1, 0.5, 1.0, 3.0, 10.0, 100.0, 1e3]


def _data(N=60, B=6, shape=(1, 3, 4), dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    Y = torch.randn(N, *shape, generator=g, dtype=dtype)
    x = 2 * torch.randn(B, *shape, generator=g, dtype=dtype)
    x[0] = Y[3]                                  # exactly on a training image: total collapse
    x[1] = Y[5] + 1e-4 * torch.randn(shape, generator=g, dtype=dtype)
    x[2] = 50 + x[2]                             # far from everything
    return Y, x


def _brute_logits(x, Y, sigma):
    diff = x.reshape(x.shape[0], 1, -1) - Y.reshape(1, Y.shape[0], -1)
    return -(diff**2).sum(-1) / (2 * sigma**2)


def _brute_D(x, Y, sigma):
    w = torch.softmax(_brute_logits(x, Y, sigma), dim=-1)
    return (w @ Y.reshape(Y.shape[0], -1)).reshape(x.shape)


@pytest.mark.parametrize("chunk_size", [1, 7, 64, 1000, None])
def test_streaming_equals_one_shot_float64(chunk_size):
    Y, x = _data(N=20 if chunk_size == 1 else 60)
    D = IdealDenoiser(Y, chunk_size=chunk_size)
    for sigma in SIGMAS:
        got, ref = D(x, sigma), _brute_D(x, Y, sigma)
        assert torch.isfinite(got).all()
        torch.testing.assert_close(got, ref, rtol=1e-9, atol=1e-9, msg=f"sigma={sigma}")
    torch.testing.assert_close(D(x[:1], 1e-3), Y[3:4], rtol=0, atol=0)  # total collapse is exact


def test_streaming_equals_one_shot_float32_and_per_sample_sigma():
    Y, x = _data(dtype=torch.float32)
    sig = torch.tensor([1e-3, 0.01, 0.3, 1.0, 10.0, 1e3])
    ref = torch.cat([_brute_D(x[b:b + 1].double(), Y.double(), float(sig[b])) for b in range(6)])
    for cs in (5, 64):
        got = IdealDenoiser(Y, chunk_size=cs)(x, sig)
        assert got.dtype == torch.float32
        torch.testing.assert_close(got.double(), ref, rtol=1e-4, atol=1e-4)


def test_skipping_underflowing_chunks_is_bit_identical():
    Y, x = _data(N=200)
    D = IdealDenoiser(Y, chunk_size=9)
    s = torch.full((x.shape[0],), 0.05, dtype=x.dtype)
    for sigma in (0.05, 0.5, 5.0):
        s.fill_(sigma)
        a, b = D.stream(x, s, skip=True).mean(), D.stream(x, s, skip=False).mean()
        assert torch.equal(a, b)


def test_single_training_image_is_returned():
    g = torch.Generator().manual_seed(1)
    Y = torch.randn(1, 2, 5, 5, generator=g, dtype=torch.float64)
    x = 10 * torch.randn(4, 2, 5, 5, generator=g, dtype=torch.float64)
    D = IdealDenoiser(Y, chunk_size=3)
    for sigma in SIGMAS:
        torch.testing.assert_close(D(x, sigma), Y.expand_as(x), rtol=0, atol=1e-15)


def test_many_gaussian_samples_approach_the_wiener_filter():
    """x_i ~ N(mu, Sigma), N large: D_ideal -> mu + Sigma (Sigma + sigma^2 I)^{-1} (x - mu).

    The tolerance is the self-normalised importance-sampling standard error
    sqrt(sum_i w_i^2 |x_i - D|^2) per coordinate, computed from the weights themselves."""
    g = torch.Generator().manual_seed(2)
    d, N, sigma = 3, 200_000, 1.0
    A = torch.randn(d, d, generator=g, dtype=torch.float64)
    Sigma = A @ A.T / d + 0.2 * torch.eye(d, dtype=torch.float64)
    mu = torch.tensor([0.5, -1.0, 0.3], dtype=torch.float64)
    Y = mu + torch.randn(N, d, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(Sigma).T
    x = mu + torch.randn(8, d, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(
        Sigma + sigma**2 * torch.eye(d, dtype=torch.float64)).T
    D = IdealDenoiser(Y.reshape(N, 1, 1, d), chunk_size=50_000)
    got = D(x.reshape(8, 1, 1, d), sigma).reshape(8, d)
    wiener = mu + (x - mu) @ torch.linalg.solve(Sigma + sigma**2 * torch.eye(d, dtype=torch.float64), Sigma)
    w = D.posterior_weights(x.reshape(8, 1, 1, d), sigma)
    se = torch.sqrt(torch.einsum("bn,bnd->bd", w**2, (Y.unsqueeze(0) - got.unsqueeze(1))**2))
    assert bool(((got - wiener).abs() <= 5 * se + 1e-12).all()), ((got - wiener).abs() / se).max()
    assert (got - wiener).abs().max() < 0.1  # and it is actually close, not just noisy


@pytest.mark.parametrize("sigma", [0.2, 1.0, 5.0])
def test_score_is_autograd_of_mixture_log_density(sigma):
    Y, x = _data(N=40)
    x = x[3:].clone().requires_grad_(True)
    logp = torch.logsumexp(_brute_logits(x, Y, sigma), -1).sum()
    (grad,) = torch.autograd.grad(logp, x)
    D = IdealDenoiser(Y, chunk_size=11)
    torch.testing.assert_close(D.score(x.detach(), sigma), grad, rtol=1e-8, atol=1e-10)


def test_log_density_matches_normalised_mixture():
    Y, x = _data(N=30, shape=(1, 2, 2))
    sigma = 0.7
    d = 4
    ref = torch.logsumexp(_brute_logits(x, Y, sigma), -1) - math.log(30) - 0.5 * d * math.log(2 * math.pi * sigma**2)
    torch.testing.assert_close(IdealDenoiser(Y, chunk_size=4).log_density(x, sigma), ref)



def test_heun_sample_lands_within_1e3_of_a_training_image():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(3)
    Y = torch.rand(50, 1, 8, 8, generator=g) * 2 - 1
    D = IdealDenoiser(Y, chunk_size=16)
    sigmas = karras_sigmas(18, 0.002, 80.0)
    x = 80.0 * torch.randn(10, 1, 8, 8, generator=g)
    out = sample(D, x, sigmas, solver="heun")
    _, idx = D.nearest(out, k=1)
    dist = (out - Y[idx[:, 0]]).flatten(1).norm(dim=-1)  # exact, not the |x|^2 - 2x.y + |y|^2 form
    assert float(dist.max()) < 1e-3
    assert len(set(idx.flatten().tolist())) > 1  # different noises reach different images


def test_class_conditional_equals_ideal_on_the_class_subset():
    Y, x = _data(N=60)
    labels = torch.arange(60) % 3
    D = IdealDenoiser(Y, chunk_size=7, labels=labels)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    for sigma in (0.01, 1.0, 100.0):
        got = D.denoise(x, torch.full((6,), sigma, dtype=x.dtype), y=y)
        ref = torch.cat([_brute_D(x[b:b + 1], Y[labels == y[b]], sigma) for b in range(6)])
        torch.testing.assert_close(got, ref, rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(D.conditional(1)(x, sigma), _brute_D(x, Y[labels == 1], sigma))
    with pytest.raises(ValueError, match="labels"):
        D.conditional(7)(x, 1.0)
    with pytest.raises(ValueError, match="labels"):
        IdealDenoiser(Y).conditional(0)


def test_topk_exact_at_k_equal_N_and_error_bounded_by_dropped_mass():
    Y, x = _data(N=50)
    D = IdealDenoiser(Y, chunk_size=8)
    torch.testing.assert_close(IdealDenoiser(Y, chunk_size=8, topk=50)(x, 2.0), D(x, 2.0))
    diam = torch.cdist(Y.reshape(50, -1), Y.reshape(50, -1)).max()
    for sigma, k in [(1.0, 3), (3.0, 10), (10.0, 5)]:
        err = D.topk_error(x, sigma, k)
        s = torch.full((6,), sigma, dtype=x.dtype)
        approx = IdealDenoiser(Y, topk=k)(x, s).reshape(6, -1)
        # independent: brute-force softmax over the k nearest
        logits = _brute_logits(x, Y, sigma)
        idx = logits.topk(k, dim=-1).indices
        wk = torch.softmax(torch.gather(logits, 1, idx), -1)
        ref = torch.einsum("bk,bkd->bd", wk, Y.reshape(50, -1)[idx])
        torch.testing.assert_close(approx, ref)
        exact = _brute_D(x, Y, sigma).reshape(6, -1)
        torch.testing.assert_close(err["abs"], (ref - exact).norm(dim=-1))
        dropped = 1 - torch.gather(torch.softmax(logits, -1), 1, idx).sum(-1)
        torch.testing.assert_close(err["dropped_mass"], dropped.clamp_min(0), atol=1e-12, rtol=1e-6)
        assert bool((err["abs"] <= err["dropped_mass"] * diam + 1e-12).all())
    assert D.topk_error(x, 10.0, 5)["rel"].max() > 1e-3  # the approximation is not free at large sigma


def test_posterior_stats_and_nearest_match_brute_force():
    Y, x = _data(N=45)
    D = IdealDenoiser(Y, chunk_size=6)
    for sigma in (0.05, 0.8, 4.0):
        st = D.posterior_stats(x, sigma)
        w = torch.softmax(_brute_logits(x, Y, sigma), -1)
        H = -(torch.where(w > 0, w * torch.log(w), torch.zeros_like(w))).sum(-1)
        torch.testing.assert_close(st["entropy"], H, atol=1e-9, rtol=1e-7)
        torch.testing.assert_close(st["max_weight"], w.max(-1).values)
        assert torch.equal(st["argmax"], w.argmax(-1))
        torch.testing.assert_close(D.posterior_weights(x, sigma), w)
    d2, idx = D.nearest(x, k=4)
    ref = torch.cdist(x.reshape(6, -1), Y.reshape(45, -1)) ** 2
    rd, ri = ref.topk(4, dim=-1, largest=False)
    assert torch.equal(idx, ri)
    torch.testing.assert_close(d2, rd, atol=1e-9, rtol=1e-9)


def test_bad_inputs_raise_clear_errors():
    Y, x = _data()
    D = IdealDenoiser(Y)
    with pytest.raises(ValueError, match="sigma"):
        D(x, 0.0)
    with pytest.raises(ValueError, match="sigma"):
        D(x, -1.0)
    with pytest.raises(ValueError, match="image shape"):
        D(torch.zeros(2, 1, 4, 3, dtype=x.dtype), 1.0)
    with pytest.raises(ValueError, match="chunk_size"):
        IdealDenoiser(Y, chunk_size=0)
    with pytest.raises(ValueError, match="topk"):
        IdealDenoiser(Y, topk=0)
    with pytest.raises(ValueError, match="labels"):
        IdealDenoiser(Y, labels=torch.zeros(3, dtype=torch.long))
    with pytest.raises(TypeError, match="floating"):
        IdealDenoiser(Y.long())


def test_float32_queries_against_float64_storage_keep_the_query_dtype():
    Y, x = _data()
    D = IdealDenoiser(Y.float(), dtype=torch.float64)
    assert D.Y.dtype == torch.float64
    out = D(x.float(), 0.5)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.double(), _brute_D(x, Y, 0.5), rtol=1e-4, atol=1e-4)


def test_auto_chunk_size_bounds_memory_not_by_n():
    from course_lib.denoisers.ideal import GPU_LOGITS_PER_CHUNK, auto_chunk_size

    assert auto_chunk_size(256, "cpu") == 1024
    assert auto_chunk_size(256, "cuda") * 256 == GPU_LOGITS_PER_CHUNK         # one chunk for N <= 65536
    assert auto_chunk_size(10**6, "cuda") == 1024                             # never below the CPU chunk
    assert IdealDenoiser(torch.zeros(3, 1, 2, 2)).chunk_size is None
    with pytest.raises(ValueError, match="chunk_size"):
        IdealDenoiser(torch.zeros(3, 1, 2, 2), chunk_size=0)
