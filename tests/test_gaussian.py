"""GaussianDenoiser (Wiener filter), its VP form, rank truncation and the Gaussian-mixture denoiser."""
import math

import pytest
import torch

from course_lib.denoisers import GaussianDenoiser, GaussianMixtureDenoiser, IdealDenoiser
from course_lib.denoisers.gaussian import kmeans

SHAPE = (1, 3, 4)
D = 12


def _cov(seed=0, d=D):
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(d, d, generator=g, dtype=torch.float64)
    Sigma = A @ A.T / d + 0.05 * torch.eye(d, dtype=torch.float64)
    mu = torch.randn(d, generator=g, dtype=torch.float64)
    return mu, Sigma


def test_wiener_formula_dense():
    mu, Sigma = _cov()
    G = GaussianDenoiser.from_covariance(mu, Sigma, SHAPE)
    x = torch.randn(6, *SHAPE, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    sig = torch.tensor([0.01, 0.1, 0.5, 1.0, 3.0, 30.0], dtype=torch.float64)
    I = torch.eye(D, dtype=torch.float64)
    for b in range(6):
        s = float(sig[b])
        ref = mu + Sigma @ torch.linalg.solve(Sigma + s * s * I, x[b].reshape(-1) - mu)
        got = G(x[b:b + 1], s).reshape(-1)
        torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(G(x, sig)[2], G(x[2:3], 0.5)[0])  # per-sample sigma
    # Tweedie: the score is the Gaussian score (Sigma + sigma^2 I)^-1 (mu - x)
    s = 0.7
    score = G.score(x, s).reshape(6, -1)
    ref = torch.linalg.solve(Sigma + s * s * I, (mu - x.reshape(6, -1)).T).T
    torch.testing.assert_close(score, ref, rtol=1e-9, atol=1e-10)


def test_from_data_matches_stats_and_float32(tmp_path):
    g = torch.Generator().manual_seed(0)
    X = torch.randn(200, *SHAPE, generator=g) * torch.linspace(0.1, 2, D).reshape(SHAPE)
    G = GaussianDenoiser.from_data(X, cache_dir=tmp_path)
    Xf = X.reshape(200, -1).double()
    torch.testing.assert_close(G.mean, Xf.mean(0))
    torch.testing.assert_close(G.covariance(), torch.cov(Xf.T), rtol=1e-9, atol=1e-10)
    x = torch.randn(3, *SHAPE, generator=g)
    out = G(x, 0.3)
    assert out.dtype == torch.float32 and out.shape == x.shape
    torch.testing.assert_close(out.double(), G(x.double(), 0.3), rtol=1e-4, atol=1e-5)


def test_rank_truncation_zero_variance_off_rank():
    mu, Sigma = _cov()
    r = 5
    G = GaussianDenoiser.from_covariance(mu, Sigma, SHAPE, rank=r)
    lam, U = torch.linalg.eigh(Sigma)
    lam, U = lam.flip(0)[:r], U.flip(1)[:, :r]
    Sig_r = U @ torch.diag(lam) @ U.T
    x = torch.randn(4, *SHAPE, dtype=torch.float64)
    s = 0.4
    ref = mu + (Sig_r @ torch.linalg.solve(Sig_r + s * s * torch.eye(D, dtype=torch.float64), (x.reshape(4, -1) - mu).T)).T
    torch.testing.assert_close(G(x, s).reshape(4, -1), ref, rtol=1e-9, atol=1e-10)
    # off-rank directions are projected out entirely: D - mu lies in span(U_r)
    y = G(x, s).reshape(4, -1) - mu
    torch.testing.assert_close(y - (y @ U) @ U.T, torch.zeros_like(y), atol=1e-10, rtol=0)


def test_vp_form_matches_ve():
    mu, Sigma = _cov(2)
    G = GaussianDenoiser.from_covariance(mu, Sigma, SHAPE)
    x0 = torch.randn(3, *SHAPE, dtype=torch.float64)
    eps = torch.randn(3, *SHAPE, dtype=torch.float64)
    for ab in (0.05, 0.5, 0.97):
        x_t = math.sqrt(ab) * x0 + math.sqrt(1 - ab) * eps
        sigma = math.sqrt((1 - ab) / ab)
        x_ve = x_t / math.sqrt(ab)
        torch.testing.assert_close(G.denoise_vp(x_t, ab), G(x_ve, sigma), rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(G.eps_vp(x_t, ab), G.eps(x_ve, sigma), rtol=1e-9, atol=1e-10)


def test_jacobian_autograd_equals_formula():
    mu, Sigma = _cov(3)
    G = GaussianDenoiser.from_covariance(mu, Sigma, SHAPE)
    x = torch.randn(1, *SHAPE, dtype=torch.float64)
    for s in (0.05, 1.0, 10.0):
        J = torch.func.jacrev(lambda v: G(v.reshape(1, *SHAPE), s).reshape(-1))(x.reshape(-1))
        ref = Sigma @ torch.linalg.inv(Sigma + s * s * torch.eye(D, dtype=torch.float64))
        torch.testing.assert_close(J, ref, rtol=1e-9, atol=1e-10)
        torch.testing.assert_close(G.jacobian(s), ref, rtol=1e-9, atol=1e-10)


def test_gaussian_is_large_sample_limit_of_ideal():
    """On N Gaussian samples the ideal (delta-mixture) denoiser at high sigma approaches the Wiener
    filter of the true (mu, Sigma); the gap shrinks as N grows (finite-N error ~ 1/sqrt(N))."""
    mu, Sigma = _cov(4, d=4)
    shape = (1, 2, 2)
    G = GaussianDenoiser.from_covariance(mu, Sigma, shape)
    L = torch.linalg.cholesky(Sigma)
    g = torch.Generator().manual_seed(5)
    x = mu + (torch.randn(64, 4, generator=g, dtype=torch.float64) @ L.T) * math.sqrt(1 + 2.0**2)
    x = x.reshape(64, *shape)
    errs = []
    for N in (500, 50000):
        train = (mu + torch.randn(N, 4, generator=g, dtype=torch.float64) @ L.T).reshape(N, *shape)
        ideal = IdealDenoiser(train, chunk_size=8192)
        errs.append(float(((ideal(x, 2.0) - G(x, 2.0)) ** 2).mean().sqrt()))
    scale = float(((G(x, 2.0) - mu.reshape(shape)) ** 2).mean().sqrt())
    assert errs[1] < 0.03 * scale, (errs, scale)
    assert errs[1] < errs[0] / 3, errs  # sqrt(100) = 10x fewer errors expected; allow 3x


def test_gaussian_mixture_single_component_and_brute_force():
    mu, Sigma = _cov(6)
    G = GaussianDenoiser.from_covariance(mu, Sigma, SHAPE)
    M1 = GaussianMixtureDenoiser(mu[None], G.lam[None], G.U[None], [1.0], SHAPE)
    x = torch.randn(4, *SHAPE, dtype=torch.float64)
    torch.testing.assert_close(M1(x, 0.6), G(x, 0.6), rtol=1e-10, atol=1e-10)
    # two components, brute force with dense matrices and multivariate normal log-densities
    mu2, Sigma2 = _cov(7)
    G2 = GaussianDenoiser.from_covariance(mu2, Sigma2, SHAPE, rank=4)  # rank-deficient component
    r = 4
    lams = torch.stack([G.lam[:r], G2.lam])
    Us = torch.stack([G.U[:, :r], G2.U])
    M = GaussianMixtureDenoiser(torch.stack([mu, mu2]), lams, Us, [0.3, 0.7], SHAPE)
    s = 0.8
    I = torch.eye(D, dtype=torch.float64)
    covs = [Us[j] @ torch.diag(lams[j]) @ Us[j].T for j in range(2)]
    xf = x.reshape(4, -1)
    logp = torch.stack([math.log(w) + torch.distributions.MultivariateNormal(m, C + s * s * I).log_prob(xf)
                        for w, m, C in zip((0.3, 0.7), (mu, mu2), covs)], 1)
    w = torch.softmax(logp, 1)
    Dj = torch.stack([m + (C @ torch.linalg.solve(C + s * s * I, (xf - m).T)).T for m, C in zip((mu, mu2), covs)], 1)
    torch.testing.assert_close(M.responsibilities(x, s), w, rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(M(x, s).reshape(4, -1), (w[..., None] * Dj).sum(1), rtol=1e-8, atol=1e-10)


def test_mixture_from_labels_and_kmeans(tmp_path):
    g = torch.Generator().manual_seed(0)
    centers = torch.tensor([[-4.0] * D, [4.0] * D])
    lab = torch.arange(100) % 2
    X = (centers[lab] + 0.3 * torch.randn(100, D, generator=g)).reshape(100, *SHAPE)
    M = GaussianMixtureDenoiser.from_labels(X, lab, rank=3, cache_dir=tmp_path)
    torch.testing.assert_close(M.weights, torch.tensor([0.5, 0.5], dtype=M.weights.dtype))
    _, km = kmeans(X.reshape(100, -1), 2, generator=torch.Generator().manual_seed(1))
    assert (km == lab).all() or (km == 1 - lab).all()
    Mk = GaussianMixtureDenoiser.from_kmeans(X, 2, rank=3, generator=torch.Generator().manual_seed(1),
                                             cache_dir=tmp_path)
    x = X[:4] + 0.5 * torch.randn(4, *SHAPE, generator=g)
    torch.testing.assert_close(Mk(x, 0.5), M(x, 0.5), rtol=1e-4, atol=1e-4)
    # at small sigma each noisy point is assigned to its own cluster
    assert torch.equal(M.responsibilities(x, 0.5).argmax(1), lab[:4])


def test_errors():
    mu, Sigma = _cov()
    with pytest.raises(ValueError, match="rank"):
        GaussianDenoiser.from_covariance(mu, Sigma, SHAPE, rank=0)
    with pytest.raises(ValueError, match="mean"):
        GaussianDenoiser.from_covariance(mu[:5], Sigma, SHAPE)
    G = GaussianDenoiser.from_covariance(mu, Sigma, SHAPE)
    with pytest.raises(ValueError, match="sigma"):
        G(torch.zeros(1, *SHAPE), 0.0)
    with pytest.raises(ValueError, match="alpha_bar"):
        G.denoise_vp(torch.zeros(1, *SHAPE), 1.0)


def test_mixture_small_class_svd_path(tmp_path):
    """Classes with fewer images than pixels use a thin SVD; the covariance must equal torch.cov."""
    g = torch.Generator().manual_seed(3)
    X = torch.randn(16, *SHAPE, generator=g, dtype=torch.float64)
    lab = torch.arange(16) % 2  # 8 images per class < d = 12
    M = GaussianMixtureDenoiser.from_labels(X, lab, cache_dir=tmp_path)
    for j in range(2):
        Xj = X[lab == j].reshape(8, -1)
        C = M.Us[j] @ torch.diag(M.lams[j]) @ M.Us[j].T
        torch.testing.assert_close(C, torch.cov(Xj.T), rtol=1e-9, atol=1e-10)
        torch.testing.assert_close(M.means[j], Xj.mean(0))
    # one component only: must equal the GaussianDenoiser of that class (rank 7 < d)
    Xj = X[lab == 0]
    G = GaussianDenoiser.from_covariance(Xj.reshape(8, -1).mean(0), torch.cov(Xj.reshape(8, -1).T), SHAPE, rank=7)
    M0 = GaussianMixtureDenoiser.from_labels(Xj, torch.zeros(8, dtype=torch.long), cache_dir=tmp_path)
    x = torch.randn(3, *SHAPE, generator=g, dtype=torch.float64)
    torch.testing.assert_close(M0(x, 0.3), G(x, 0.3), rtol=1e-8, atol=1e-9)
