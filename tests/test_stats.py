"""Tests for course_lib.stats: chunked moments, eigendecomposition, cache, patches."""
import numpy as np
import pytest
import torch

from course_lib import stats
from course_lib.stats import dataset_stats, extract_patches, patch_stats, stats_cache_key


def _images(n=37, shape=(2, 3, 4), seed=0, offset=0.0):
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(int(np.prod(shape)), int(np.prod(shape)), generator=g, dtype=torch.float64)
    z = torch.randn(n, A.shape[0], generator=g, dtype=torch.float64) @ A.T * 0.3 + offset
    return z.reshape(n, *shape)


def test_matches_torch_cov_and_numpy():
    x = _images()
    s = dataset_stats(x, cache=False)
    flat = x.reshape(len(x), -1)
    assert torch.allclose(s.mean, flat.mean(0), atol=1e-13)
    assert torch.allclose(s.Sigma, torch.cov(flat.T), atol=1e-12)
    s0 = dataset_stats(x, cache=False, correction=0)
    np.testing.assert_allclose(s0.Sigma.numpy(), np.cov(flat.numpy().T, bias=True), atol=1e-12)
    assert s.shape == (2, 3, 4) and s.n == 37 and s.d == 24


def test_chunked_equals_one_shot_and_is_shift_stable():
    x = _images(n=101, offset=1e4)
    a = dataset_stats(x, chunk_size=7, cache=False)
    b = dataset_stats(x, chunk_size=10_000, cache=False)
    assert torch.allclose(a.Sigma, b.Sigma, rtol=1e-9, atol=1e-12)
    assert torch.allclose(a.mean, b.mean, rtol=0, atol=1e-9)
    ref = np.cov(x.reshape(101, -1).numpy().T)
    np.testing.assert_allclose(a.Sigma.numpy(), ref, rtol=1e-7, atol=1e-9)


def test_float32_input_is_accumulated_in_float64():
    x = _images(n=50).float()
    s = dataset_stats(x, chunk_size=8, cache=False)
    assert s.Sigma.dtype == torch.float64
    assert torch.allclose(s.Sigma, torch.cov(x.reshape(50, -1).double().T), atol=1e-12)


def test_eigendecomposition_reconstructs_sigma():
    x = _images(n=10, shape=(1, 4, 4))  # n < d: rank deficient
    s = dataset_stats(x, cache=False)
    assert torch.all(s.lam[:-1] >= s.lam[1:]) and torch.all(s.lam >= 0)
    assert torch.allclose(s.U.T @ s.U, torch.eye(16, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(s.U @ torch.diag(s.lam) @ s.U.T, s.Sigma, atol=1e-10)
    assert (s.lam > 1e-10).sum() == 9  # rank n - 1
    assert torch.allclose(s.lam, torch.linalg.eigvalsh(s.Sigma).flip(0).clamp(min=0), atol=1e-12)


def test_cache_roundtrip_and_keys(tmp_path, monkeypatch):
    x = _images(n=30)
    a = dataset_stats(x, cache_dir=tmp_path, cache_key="demo")
    files = list(tmp_path.glob("demo-*.pt"))
    assert len(files) == 1

    def no_compute(self, x):
        raise AssertionError("recomputed despite the cache")
    monkeypatch.setattr(stats._Moments, "update", no_compute)
    b = dataset_stats(x, cache_dir=tmp_path, cache_key="demo")
    for f in ("mean", "Sigma", "lam", "U"):
        assert torch.equal(getattr(a, f), getattr(b, f))
    assert (a.shape, a.n) == (b.shape, b.n)
    monkeypatch.undo()
    y = x.clone()
    y[0, 0, 0, 0] += 1e-6
    assert stats_cache_key(x, p=1) != stats_cache_key(y, p=1)
    assert stats_cache_key(x, p=1) != stats_cache_key(x, p=2)
    assert stats_cache_key(x, p=1) != stats_cache_key(x.float(), p=1)
    dataset_stats(y, cache_dir=tmp_path, cache_key="demo")
    dataset_stats(x, cache_dir=tmp_path, cache_key="demo", correction=0)
    assert len(list(tmp_path.glob("demo-*.pt"))) == 3


def _patches_loop(x, P, padding):
    """Brute-force reference: one patch per (image, row, col) with explicit index arithmetic."""
    N, C, H, W = x.shape
    lo = (P - 1) // 2 if padding != "valid" else 0
    rows = range(H) if padding != "valid" else range(H - P + 1)
    cols = range(W) if padding != "valid" else range(W - P + 1)
    out = []
    for n in range(N):
        for i in rows:
            for j in cols:
                patch = torch.zeros(C, P, P, dtype=x.dtype)
                for a in range(P):
                    for b in range(P):
                        r, c = i - lo + a, j - lo + b
                        if padding == "circular":
                            patch[:, a, b] = x[n, :, r % H, c % W]
                        elif 0 <= r < H and 0 <= c < W:
                            patch[:, a, b] = x[n, :, r, c]
                out.append(patch.reshape(-1))
    return torch.stack(out)


@pytest.mark.parametrize("padding", ["circular", "zeros", "valid"])
@pytest.mark.parametrize("P", [3, 2])
def test_extract_patches_matches_loop(padding, P):
    x = _images(n=2, shape=(2, 4, 5))
    got = extract_patches(x, P, padding)
    assert torch.equal(got, _patches_loop(x, P, padding))


def test_patch_stats_equals_stats_of_patches():
    x = _images(n=9, shape=(1, 6, 6))
    p = patch_stats(x, 3, "circular", chunk_size=4, cache=False)
    ref = dataset_stats(extract_patches(x, 3, "circular"), cache=False)
    assert p.shape == (1, 3, 3) and p.n == 9 * 36
    assert torch.allclose(p.Sigma, ref.Sigma, atol=1e-12)
    assert torch.allclose(p.mean, ref.mean, atol=1e-13)


def test_bad_inputs_are_named():
    with pytest.raises(TypeError, match="torch.Tensor"):
        dataset_stats(np.zeros((3, 4)), cache=False)
    with pytest.raises(TypeError, match="floating-point"):
        dataset_stats(torch.zeros(3, 4, dtype=torch.int64), cache=False)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        dataset_stats(torch.zeros(3), cache=False)
    with pytest.raises(ValueError, match="NaN"):
        dataset_stats(torch.tensor([[0.0, float("nan")], [1.0, 2.0]]), cache=False)
    with pytest.raises(ValueError, match="n=1"):
        dataset_stats(torch.zeros(1, 4), cache=False)
    with pytest.raises(ValueError, match="padding"):
        extract_patches(torch.zeros(1, 1, 4, 4), 3, "reflect")
    with pytest.raises(ValueError, match="patch_size"):
        extract_patches(torch.zeros(1, 1, 4, 4), 5, "valid")
