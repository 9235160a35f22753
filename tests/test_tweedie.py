"""Tweedie's formula (Chapter 0): closed forms vs quadrature vs Monte Carlo vs autograd of log-densities."""
import math

import pytest
import torch

from course_lib import tweedie as tw
from course_lib.denoisers import IdealDenoiser

F64 = torch.float64
GMM = dict(weights=[0.3, 0.7], means=[-1.0, 1.5], variances=[0.04, 0.25])


def _gmm_log_prior(g):
    return tw.gmm_1d_log_density(g, 1e-6, **GMM)  # sigma -> 0: the prior itself


def test_gaussian_closed_form_is_one_component_mixture_and_satisfies_tweedie():
    x = torch.linspace(-4, 4, 41, dtype=F64)
    for sigma in (0.1, 1.0, 5.0):
        d = tw.gaussian_denoiser_1d(x, sigma, mu=0.5, var=2.0)
        assert torch.allclose(d, tw.gmm_1d_posterior_mean(x, sigma, [1.0], [0.5], [2.0]), atol=1e-12)
        via_score = x + sigma**2 * tw.gaussian_score_1d(x, sigma, mu=0.5, var=2.0)
        assert torch.allclose(d, via_score, atol=1e-12)
        via_autograd = tw.tweedie_from_log_density(
            lambda z, s: tw.gmm_1d_log_density(z, s, [1.0], [0.5], [2.0]), x, sigma)
        assert torch.allclose(d, via_autograd, atol=1e-10)


def test_gmm_posterior_mean_equals_tweedie_of_its_log_density():
    """Two independent closed forms: the responsibility-weighted Wiener means vs x + sigma^2 d/dx log p."""
    x = torch.linspace(-3, 4, 57, dtype=F64)
    for sigma in (0.05, 0.3, 1.0, 3.0):
        direct = tw.gmm_1d_posterior_mean(x, sigma, **GMM)
        via = tw.tweedie_from_log_density(lambda z, s: tw.gmm_1d_log_density(z, s, **GMM), x, sigma)
        assert torch.allclose(direct, via, atol=1e-9), (sigma, (direct - via).abs().max())
    # a sign error in Tweedie (x - sigma^2 score) is far off
    score = (tw.gmm_1d_posterior_mean(x, 0.3, **GMM) - x) / 0.3**2
    assert (x - 0.3**2 * score - tw.gmm_1d_posterior_mean(x, 0.3, **GMM)).abs().max() > 0.5


def test_grid_quadrature_matches_closed_forms():
    grid = torch.linspace(-8, 9, 6001, dtype=F64)
    x = torch.linspace(-3, 4, 29, dtype=F64)
    for sigma in (0.2, 1.0, 2.0):
        pm = tw.posterior_mean_grid(x, sigma, _gmm_log_prior, grid)
        assert torch.allclose(pm, tw.gmm_1d_posterior_mean(x, sigma, **GMM), atol=1e-7)
        ld = tw.log_density_grid(x, sigma, _gmm_log_prior, grid)
        assert torch.allclose(ld, tw.gmm_1d_log_density(x, sigma, **GMM), atol=1e-6)
        via = tw.tweedie_from_log_density(lambda z, s: tw.log_density_grid(z, s, _gmm_log_prior, grid), x, sigma)
        assert torch.allclose(via, pm, atol=1e-7)


def test_grid_handles_a_non_gaussian_prior():
    """Uniform prior on [-1, 1]: E[x0|x] has the closed form x - sigma (phi(b) - phi(a)) / (Phi(b) - Phi(a))."""
    grid = torch.linspace(-1, 1, 20001, dtype=F64)
    x = torch.linspace(-2, 2, 21, dtype=F64)
    sigma = 0.5
    pm = tw.posterior_mean_grid(x, sigma, lambda g: torch.zeros_like(g), grid)
    n = torch.distributions.Normal(torch.zeros((), dtype=F64), torch.ones((), dtype=F64))
    a, b = (-1 - x) / sigma, (1 - x) / sigma
    exact = x - sigma * (n.log_prob(b).exp() - n.log_prob(a).exp()) / (n.cdf(b) - n.cdf(a))
    assert torch.allclose(pm, exact, atol=1e-4)  # Riemann sum of a density with jumps at the ends: O(dx)


def test_monte_carlo_posterior_mean_agrees_within_its_standard_error():
    g = torch.Generator().manual_seed(0)
    n, mu, var, sigma = 20000, 0.5, 2.0, 0.8
    x0 = mu + math.sqrt(var) * torch.randn(n, 1, generator=g, dtype=F64)
    x = torch.linspace(-3, 4, 30, dtype=F64).reshape(-1, 1)
    est = tw.posterior_mean_monte_carlo(x, sigma, x0, chunk_size=3000)
    exact = tw.gaussian_denoiser_1d(x, sigma, mu=mu, var=var)
    z = ((est.mean - exact) / est.stderr).flatten()
    assert z.abs().max() < 4.5, z
    # mean of z^2 ~ chi2_30 / 30: sd sqrt(2/30) = 0.26; 4 sd bounds
    assert 0.0 < (z**2).mean() < 1.0 + 4 * math.sqrt(2 / 30), z
    assert bool((est.ess > 10).all()) and bool((est.ess <= n).all())


def test_monte_carlo_standard_error_is_calibrated_across_replicates():
    """The reported stderr matches the spread of independent replicates (R = 60: ratio sd ~ 1/sqrt(2R))."""
    g = torch.Generator().manual_seed(1)
    R, n, sigma = 60, 2000, 0.5
    x = torch.tensor([[0.3], [1.7]], dtype=F64)
    means, errs = [], []
    for _ in range(R):
        x0 = torch.randn(n, 1, generator=g, dtype=F64)
        e = tw.posterior_mean_monte_carlo(x, sigma, x0)
        means.append(e.mean.flatten())
        errs.append(e.stderr.flatten())
    means, errs = torch.stack(means), torch.stack(errs)
    ratio = means.std(0) / errs.mean(0)
    assert bool(((ratio > 1 - 4 / math.sqrt(2 * R)) & (ratio < 1 + 4 / math.sqrt(2 * R))).all()), ratio
    exact = tw.gaussian_denoiser_1d(x.flatten(), sigma)
    assert bool(((means.mean(0) - exact).abs() < 4 * errs.mean(0) / math.sqrt(R) + 1e-3).all())


def test_monte_carlo_is_chunk_invariant_and_multidimensional():
    g = torch.Generator().manual_seed(2)
    x0 = torch.randn(500, 1, 2, 3, generator=g, dtype=F64)
    x = torch.randn(4, 1, 2, 3, generator=g, dtype=F64) * 2
    sig = torch.tensor([0.5, 1.0, 2.0, 4.0], dtype=F64)
    a = tw.posterior_mean_monte_carlo(x, sig, x0, chunk_size=7)
    b = tw.posterior_mean_monte_carlo(x, sig, x0, chunk_size=10_000)
    assert torch.allclose(a.mean, b.mean, atol=1e-12) and torch.allclose(a.stderr, b.stderr, atol=1e-12)
    # brute force: explicit normalised weights
    w = torch.softmax(-((x.reshape(4, 1, -1) - x0.reshape(1, 500, -1)) ** 2).sum(-1) / (2 * sig[:, None] ** 2), -1)
    assert torch.allclose(a.mean.reshape(4, -1), w @ x0.reshape(500, -1), atol=1e-12)
    assert torch.allclose(a.ess, 1 / (w**2).sum(-1), rtol=1e-9)


def _brute_force_delta_mixture(x, sigma, train):
    """Loop reference: log-density and posterior mean of (1/N) sum_i N(x; x_i, sigma^2 I)."""
    out_lp, out_pm = [], []
    for b in range(x.shape[0]):
        logs = []
        for i in range(train.shape[0]):
            d2 = float(((x[b] - train[i]) ** 2).sum())
            logs.append(-d2 / (2 * sigma**2))
        m = max(logs)
        ws = [math.exp(v - m) for v in logs]
        tot = sum(ws)
        d = x[b].numel()
        out_lp.append(m + math.log(tot) - math.log(train.shape[0]) - 0.5 * d * math.log(2 * math.pi * sigma**2))
        out_pm.append(sum(w * train[i] for i, w in enumerate(ws)) / tot)
    return torch.tensor(out_lp, dtype=x.dtype), torch.stack(out_pm)


def test_tweedie_on_a_tiny_discrete_dataset():
    g = torch.Generator().manual_seed(3)
    train = torch.rand(5, 1, 3, 3, generator=g, dtype=F64) * 2 - 1
    x = train[[0, 2, 4]] + 0.7 * torch.randn(3, 1, 3, 3, generator=g, dtype=F64)
    for sigma in (0.2, 0.7, 3.0):
        lp_ref, pm_ref = _brute_force_delta_mixture(x, sigma, train)
        ideal = IdealDenoiser(train, chunk_size=2)
        assert torch.allclose(ideal.log_density(x, sigma), lp_ref, atol=1e-10)
        via = tw.tweedie_from_log_density(ideal.log_density, x, sigma)
        assert torch.allclose(via, pm_ref, atol=1e-9)
        # ...and the Monte-Carlo estimator on the training set is the same softmax average
        assert torch.allclose(tw.posterior_mean_monte_carlo(x, sigma, train).mean, pm_ref, atol=1e-12)


def test_tweedie_from_log_density_with_per_sample_sigma():
    g = torch.Generator().manual_seed(4)
    train = torch.randn(6, 1, 2, 2, generator=g, dtype=F64)
    x = torch.randn(3, 1, 2, 2, generator=g, dtype=F64)
    sig = torch.tensor([0.3, 1.0, 2.0], dtype=F64)
    via = tw.tweedie_from_log_density(IdealDenoiser(train).log_density, x, sig)
    for b in range(3):
        _, pm = _brute_force_delta_mixture(x[b:b + 1], float(sig[b]), train)
        assert torch.allclose(via[b:b + 1], pm, atol=1e-9)


def test_denoiser_from_score_recovers_the_wiener_denoiser():
    x = torch.randn(2, 1, 4, 4, generator=torch.Generator().manual_seed(5), dtype=F64)
    D = tw.denoiser_from_score(lambda z, s: tw.gaussian_score_1d(z, s.reshape(-1, 1, 1, 1), var=0.5))
    assert torch.allclose(D(x, 0.7), tw.gaussian_denoiser_1d(x, 0.7, var=0.5), atol=1e-12)
    assert torch.allclose(D.score(x, 0.7), tw.gaussian_score_1d(x, 0.7, var=0.5), atol=1e-12)


def test_bad_inputs_name_the_problem():
    x = torch.zeros(3, dtype=F64)
    with pytest.raises(ValueError, match="sigma"):
        tw.gaussian_denoiser_1d(x, 0.0)
    with pytest.raises(ValueError, match="sigma"):
        tw.gmm_1d_posterior_mean(x, -1.0, **GMM)
    with pytest.raises(ValueError, match="var"):
        tw.gaussian_denoiser_1d(x, 1.0, var=0.0)
    with pytest.raises(TypeError, match="floating-point"):
        tw.gaussian_denoiser_1d(torch.zeros(3, dtype=torch.long), 1.0)
    with pytest.raises(ValueError, match="uniformly spaced"):
        tw.posterior_mean_grid(x, 1.0, lambda g: torch.zeros_like(g), torch.tensor([0.0, 1.0, 3.0], dtype=F64))
    with pytest.raises(ValueError, match="trailing shape"):
        tw.posterior_mean_monte_carlo(torch.zeros(2, 3, dtype=F64), 1.0, torch.zeros(5, 4, dtype=F64))
    with pytest.raises(ValueError, match="sigma"):
        tw.posterior_mean_monte_carlo(torch.zeros(2, 3, dtype=F64), 0.0, torch.zeros(5, 3, dtype=F64))
    with pytest.raises(ValueError, match="weights, means, variances"):
        tw.gmm_1d_log_density(x, 1.0, [1.0], [0.0, 1.0], [1.0])
