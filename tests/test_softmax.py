"""OnlineSoftmax over chunks against the one-shot softmax, logsumexp and entropy formulas."""
import math

import pytest
import torch

from course_lib.softmax import OnlineSoftmax, squared_distances


def _problem(dtype, sigma, B=5, N=13, d=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, d, generator=g, dtype=torch.float64)
    k = torch.randn(N, d, generator=g, dtype=torch.float64)
    v = torch.randn(N, 3, generator=g, dtype=torch.float64)
    logits64 = -((q[:, None] - k[None]) ** 2).sum(-1) / (2 * sigma**2)
    return logits64.to(dtype), v.to(dtype), logits64, v


def _stream(logits, v, chunk, track_entropy=True):
    osm = OnlineSoftmax(track_entropy=track_entropy)
    for start in range(0, logits.shape[-1], chunk):
        osm.update(logits[..., start:start + chunk], values=v[start:start + chunk])
    return osm


def _entropy_ref(logits64):
    p = torch.softmax(logits64, -1)
    return -(torch.where(p > 0, p * torch.log(p), torch.zeros_like(p))).sum(-1)


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 2e-5)])
@pytest.mark.parametrize("sigma", [1e-3, 1e-2, 0.3, 1.0, 10.0, 1e3])
def test_streaming_equals_one_shot(dtype, tol, sigma):
    logits, v, logits64, v64 = _problem(dtype, sigma)
    ref_mean = torch.softmax(logits64, -1) @ v64
    ref_lse = torch.logsumexp(logits64, -1)
    ref_H = _entropy_ref(logits64)
    for chunk in range(1, logits.shape[-1] + 1):
        osm = _stream(logits, v, chunk)
        assert osm.mean().dtype == dtype
        assert torch.allclose(osm.mean().double(), ref_mean, rtol=tol, atol=tol), chunk
        # logsumexp: relative to its size (logits reach -1e6 at sigma = 1e-3)
        assert torch.allclose(osm.logsumexp().double(), ref_lse, rtol=tol, atol=tol), chunk
        # entropy: absolute (it lies in [0, log N]); the old accumulator lost ~1e-2 nats in float32
        assert torch.allclose(osm.entropy().double(), ref_H, atol=10 * tol), chunk


def test_weighted_sum_callback_matches_values():
    logits, v, _, _ = _problem(torch.float64, 0.5)
    a, b = OnlineSoftmax(), OnlineSoftmax()
    for start in range(0, 13, 4):
        a.update(logits[:, start:start + 4], values=v[start:start + 4])
        b.update(logits[:, start:start + 4], weighted_sum=lambda w, vc=v[start:start + 4]: w @ vc)
    assert torch.allclose(a.mean(), b.mean())
    with pytest.raises(ValueError, match="exactly one"):
        a.update(logits[:, :2])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("sigma", [1e-3, 1.0])
def test_masked_logits(dtype, sigma):
    """-inf logits are ignored; a query whose first chunks are all masked must not become NaN even
    when its later logits are hugely negative (the rescaling used to compute 0 * inf)."""
    logits, v, logits64, v64 = _problem(dtype, sigma)
    mask = torch.zeros_like(logits64, dtype=torch.bool)
    mask[0, :9] = True          # query 0: first 9 items masked
    mask[1, ::2] = True         # query 1: every other item masked
    logits = logits.masked_fill(mask, -math.inf)
    ref = torch.softmax(logits64.masked_fill(mask, -math.inf), -1)
    for chunk in (1, 2, 4, 13):
        osm = _stream(logits, v, chunk)
        assert bool(torch.isfinite(osm.mean()).all()), chunk
        assert torch.allclose(osm.mean().double(), ref @ v64, atol=1e-5), chunk
        assert torch.allclose(osm.entropy().double(), _entropy_ref(logits64.masked_fill(mask, -math.inf)),
                              atol=1e-4), chunk
    all_masked = logits.clone()
    all_masked[2] = -math.inf
    with pytest.raises(ValueError, match="masked"):
        _stream(all_masked, v, 4).mean()


def test_errors_and_batch_dims():
    with pytest.raises(RuntimeError, match="never called"):
        OnlineSoftmax().mean()
    with pytest.raises(RuntimeError, match="track_entropy"):
        _stream(*_problem(torch.float64, 1.0)[:2], 4, track_entropy=False).entropy()
    osm = OnlineSoftmax()
    osm.update(torch.zeros(3, 4), values=torch.ones(4, 2))
    with pytest.raises(ValueError, match="logits must have shape"):
        osm.update(torch.zeros(2, 4), values=torch.ones(4, 2))
    # extra leading dims (e.g. patches x queries) work like a flat batch
    logits = torch.randn(2, 3, 10, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    v = torch.randn(10, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert torch.allclose(_stream(logits, v, 3).mean(), torch.softmax(logits, -1) @ v)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_squared_distances(dtype):
    g = torch.Generator().manual_seed(0)
    q = torch.randn(7, 5, generator=g, dtype=dtype)
    k = torch.randn(9, 5, generator=g, dtype=dtype)
    ref = ((q[:, None] - k[None]) ** 2).sum(-1)
    tol = 1e-10 if dtype == torch.float64 else 1e-4
    assert torch.allclose(squared_distances(q, k), ref, atol=tol)
    assert torch.allclose(squared_distances(q, k, (k * k).sum(-1)), ref, atol=tol)
    d = squared_distances(k, k)  # zero diagonal, never negative after rounding
    assert (d >= 0).all() and d.diagonal().abs().max() < 10 * tol


def test_entropy_with_large_common_offset_float32():
    """High-dimensional data: all distances large but close, so logits = -1e5 + O(1). The entropy
    must not lose precision to the offset (the weights only see differences)."""
    g = torch.Generator().manual_seed(3)
    rel = torch.randn(4, 50, generator=g, dtype=torch.float64)
    v = torch.randn(50, 2, generator=g, dtype=torch.float64)
    logits = (rel - 1e5).float()  # the float32 logits themselves are the reference's input
    ref = _entropy_ref(logits.double())
    assert ref.min() > 1.0  # a genuinely spread distribution
    for chunk in (1, 7, 50):
        osm = _stream(logits, v.float(), chunk)
        assert torch.allclose(osm.entropy().double(), ref, atol=1e-4), chunk
        assert torch.allclose(osm.logsumexp().double(), torch.logsumexp(logits.double(), -1), rtol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_underflowing_weights_and_inplace_updates(dtype):
    """Logits spread over thousands of nats (most weights below the smallest normal number, where
    exp() takes its slow path and OnlineSoftmax clamps the argument): the streamed mean equals the
    float64 one-shot softmax without the masked (-inf) items to rounding, and inplace=True gives
    the same state as a copying update while overwriting its scratch logits."""
    g = torch.Generator().manual_seed(3)
    l64 = -torch.rand(4, 300, generator=g, dtype=torch.float64) * 3000
    l64[:, 7] = -2.0                                       # one dominant item per query, others far below
    l64[:, 11] = -2.5
    l64[:, 50:60] = -math.inf                              # masked
    v64 = torch.randn(300, 2, generator=g, dtype=torch.float64)
    v64[50:60] = 1e3                                       # masked: weight <= tiny, invisible
    keep = torch.isfinite(l64[0])
    ref = torch.softmax(l64[:, keep], -1) @ v64[keep]
    for inplace in (False, True):
        osm = OnlineSoftmax()
        for s in range(0, 300, 37):
            chunk = l64[:, s:s + 37].to(dtype).clone()
            osm.update(chunk, values=v64[s:s + 37].to(dtype), inplace=inplace)
            if inplace:   # the scratch tensor now holds the weights, all in [0, 1]
                assert bool(((chunk >= 0) & (chunk <= 1)).all())
        tol = 1e-6 if dtype == torch.float32 else 1e-12
        torch.testing.assert_close(osm.mean().double(), ref, rtol=tol, atol=tol)
        assert torch.isfinite(osm.logsumexp()).all()


def test_inplace_update_keeps_autograd_exact():
    """inplace=True on logits that require grad falls back to copies: the gradient of the streamed mean
    equals autograd through a one-shot softmax (Tweedie's second moments differentiate through it)."""
    g = torch.Generator().manual_seed(4)
    a = torch.randn(3, 20, generator=g, dtype=torch.float64, requires_grad=True)
    v = torch.randn(20, 2, generator=g, dtype=torch.float64)
    osm = OnlineSoftmax()
    for s in range(0, 20, 6):
        osm.update(a[:, s:s + 6] * 2.0, values=v[s:s + 6], inplace=True)
    (gs,) = torch.autograd.grad(osm.mean().sum(), a)
    (g1,) = torch.autograd.grad((torch.softmax(a * 2.0, -1) @ v).sum(), a)
    torch.testing.assert_close(gs, g1, rtol=1e-12, atol=1e-12)
