"""course_lib.wavelets and course_lib.wavelet_moments (Chapter 6): against PyWavelets, exact inversion,
orthonormality, and the noisy-moment expansion against Monte Carlo."""
import math

import numpy as np
import pytest
import pywt
import torch

from course_lib import wavelet_moments as wm
pytestmark = pytest.mark.filterwarnings("ignore:Level value", "ignore:Sparse invariant")

from course_lib.wavelets import (analysis_matrix, dwt2, dwt2_packed, dwt_matrix, flatten_coeffs,
                                 idwt2, idwt2_packed, max_level, unflatten_coeffs)


@pytest.mark.parametrize("wavelet", ["haar", "db2", "db4"])
@pytest.mark.parametrize("shape,level", [((8, 8), 1), ((16, 12), 2), ((28, 28), 2), ((32, 32), 3), ((8, 16), 3)])
def test_dwt2_matches_pywt(wavelet, shape, level):
    x = torch.randn(2, 3, *shape, generator=torch.Generator().manual_seed(level), dtype=torch.float64)
    co = dwt2(x, wavelet, level)
    ref = pywt.wavedec2(x.numpy(), wavelet, mode="periodization", level=level)
    ours = co.to_pywt()
    assert len(ours) == len(ref)
    np.testing.assert_allclose(ours[0].numpy(), ref[0], atol=1e-12)
    for a, b in zip(ours[1:], ref[1:]):
        for t, r in zip(a, b):
            np.testing.assert_allclose(t.numpy(), r, atol=1e-12)
    packed, _ = pywt.coeffs_to_array(ref, axes=(-2, -1))
    np.testing.assert_allclose(dwt2_packed(x, wavelet, level).numpy(), packed, atol=1e-12)
    assert (idwt2(co) - x).abs().max() < 1e-12
    assert (idwt2(ours, wavelet) - x).abs().max() < 1e-12


def test_float32_and_inverse_of_pywt_coefficients():
    x = torch.randn(4, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    ref = pywt.wavedec2(x.double().numpy(), "db2", mode="periodization", level=2)
    back = idwt2([torch.from_numpy(ref[0])] + [tuple(torch.from_numpy(t) for t in b) for b in ref[1:]], "db2")
    assert (back - x.double()).abs().max() < 1e-6
    c = dwt2_packed(x, "db2", 2)
    assert c.dtype == torch.float32 and (idwt2_packed(c, "db2", 2) - x).abs().max() < 1e-5


@pytest.mark.parametrize("wavelet", ["haar", "db2", "db4"])
def test_orthonormal_and_noise_stays_white(wavelet):
    for N in (2, 4, 6, 8, 14):
        A = analysis_matrix(wavelet, N)
        assert torch.allclose(A @ A.T, torch.eye(N, dtype=torch.float64), atol=1e-12)
    Wm = dwt_matrix(8, 8, wavelet, 3)
    assert torch.allclose(Wm @ Wm.T, torch.eye(64, dtype=torch.float64), atol=1e-12)
    z = torch.randn(20000, 8, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    cz = dwt2_packed(z, wavelet, 3).reshape(20000, 64)
    cov = cz.T @ cz / 20000
    assert (cov - torch.eye(64, dtype=torch.float64)).abs().max() < 0.05   # MC: 4 sd of 1/sqrt(20000) ~ 0.03


def test_flatten_labels_roundtrip():
    x = torch.randn(2, 1, 16, 8, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    co = dwt2(x, "db2", 2)
    vec, lay = flatten_coeffs(co)
    assert vec.shape == (2, 1, 128)
    assert torch.equal(vec, dwt2_packed(x, "db2", 2).reshape(2, 1, 128))
    back = unflatten_coeffs(vec, lay, "db2")
    assert (idwt2(back) - x).abs().max() < 1e-12
    # labels: band sizes and a coefficient found by (band, scale, row, col)
    assert int(lay.mask("a").sum()) == 4 * 2 and int(lay.mask("d", 1).sum()) == 8 * 4
    k = lay.index("v", 2, 1, 1)
    assert vec[0, 0, k] == co.details[1][1][0, 0, 1, 1]
    k = lay.index("h", 1, 7, 3)
    assert lay.band[k] == 1 and lay.scale[k] == 1 and lay.row[k] == 7 and lay.col[k] == 3
    assert vec[1, 0, k] == co.details[0][0][1, 0, 7, 3]
    assert lay.index("h", 1, 8, 3) == lay.index("h", 1, 0, 3)       # periodic wrap inside a band


def test_bad_input():
    x = torch.zeros(1, 1, 28, 28)
    with pytest.raises(ValueError, match="level=3"):
        dwt2(x, "haar", 3)
    with pytest.raises(ValueError, match="wavelet"):
        dwt2(x, "sym4", 1)
    with pytest.raises(ValueError, match="level"):
        dwt2(x, "haar", 0)
    with pytest.raises(ValueError, match="floating"):
        dwt2(torch.zeros(1, 28, 28, dtype=torch.long), "haar", 1)
    with pytest.raises(ValueError, match="wavelet="):
        idwt2([torch.zeros(7, 7), (torch.zeros(7, 7),) * 3])
    assert max_level(28, 28) == 2 and max_level(32, 32) == 5 and max_level(7, 8) == 0


def test_monomial_basis_counts_and_tables():
    b = wm.MonomialBasis(3, 2)
    assert b.p == math.comb(5, 2) and b.M == math.comb(7, 4) == b.mom.shape[0]
    assert torch.equal(b.mom[b.pair], b.feat[:, None] + b.feat[None, :])
    assert torch.equal(b.feat[b.split[:, 0]] + b.feat[b.split[:, 1]], b.mom)
    for t in range(3):
        has = b.feat[:, t] > 0
        e = torch.zeros(3, dtype=torch.long)
        e[t] = 1
        assert torch.equal(b.mom[b.deriv[t, has]], b.feat[has] - e)
        assert torch.equal(b.deriv_coef[t], b.feat[:, t])
    assert [wm.gaussian_moment(r) for r in range(7)] == [1, 0, 1, 0, 3, 0, 15]


def test_noisy_moments_match_monte_carlo():
    g = torch.Generator().manual_seed(3)
    n, sigma = 400_000, 0.7
    c = torch.stack([torch.rand(n, generator=g, dtype=torch.float64) * 2 - 0.5,
                     torch.randn(n, generator=g, dtype=torch.float64) ** 2 * 0.5], -1)   # uniform, skewed
    c[:, 1] += 0.5 * c[:, 0]                                                          # correlated now
    b = wm.MonomialBasis(2, 2)
    clean = wm.poly_features(c, wm.MonomialBasis(2, 4)).mean(0)                       # E[c^alpha], degree <= 4
    assert torch.equal(wm.MonomialBasis(2, 4).feat, b.mom)                              # same graded order
    noisy = wm.noisy_moments(clean[None], b, sigma)[0]
    cs = c + sigma * torch.randn(c.shape, generator=g, dtype=torch.float64)
    mc = wm.poly_features(cs, wm.MonomialBasis(2, 4)).mean(0)
    se = wm.poly_features(cs, wm.MonomialBasis(2, 4)).std(0) / math.sqrt(n)
    assert ((noisy - mc).abs()[1:] / se[1:]).max() < 5                                 # [0] is the constant
    assert not torch.allclose(noisy, clean, atol=1e-2)                                  # noise matters
    # one variable: the notes' formula m_r = sum_i C(r, i) sigma^(r-i) E[c^i] E[z^(r-i)]
    b1 = wm.MonomialBasis(1, 3)
    c1 = wm.poly_features(c[:, :1], wm.MonomialBasis(1, 6)).mean(0)                  # E[c^0] .. E[c^6]
    m_r = torch.stack([sum(math.comb(r, i) * sigma ** (r - i) * c1[i] * wm.gaussian_moment(r - i)
                           for i in range(r + 1)) for r in range(7)])
    assert torch.allclose(wm.noisy_moments(c1[None], b1, sigma)[0], m_r, rtol=1e-12)
    H = wm.hankel_gram(m_r, 3)
    assert torch.allclose(H, m_r[b1.pair])


def test_poly_features_and_errors():
    v = torch.tensor([[2.0, 3.0]], dtype=torch.float64)
    b = wm.MonomialBasis(2, 2)
    phi = wm.poly_features(v, b)
    expect = torch.tensor([1, 2, 3, 4, 6, 9], dtype=torch.float64)
    assert torch.equal(phi[0], expect)
    with pytest.raises(ValueError, match="degree"):
        wm.MonomialBasis(2, 0)
    with pytest.raises(ValueError, match="too many"):
        wm.MonomialBasis(60, 3)
    with pytest.raises(ValueError, match="m=2"):
        wm.poly_features(torch.zeros(3), b)
