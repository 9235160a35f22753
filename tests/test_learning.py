"""Spectral-bias learning dynamics of a linear denoiser: closed forms vs actual gradient descent."""
import math

import numpy as np
import pytest
import torch

from course_lib import learning


def _data(N=64, d=6, seed=0, centred=False):
    g = torch.Generator().manual_seed(seed)
    scales = torch.logspace(0.5, -1, d, dtype=torch.float64)
    Q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    X = (torch.randn(N, d, generator=g, dtype=torch.float64) * scales) @ Q.T + (0 if centred else 0.7)
    if centred:
        X = X - X.mean(0)
    mean = X.mean(0)
    Sigma = (X - mean).T @ (X - mean) / N  # correction = 0: the empirical distribution's moments
    return X, mean, Sigma


def test_gd_closed_form_equals_autograd_training():
    X, mean, Sigma = _data()
    d, sigma, eta = X.shape[1], 0.5, 0.05
    g = torch.Generator().manual_seed(1)
    W0 = 0.1 * torch.randn(d, d, generator=g, dtype=torch.float64)
    b0 = 0.1 * torch.randn(d, generator=g, dtype=torch.float64)
    n, W, b = learning.train_linear_denoiser(X, sigma, eta, 60, W0, b0, record_every=20)
    Wc, bc = learning.gd_closed_form(mean, Sigma, sigma, eta, n, W0, b0)
    torch.testing.assert_close(W, Wc, rtol=1e-9, atol=1e-11)
    torch.testing.assert_close(b, bc, rtol=1e-9, atol=1e-11)
    # converges to the Wiener filter W* = Sigma (Sigma + sigma^2 I)^-1, b* = (I - W*) mu
    Wl, bl = learning.gd_closed_form(mean, Sigma, sigma, eta, [10**6], W0, b0)
    W_star = Sigma @ torch.linalg.inv(Sigma + sigma**2 * torch.eye(d, dtype=torch.float64))
    torch.testing.assert_close(Wl[0], W_star, rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(bl[0], (torch.eye(d, dtype=torch.float64) - W_star) @ mean, rtol=1e-8, atol=1e-10)


def test_flow_is_small_step_limit_of_gd():
    X, mean, Sigma = _data(seed=2)
    d, sigma = X.shape[1], 0.3
    W0, b0 = torch.zeros(d, d, dtype=torch.float64), torch.zeros(d, dtype=torch.float64)
    tau = 2.0
    Wf, bf = learning.flow_closed_form(mean, Sigma, sigma, 1.0, [tau], W0, b0)
    errs = []
    for steps in (200, 400):
        Wg, bg = learning.gd_closed_form(mean, Sigma, sigma, tau / steps, [steps], W0, b0)
        errs.append((Wg - Wf).abs().max().item())
    assert errs[1] < 0.6 * errs[0] and errs[1] < 1e-2  # first-order convergence in the step size


def test_mode_learning_curves_centred():
    X, mean, Sigma = _data(centred=True, seed=3)
    d, sigma, eta = X.shape[1], 0.4, 1.0
    lam, U = torch.linalg.eigh(Sigma)
    Qk = torch.linspace(0, 0.5, d, dtype=torch.float64)
    W0 = U @ torch.diag(Qk) @ U.T
    taus = torch.tensor([0.0, 0.1, 1.0, 5.0], dtype=torch.float64)
    W, b = learning.flow_closed_form(mean, Sigma, sigma, eta, taus, W0, torch.zeros(d, dtype=torch.float64))
    curves = learning.mode_learning_curves(lam, sigma, eta, taus, Q=Qk)
    diag = torch.einsum("ik,tij,jk->tk", U, W, U)
    torch.testing.assert_close(diag, curves, rtol=1e-9, atol=1e-10)
    off = W - torch.einsum("ik,tk,jk->tij", U, diag, U)
    assert off.abs().max() < 1e-10  # stays diagonal in the eigenbasis


def test_stochastic_trainer_matches_in_expectation():
    X, mean, Sigma = _data(N=32, d=4, seed=4)
    d, sigma, eta, steps = 4, 0.5, 0.05, 30
    Wc, _ = learning.gd_closed_form(mean, Sigma, sigma, eta, [steps], torch.zeros(d, d, dtype=torch.float64),
                                       torch.zeros(d, dtype=torch.float64))
    _, W, _ = learning.train_linear_denoiser(X, sigma, eta, steps, noise_draws=64,
                                             generator=torch.Generator().manual_seed(0))
    # noise averages over 32*64 draws per step; fluctuations O(1/sqrt(2048)) ~ 0.02 of the weights
    assert (W[-1] - Wc[0]).abs().max() < 0.1 * Wc[0].abs().max()


@pytest.mark.parametrize("Q", [0.0, 0.5])
def test_generated_variance_matches_numeric_integral(Q):
    lam = [1e-3, 0.05, 2.0]
    for tau in (0.5, 50.0, 5000.0):
        an = learning.generated_mode_variance(lam, [tau], 0.1, Q=Q)[0].numpy()
        num = np.array([learning.generated_mode_variance_numeric(l, tau, 0.1, Q=Q) for l in lam])
        np.testing.assert_allclose(an, num, rtol=1e-6)
    # limits: tau = 0 and tau -> inf
    v0 = learning.generated_mode_variance(lam, [0.0], 0.1, Q=Q)[0].numpy()
    np.testing.assert_allclose(v0, 80.0**2 * (0.002 / 80.0) ** (2 * (1 - Q)))
    vinf = learning.generated_mode_variance(lam, [1e12], 0.1, Q=Q)[0].numpy()
    np.testing.assert_allclose(vinf, 80.0**2 * (np.array(lam) + 0.002**2) / (np.array(lam) + 80.0**2), rtol=1e-6)


def test_emergence_power_law():
    lam = np.logspace(-2, 1, 7)
    tau = learning.emergence_times(lam, eta=0.1).numpy()
    assert np.all(np.diff(tau) < 0)  # higher variance emerges first
    p, _ = learning.fit_power_law(lam, tau)
    assert -1.15 < p < -0.85, p  # tau* ~ lam^-alpha with alpha ~ 1
    # at tau* the generated variance sits at the geometric mean
    for k in (0, 3, 6):
        v = learning.generated_mode_variance([lam[k]], [tau[k]], 0.1)[0, 0].item()
        v0, vinf = 0.002**2, 80.0**2 * (lam[k] + 0.002**2) / (lam[k] + 80.0**2)
        assert math.isclose(v, math.sqrt(v0 * vinf), rel_tol=1e-6)


def test_errors():
    X, mean, Sigma = _data()
    with pytest.raises(ValueError, match="sigma"):
        learning.moment_matrices(mean, Sigma, 0.0)
    with pytest.raises(ValueError, match="steps"):
        learning.train_linear_denoiser(X, 0.5, 0.1, -1)
    with pytest.raises(ValueError, match="lam"):
        learning.generated_mode_variance([-1.0], [1.0], 0.1)
