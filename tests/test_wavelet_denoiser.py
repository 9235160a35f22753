"""WaveletDenoiser (Chapter 6): the identities that pin the Stein ridge regression down."""
import pytest
import torch

from course_lib.denoisers import GaussianDenoiser, WaveletDenoiser
from course_lib.wavelet_moments import poly_features

pytestmark = pytest.mark.filterwarnings("ignore:Sparse invariant")


def _data(n=40, H=8, W=8, seed=0):
    """Non-Gaussian images with structure: squared uniforms times a ramp, plus a shared blob."""
    g = torch.Generator().manual_seed(seed)
    ramp = torch.linspace(0.3, 1.5, H * W, dtype=torch.float64).reshape(1, 1, H, W)
    x = torch.rand(n, 1, H, W, generator=g, dtype=torch.float64) ** 2 * ramp
    x = x + torch.rand(n, 1, 1, 1, generator=g, dtype=torch.float64) * torch.roll(ramp, 3, -1)
    return x - 0.5


def test_independent_degree1_is_per_coefficient_wiener():
    tr = _data()
    D = WaveletDenoiser(tr, "independent", 1, ridge=0.0, wavelet="db2", level=2)
    c = D.coefficients(tr)
    mean, var = c.mean(0), c.var(0, correction=0)
    xq = torch.randn(5, 1, 8, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    cq = D.coefficients(xq)
    for sigma in (0.05, 0.7, 5.0):
        expect = -(cq - mean) / (var + sigma ** 2)
        assert torch.allclose(D.coef_score(cq, sigma), expect, rtol=1e-9, atol=1e-9)
    # ridge > 0 shrinks the score, so the identity really checks ridge = 0
    Dr = WaveletDenoiser(tr, "independent", 1, ridge=0.1, wavelet="db2", level=2)
    assert not torch.allclose(Dr.coef_score(cq, 0.7), -(cq - mean) / (var + 0.49), atol=1e-3)


@pytest.mark.parametrize("wavelet", ["haar", "db4"])
def test_full_degree1_is_the_wiener_denoiser_of_chapter_2(wavelet):
    tr = _data(n=30)
    D = WaveletDenoiser(tr, "full", 1, ridge=0.0, wavelet=wavelet, level=2)
    G = GaussianDenoiser.from_data(tr, correction=0, cache=False)
    xq = 2 * torch.randn(6, 1, 8, 8, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    for sigma in (0.1, 1.0, 10.0):
        assert torch.allclose(D(xq, sigma), G(xq, sigma), atol=1e-8)


def test_stein_fit_is_least_squares_on_sampled_noisy_data():
    """DSM regression of -z/sigma (and Tweedie: of the clean c) on phi(c_sigma) converges to the Stein fit."""
    tr = _data(n=20, H=4, W=4)
    sigma = 0.4
    D = WaveletDenoiser(tr, "band_tied", 2, ridge=0.0, wavelet="haar", level=1)
    group, basis, fit = D.groups[1], D.bases[1], D.fit(sigma)[1]             # the (h, v, d) triples
    c = D.coefficients(tr)
    g = torch.Generator().manual_seed(3)
    errors = []
    for reps in (250, 4000):
        cc = c.repeat(reps, 1)
        z = torch.randn(cc.shape, generator=g, dtype=torch.float64)
        cs = cc + sigma * z
        phi = poly_features(cs[:, group.vars] / fit.scale, basis).transpose(0, 1)        # (G, n, p)
        y = (-z / sigma)[:, group.vars[:, group.targets]].transpose(0, 1)              # (G, n, T)
        theta = torch.linalg.lstsq(phi, y).solution                                     # (G, p, T)
        errors.append(((theta - fit.theta).norm() / fit.theta.norm()).item())
        # Tweedie: regressing the CLEAN coefficients gives the denoiser c_sigma + sigma^2 theta^T phi
        beta = torch.linalg.lstsq(phi, cc[:, group.vars[:, group.targets]].transpose(0, 1)).solution
        pred_clean = (phi @ beta).transpose(0, 1)
        pred_stein = cs[:, group.vars[:, group.targets]] + sigma ** 2 * (phi @ fit.theta).transpose(0, 1)
        tweedie_err = ((pred_clean - pred_stein).norm() / pred_clean.norm()).item()
    assert errors[1] < 0.05 and errors[1] < errors[0] / 2.5, errors            # ~1/sqrt(n): factor 4 expected
    assert tweedie_err < 0.01


def test_expected_mse_matches_monte_carlo_and_families_are_nested():
    tr = _data(n=30)
    sigma = 0.5
    g = torch.Generator().manual_seed(4)
    xs = tr.repeat(200, 1, 1, 1)
    noisy = xs + sigma * torch.randn(xs.shape, generator=g, dtype=torch.float64)
    mses = {}
    for family, degree in (("independent", 1), ("independent", 3), ("band_tied", 3), ("local_coupled", 2)):
        D = WaveletDenoiser(tr, family, degree, ridge=0.0, level=1)
        exact = D.expected_mse(sigma)
        mc = ((D(noisy, sigma) - xs) ** 2).mean().item()
        assert abs(exact - mc) < 0.02 * exact, (family, degree, exact, mc)
        mses[(family, degree)] = exact
    # nested feature spaces can only lower the in-sample MSE (ridge 0)
    assert mses[("independent", 3)] < mses[("independent", 1)]
    assert mses[("band_tied", 3)] <= mses[("independent", 3)] + 1e-12


def test_tweedie_score_and_batched_sigma():
    tr = _data(n=25)
    D = WaveletDenoiser(tr, "local_coupled", 2, ridge=1e-6, wavelet="db2", level=1, radius=1)
    x = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    sig = torch.tensor([0.2, 0.2, 1.0, 3.0], dtype=torch.float64)
    out = D(x, sig)
    for i in range(4):
        assert torch.allclose(out[i:i + 1], D(x[i:i + 1], float(sig[i])), atol=1e-12)
    # score(x) = (D(x) - x)/sigma^2 equals W^T s_hat(W x): the score lives in coefficient space
    s_pix = D.score(x, 0.7)
    s_coef = D.coef_score(D.coefficients(x), 0.7)
    assert torch.allclose(s_pix, D.images(s_coef).reshape(x.shape), atol=1e-9)
    assert torch.allclose(D.coefficients(s_pix), s_coef, atol=1e-9)
    # float32 queries give float32 answers close to float64
    out32 = D(x.float(), 0.7)
    assert out32.dtype == torch.float32 and torch.allclose(out32.double(), D(x, 0.7), atol=1e-4)
    assert len(D._fits) == 5          # 0.2, 1.0, 3.0, 0.7 and float32(0.7): fits are keyed by the exact sigma


def test_bad_input():
    tr = _data(n=5)
    with pytest.raises(ValueError, match="family"):
        WaveletDenoiser(tr, "neighbours")
    with pytest.raises(ValueError, match="degree"):
        WaveletDenoiser(tr, "independent", 0)
    with pytest.raises(ValueError, match="ridge"):
        WaveletDenoiser(tr, "independent", 1, ridge=-1.0)
    with pytest.raises(ValueError, match="level=4"):
        WaveletDenoiser(tr, "independent", 1, level=4)
    with pytest.raises(ValueError, match="radius=2"):
        WaveletDenoiser(tr, "local_coupled", 1, level=2, radius=2)
    with pytest.raises(ValueError, match="wavelet"):
        WaveletDenoiser(tr, "independent", 1, wavelet="coif1")
    with pytest.raises(ValueError, match="dimensions"):
        WaveletDenoiser(tr[0], "independent", 1)
    D = WaveletDenoiser(tr, "independent", 1)
    with pytest.raises(ValueError, match="like the training images"):
        D(torch.zeros(2, 1, 16, 16, dtype=torch.float64), 1.0)
    with pytest.raises(ValueError, match="sigma"):
        D(tr, 0.0)
    with pytest.raises(ValueError, match="sigma"):
        D.fit(-1.0)


def test_channels_families_and_float32_solves():
    g = torch.Generator().manual_seed(6)
    tr = torch.rand(30, 3, 8, 8, generator=g, dtype=torch.float64) ** 2 - 0.4
    D = WaveletDenoiser(tr, "independent", 1, ridge=0.0, level=1)
    c = D.coefficients(tr)
    assert c.shape == (30, 192)
    x = torch.randn(2, 3, 8, 8, generator=g, dtype=torch.float64)
    cq = D.coefficients(x)
    expect = -(cq - c.mean(0)) / (c.var(0, correction=0) + 0.09)
    assert torch.allclose(D.coef_score(cq, 0.3), expect, atol=1e-9)
    # band_tied: every coefficient is predicted exactly once; the triples stay within a channel
    B = WaveletDenoiser(tr, "band_tied", 2, level=1)
    targets = torch.cat([grp.vars[:, grp.targets].flatten() for grp in B.groups])
    assert torch.equal(targets.sort().values, torch.arange(192))
    trip = B.groups[1].vars
    assert trip.shape == (3 * 16, 3) and bool(((trip // 64) == (trip[:, :1] // 64)).all())
    L = WaveletDenoiser(tr, "local_coupled", 1, level=1, radius=1)
    assert L.groups[0].vars.shape == (192, 9) and bool(((L.groups[0].vars // 64) == (torch.arange(192)[:, None] // 64)).all())
    # float32 solves agree with float64 ones to float32 accuracy
    B32 = WaveletDenoiser(tr, "band_tied", 2, level=1, solve_dtype=torch.float32)
    assert torch.allclose(B32(x, 0.3), B(x, 0.3), atol=1e-3)
    with pytest.raises(ValueError, match="solve_dtype"):
        WaveletDenoiser(tr, "band_tied", 2, level=1, solve_dtype=torch.float16)


@pytest.mark.parametrize("device", ["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
def test_every_family_on_every_device(device):
    """float32 images on ``device`` (solves in float64 there) against the float64 CPU reference."""
    from course_lib.data import load_dataset

    train = load_dataset("digits")[0][:200].double()                     # offline, (N, 1, 8, 8)
    x = train[:4] + 0.3 * torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    for family, K, kw in (("independent", 3, {}), ("band_tied", 2, {}), ("local_coupled", 2, {"radius": 1})):
        ref = WaveletDenoiser(train, family, K, wavelet="db2", level=1, **kw)(x, 0.3)
        D = WaveletDenoiser(train.to(device, torch.float32), family, K, wavelet="db2", level=1, **kw)
        out = D(x.to(device, torch.float32), 0.3)
        assert out.device.type == device and out.dtype == torch.float32
        assert (out.double().cpu() - ref).abs().max() < 1e-3, family
