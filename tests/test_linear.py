"""Closed-form Gaussian trajectories, teleportation, receptive fields and the score comparison helper."""
import math

import numpy as np
import pytest
import torch

from course_lib import linear
from course_lib.denoisers import GaussianDenoiser
from course_lib.schedules import karras_sigmas

SHAPE = (1, 4, 4)
D = 16


def _gauss(seed=0, rank=None):
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(D, D, generator=g, dtype=torch.float64)
    lam_target = torch.logspace(1, -3, D, dtype=torch.float64)  # spread like image spectra
    Q, _ = torch.linalg.qr(A)
    Sigma = Q @ torch.diag(lam_target) @ Q.T
    mu = 0.3 * torch.randn(D, generator=g, dtype=torch.float64)
    return GaussianDenoiser.from_covariance(mu, Sigma, SHAPE, rank=rank)


@pytest.mark.parametrize("rank", [None, 6])
def test_ve_closed_form_vs_scipy_ode(rank):
    from scipy.integrate import solve_ivp

    G = _gauss(rank=rank)
    sT = 20.0
    xT = sT * torch.randn(2, *SHAPE, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    sig = [10.0, 1.0, 0.1, 0.01]

    def f(s, y):
        x = torch.from_numpy(y).reshape(2, *SHAPE)
        return (-(G(x, s) - x) / s).reshape(-1).numpy()

    sol = solve_ivp(f, [sT, sig[-1]], xT.reshape(-1).numpy(), t_eval=sig, rtol=1e-11, atol=1e-12, method="DOP853")
    cf = linear.ve_trajectory(G, xT, sT, sig).reshape(len(sig), -1).numpy()
    rel = np.abs(sol.y.T - cf).max(1) / np.abs(cf).max(1)
    assert rel.max() < 1e-7, rel
    # the denoiser along the path equals D(x(sigma), sigma)
    xs = linear.ve_trajectory(G, xT, sT, sig)
    Ds = linear.ve_denoiser_trajectory(G, xT, sT, sig)
    for i, s in enumerate(sig):
        torch.testing.assert_close(Ds[i], G(xs[i], s), rtol=1e-10, atol=1e-10)
    # start point and sigma -> 0 limit
    torch.testing.assert_close(linear.ve_trajectory(G, xT, sT, [sT])[0], xT)


def test_ve_closed_form_vs_heun_sampler():
    sample = pytest.importorskip("course_lib.sampling").sample

    G = _gauss(1)
    sigmas = karras_sigmas(400, 0.01, 20.0)
    xT = 20.0 * torch.randn(3, *SHAPE, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    out = sample(G, xT, sigmas[:-1], solver="heun")  # grid ends at sigma_min (no final step to 0)
    x_num = getattr(out, "x", out)
    x_cf = linear.ve_trajectory(G, xT, 20.0, [0.01])[0]
    rel = ((x_num - x_cf).norm() / x_cf.norm()).item()
    assert rel < 1e-4, rel


def test_xi_and_variance_order():
    lam = torch.tensor([10.0, 1.0, 0.1])
    x = linear.xi(torch.tensor([5.0])[:, None], lam, 80.0)
    # normalised coefficient xi sigma_T / sqrt(lam): high-variance components reach 1/2 earlier (larger sigma)
    s = torch.logspace(2, -3, 2001, dtype=torch.float64)
    norm = linear.xi(s[:, None], lam.double(), 80.0) * 80.0 / lam.double().sqrt()
    half = [float(s[(norm[:, k] >= 0.5).nonzero()[0, 0]]) for k in range(3)]
    assert half[0] > half[1] > half[2]
    assert x.shape == (1, 3)


def test_vp_closed_form_matches_ve():
    G = _gauss(2)
    abT = 1 / (1 + 80.0**2)
    xT_vp = torch.randn(2, *SHAPE, dtype=torch.float64)
    abs_ = torch.tensor([1e-3, 0.1, 0.5, 0.99], dtype=torch.float64)
    vp = linear.vp_trajectory(G, xT_vp, abT, abs_)
    ve = linear.ve_trajectory(G, xT_vp / math.sqrt(abT), 80.0, ((1 - abs_) / abs_).sqrt())
    torch.testing.assert_close(vp, ve * abs_.sqrt().reshape(-1, 1, 1, 1, 1), rtol=1e-9, atol=1e-10)


def test_teleport_exact_for_gaussian_and_saves_nfe():
    pytest.importorskip("course_lib.sampling")  # teleport runs through course_lib.sampling.sample

    G = _gauss(3)
    sigmas = karras_sigmas(12, 0.002, 80.0)
    xT = 80.0 * torch.randn(4, *SHAPE, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    rows = linear.teleportation_sweep(G, G, xT, sigmas, skips=[0, 2, 4, 12])
    nfe = {r["skip"]: r["nfe"] for r in rows}
    assert nfe[12] == 0 and nfe[0] > nfe[2] > nfe[4] > 0
    assert {r["skip"]: r["nfe_saved"] for r in rows}[4] == nfe[0] - nfe[4]
    from course_lib.sampling import denoiser_evaluations
    for s in (0, 2, 4):  # counted calls == Heun's 2 n - 1 on the remaining n steps
        assert nfe[s] == denoiser_evaluations("heun", 12 - s), (s, nfe[s])
    # on the Gaussian model the closed form is exact: each skipped step removes solver error
    x_exact = linear.ve_trajectory(G, xT, 80.0, [0.0])[0]
    err = [float((linear.teleport(G, G, xT, sigmas, s)[0] - x_exact).norm() / x_exact.norm()) for s in (0, 4, 8)]
    assert err[2] < err[1] < err[0] < 0.2, err
    fine = karras_sigmas(100, 0.002, 80.0)
    assert float((linear.teleport(G, G, xT, fine, 30)[0] - x_exact).norm() / x_exact.norm()) < 2e-3
    x_full, _ = linear.teleport(G, G, xT, sigmas, 12)
    torch.testing.assert_close(x_full, x_exact)


def test_receptive_field_rows_and_growth():
    G = _gauss(4)
    for s in (0.05, 1.0):
        rf = linear.receptive_field(G, s, [0, 5]).reshape(2, -1)
        torch.testing.assert_close(rf, G.jacobian(s)[[0, 5]])
    # sigma -> 0: RF -> e_i (full rank); size grows with sigma
    rf0 = linear.receptive_field(G, 1e-5, [5]).reshape(-1)
    torch.testing.assert_close(rf0, torch.eye(D, dtype=torch.float64)[5], atol=1e-4, rtol=0)
    rad = [float(linear.rf_radius(linear.receptive_field(G, s, [5])[0, 0], (1, 1))) for s in (1e-3, 1e-1, 1.0)]
    assert rad[0] < rad[1] < rad[2]


def test_circulant_rf_equals_dense_jacobian():
    N, A, lam0 = 32, 3.0, 5.0
    lam = linear.power_law_eigenvalues(N, A, lam0)
    # dense circulant covariance from the real Fourier eigenvalues
    k = torch.arange(N, dtype=torch.float64)
    col = torch.fft.ifft(lam.to(torch.complex128)).real           # first column of Sigma
    Sigma = col[(k[:, None] - k[None, :]).long() % N]
    G = GaussianDenoiser.from_covariance(torch.zeros(N, dtype=torch.float64), Sigma, (1, 1, N))
    for s in (0.1, 0.7, 3.0):
        torch.testing.assert_close(linear.circulant_rf(lam, s), G.jacobian(s)[0], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("sigma", [0.3, 1.0, 4.0])
def test_power_law_rf_closed_form(sigma):
    N, A, lam0 = 64, 2.0, 5.0
    c = math.sqrt(A) / sigma
    an = linear.power_law_rf(N, A, lam0, sigma)
    # (1) against the infinite Fourier series summed directly (tail beyond M bounded by 2 c^2 / (N M))
    M = 200000
    m = torch.arange(1, M + 1, dtype=torch.float64)
    kk = torch.arange(N, dtype=torch.float64)
    series = (c**2 / (m**2 + c**2))[None, :] * torch.cos(2 * math.pi * m[None, :] * kk[:, None] / N)
    direct = (lam0 / (lam0 + sigma**2) + 2 * series.sum(1)) / N
    torch.testing.assert_close(an, direct, atol=2 * c**2 / (N * M) + 1e-12, rtol=0)
    # (2) against the exact finite-N circulant RF: they differ by the aliased tail |m| > N/2
    ex = linear.circulant_rf(linear.power_law_eigenvalues(N, A, lam0), sigma)
    bound = 4 * c**2 * (N + 1) / N**3
    err = (an - ex).abs().max().item()
    assert err <= bound, (err, bound)
    # RF width grows ~ linearly with sigma: decay length of cosh is N sigma / (2 pi sqrt(A)) pixels
    assert an[0] > an[1] > an[N // 4]


def test_rf_radius_grows_linearly_with_sigma():
    N, A = 256, 1.0
    lam = linear.power_law_eigenvalues(N, A, 10.0)
    sig = [0.02, 0.04, 0.08]
    rad = [float(linear.rf_radius(linear.circulant_rf(lam, s), 0, circular=True)) for s in sig]
    ratios = [rad[1] / rad[0], rad[2] / rad[1]]
    assert all(1.7 < r < 2.3 for r in ratios), rad


def test_score_fse_over_sigma():
    pytest.importorskip("course_lib.metrics")
    from course_lib.denoisers import IdealDenoiser

    G = _gauss(5)
    g = torch.Generator().manual_seed(0)
    L = torch.linalg.cholesky(G.covariance() + 1e-9 * torch.eye(D, dtype=torch.float64))
    train = (G.mean + torch.randn(300, D, generator=g, dtype=torch.float64) @ L.T).reshape(300, *SHAPE)
    ideal = IdealDenoiser(train)
    fse = linear.score_fse_over_sigma(ideal, G, train[:32], [0.01, 1.0, 30.0], generator=g)
    assert fse.shape == (3, 32)
    m = fse.mean(1)
    assert m[2] < 0.01 < m[0], m  # Gaussian ~ ideal at high noise, far apart at low noise
    same = linear.score_fse_over_sigma(G, G, train[:4], [0.5], generator=g)
    torch.testing.assert_close(same, torch.zeros_like(same))


def test_errors():
    G = _gauss()
    x = torch.zeros(1, *SHAPE, dtype=torch.float64)
    with pytest.raises(ValueError, match="sigma_T"):
        linear.ve_trajectory(G, x, 0.0, [1.0])
    with pytest.raises(ValueError, match="sigmas"):
        linear.ve_trajectory(G, x, 1.0, [-1.0])
    with pytest.raises(ValueError, match="skip"):
        linear.teleport(G, G, x, karras_sigmas(5), 9)
    with pytest.raises(ValueError, match="pixels"):
        linear.receptive_field(G, 1.0, [D])
