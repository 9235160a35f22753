"""Tests of the smoothed ideal denoisers (course_lib/denoisers/smoothing.py, Chapter 1)."""
import math

import numpy as np
import pytest
import torch

from course_lib.denoisers import ClosedFormSmoothedDenoiser, IdealDenoiser, KernelSmoothedDenoiser


def _data(N=30, B=5, shape=(1, 2, 3), seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(N, *shape, generator=g, dtype=torch.float64),
            2 * torch.randn(B, *shape, generator=g, dtype=torch.float64))


def test_kernel_smoothing_with_s0_is_the_ideal_denoiser():
    Y, x = _data()
    for sigma in (0.01, 1.0, 30.0):
        torch.testing.assert_close(KernelSmoothedDenoiser(Y, 0.0)(x, sigma), IdealDenoiser(Y)(x, sigma))


def test_kernel_smoothing_of_one_image_is_the_wiener_filter():
    """Prior N(x1, s^2 I): the posterior mean is x1 + s^2 / (s^2 + sigma^2) (x - x1)."""
    Y, x = _data(N=1)
    s = 0.7
    for sigma in (0.05, 1.0, 10.0):
        ref = Y + s**2 / (s**2 + sigma**2) * (x - Y)
        torch.testing.assert_close(KernelSmoothedDenoiser(Y, s, chunk_size=1)(x, sigma), ref)


@pytest.mark.parametrize("sigma", [0.1, 0.8, 4.0])
def test_kernel_smoothed_score_is_autograd_of_the_smoothed_mixture(sigma):
    Y, x = _data()
    s = 0.5
    tau2 = sigma**2 + s**2
    xr = x.clone().requires_grad_(True)
    diff = xr.reshape(5, 1, -1) - Y.reshape(1, 30, -1)
    logp = torch.logsumexp(-(diff**2).sum(-1) / (2 * tau2), -1).sum()
    (grad,) = torch.autograd.grad(logp, xr)
    K = KernelSmoothedDenoiser(Y, s, chunk_size=7)
    torch.testing.assert_close(K.score(x, sigma), grad, rtol=1e-8, atol=1e-10)
    d = Y[0].numel()
    ref = torch.logsumexp(-(diff.detach()**2).sum(-1) / (2 * tau2), -1) - math.log(30) - 0.5 * d * math.log(2 * math.pi * tau2)
    torch.testing.assert_close(K.log_density(x, sigma), ref)


def test_kernel_smoothed_posterior_mean_matches_monte_carlo_over_the_prior():
    """Independent check: E[x0 | x] with x0 = x_i + s eps drawn from the smoothed prior, estimated by
    self-normalised importance weights N(x; x0, sigma^2 I); tolerance from the weights' own spread."""
    g = torch.Generator().manual_seed(5)
    Y = torch.randn(4, 1, 1, 2, generator=g, dtype=torch.float64)
    s, sigma, M = 0.6, 0.5, 400_000
    i = torch.randint(0, 4, (M,), generator=g)
    x0 = Y.reshape(4, 2)[i] + s * torch.randn(M, 2, generator=g, dtype=torch.float64)
    x = torch.tensor([[0.3, -0.2]], dtype=torch.float64)
    w = torch.softmax(-((x - x0) ** 2).sum(-1) / (2 * sigma**2), 0)
    mc = w @ x0
    se = torch.sqrt((w.unsqueeze(-1) ** 2 * (x0 - mc) ** 2).sum(0))
    got = KernelSmoothedDenoiser(Y, s)(x.reshape(1, 1, 1, 2), sigma).reshape(2)
    assert bool(((got - mc).abs() <= 5 * se).all()), ((got - mc).abs() / se)


def test_closed_form_smoothing_s0_is_ideal_and_is_deterministic():
    Y, x = _data()
    torch.testing.assert_close(ClosedFormSmoothedDenoiser(Y, 0.0)(x, 0.3), IdealDenoiser(Y)(x, 0.3))
    C = ClosedFormSmoothedDenoiser(Y, 0.4, n_samples=8, seed=3)
    assert torch.equal(C(x, 0.3), C(x, 0.3))
    z = C.perturbations(x)
    assert z.shape == (8, 1, *x.shape[1:])  # the same draws for every query (no batch dependence)
    torch.testing.assert_close(z.mean(0), torch.zeros_like(x[:1]), atol=1e-15, rtol=0)  # antithetic


def test_closed_form_smoothed_score_is_the_average_ideal_score():
    """score_s(x) = (D_s(x) - x)/sigma^2 equals the mean over the draws of score(x + s z)."""
    Y, x = _data()
    s, sigma = 0.5, 0.7
    C = ClosedFormSmoothedDenoiser(Y, s, n_samples=6, seed=1)
    ideal = IdealDenoiser(Y)
    z = C.perturbations(x)
    ref = torch.stack([ideal.score(x + s * z[m], sigma) for m in range(6)]).mean(0)
    torch.testing.assert_close(C.score(x, sigma), ref, rtol=1e-9, atol=1e-9)


def test_closed_form_smoothing_matches_quadrature_for_two_points():
    """Two training points a, b: D(x) = a + sigmoid(t(x)) (b - a) with t affine in x, so
    E_z[D(x + s z)] = a + E_g[sigmoid(t(x) + s |grad t| g)] (b - a), a 1-D Gauss-Hermite integral.
    Tolerance: 5 Monte Carlo standard errors, from the spread of the antithetic pair means."""
    a = torch.tensor([-1.0, 0.5, 0.0], dtype=torch.float64)
    b = torch.tensor([1.0, -0.5, 0.5], dtype=torch.float64)
    Y = torch.stack([a, b]).reshape(2, 1, 1, 3)
    x = torch.tensor([[0.1, 0.0, 0.2], [-0.6, 0.4, 0.1]], dtype=torch.float64)
    s, sigma, M = 0.8, 0.4, 4000
    C = ClosedFormSmoothedDenoiser(Y, s, n_samples=M, seed=7)
    got = C(x.reshape(2, 1, 1, 3), sigma).reshape(2, 3)
    gvec = (b - a) / sigma**2                       # t(x) = x.(b - a)/sigma^2 + (|a|^2 - |b|^2)/(2 sigma^2)
    t = x @ gvec + (a @ a - b @ b) / (2 * sigma**2)
    nodes, wts = np.polynomial.hermite_e.hermegauss(200)
    nodes, wts = torch.from_numpy(nodes), torch.from_numpy(wts) / math.sqrt(2 * math.pi)
    p = (torch.sigmoid(t.unsqueeze(-1) + s * gvec.norm() * nodes) * wts).sum(-1)
    ref = a + p.unsqueeze(-1) * (b - a)
    # Monte Carlo standard error of the antithetic estimator
    z = C.perturbations(x.reshape(2, 1, 1, 3)).reshape(M, 1, 3)  # shared by both queries
    Dz = IdealDenoiser(Y)(
        (x.unsqueeze(0) + s * z).reshape(M * 2, 1, 1, 3), sigma).reshape(M, 2, 3)
    pairs = 0.5 * (Dz[: M // 2] + Dz[M // 2:])
    se = pairs.std(0) / math.sqrt(M // 2)
    assert bool(((got - ref).abs() <= 5 * se + 1e-12).all()), ((got - ref).abs() / se)
    # and the smoothing matters: the unsmoothed denoiser is far from this
    assert (IdealDenoiser(Y)(x.reshape(2, 1, 1, 3), sigma).reshape(2, 3) - ref).abs().max() > 0.05


def test_closed_form_smoothing_moves_fixed_points_to_the_barycenter():
    """Two 1-pixel images at -1 and +1. As sigma -> 0, D_s(x) -> 2 Phi(x/s) - 1, whose only fixed
    point is the barycenter 0 when s > sqrt(2/pi) (slope 2 phi(0)/s < 1 there); for s < sqrt(2/pi)
    the barycenter is unstable and two fixed points near +-1 appear; the ideal machine lands on +-1. Sample by Euler steps of the probability-flow ODE."""
    Y = torch.tensor([-1.0, 1.0], dtype=torch.float64).reshape(2, 1, 1, 1)
    g = torch.Generator().manual_seed(0)
    x0 = 3.0 * torch.randn(16, 1, 1, 1, generator=g, dtype=torch.float64)
    sigmas = torch.logspace(math.log10(3.0), -4, 50, dtype=torch.float64)

    def run(D):
        x = x0.clone()
        for s0, s1 in zip(sigmas[:-1], sigmas[1:]):
            x = x + (s1 - s0) * (x - D(x, float(s0))) / s0
        return D(x, float(sigmas[-1])).flatten()

    ideal_end = run(IdealDenoiser(Y))
    torch.testing.assert_close(ideal_end.abs(), torch.ones(16, dtype=torch.float64), atol=1e-6, rtol=0)
    # near 0, x - 0 decays like sigma^(1 - 2 phi(0)/s): slowly for s close to sqrt(2/pi) ~ 0.8
    smooth_end = run(ClosedFormSmoothedDenoiser(Y, 3.0, n_samples=400, seed=0))
    assert smooth_end.abs().max() < 0.05
    below = run(ClosedFormSmoothedDenoiser(Y, 0.3, n_samples=400, seed=0))  # s < sqrt(2/pi)
    assert below.abs().min() > 0.5


def test_bad_smoothing_arguments():
    Y, _ = _data()
    with pytest.raises(ValueError, match="s "):
        KernelSmoothedDenoiser(Y, -0.1)
    with pytest.raises(ValueError, match="n_samples"):
        ClosedFormSmoothedDenoiser(Y, 0.1, n_samples=3)
    with pytest.raises(ValueError, match="s "):
        ClosedFormSmoothedDenoiser(Y, float("nan"))
