"""The denoiser interface: Tweedie's score and eps views, input validation, eps-prediction wrapper."""
import math

import pytest
import torch

from course_lib.denoisers import (Denoiser, EpsPredictionDenoiser, FunctionDenoiser, eps_from_denoiser,
                                  score_from_denoiser)
from course_lib.schedules import sigma_to_alpha_bar

F64 = torch.float64
MU, V = 0.7, 0.3


def gaussian_1d():
    """Exact denoiser of N(MU, V): D = MU + V / (V + sigma^2) (x - MU)."""
    return FunctionDenoiser(lambda x, s: MU + V / (V + s.view(-1, 1, 1, 1) ** 2) * (x - MU))


@pytest.fixture
def xs():
    return torch.linspace(-3, 3, 7, dtype=F64).view(7, 1, 1, 1)


@pytest.mark.parametrize("sigma", [0.01, 0.5, 3.0])
def test_score_is_grad_log_density_gaussian(xs, sigma):
    D = gaussian_1d()
    x = xs.clone().requires_grad_(True)
    logp = torch.distributions.Normal(torch.tensor(MU, dtype=F64),
                                      torch.tensor(math.sqrt(V + sigma**2), dtype=F64)).log_prob(x).sum()
    (grad,) = torch.autograd.grad(logp, x)
    assert torch.allclose(D.score(xs, sigma), grad, rtol=1e-10)
    assert torch.allclose(score_from_denoiser(D, xs, sigma), grad, rtol=1e-10)
    # eps view: E[z | x] for x = x0 + sigma z is sigma (x - MU) / (V + sigma^2)
    assert torch.allclose(D.eps(xs, sigma), sigma * (xs - MU) / (V + sigma**2), rtol=1e-10)
    assert torch.allclose(eps_from_denoiser(D, xs, sigma), -sigma * grad, rtol=1e-10)


def test_score_is_grad_log_density_delta_mixture():
    """Tweedie for a non-Gaussian law: p_sigma = mean_i N(x_i, sigma^2 I) over 4 points in R^3."""
    g = torch.Generator().manual_seed(0)
    pts = torch.randn(4, 1, 3, 1, generator=g, dtype=F64)

    def ideal(x, s):
        d2 = ((x[:, None] - pts[None]) ** 2).flatten(2).sum(-1)
        w = torch.softmax(-d2 / (2 * s.view(-1, 1) ** 2), 1)
        return torch.einsum("bn,nchw->bchw", w, pts)

    D = FunctionDenoiser(ideal)
    x = torch.randn(5, 1, 3, 1, generator=g, dtype=F64)
    sigma = torch.tensor([0.3, 0.5, 1.0, 2.0, 0.8], dtype=F64)
    xg = x.clone().requires_grad_(True)
    d2 = ((xg[:, None] - pts[None]) ** 2).flatten(2).sum(-1)
    logp = torch.logsumexp(-d2 / (2 * sigma.view(-1, 1) ** 2), 1).sum()
    (grad,) = torch.autograd.grad(logp, xg)
    assert torch.allclose(D.score(x, sigma), grad, rtol=1e-9, atol=1e-12)


def test_sigma_float_scalar_tensor_and_batch_agree(xs):
    D = gaussian_1d()
    a = D(xs, 0.5)
    assert torch.equal(a, D(xs, torch.tensor(0.5)))
    assert torch.equal(a, D(xs, torch.full((7,), 0.5)))
    assert torch.allclose(D(xs.float(), 0.5), a.float())  # dtype follows x
    seen = []
    FunctionDenoiser(lambda x, s: seen.append(s) or x)(xs.float(), torch.full((7,), 2, dtype=F64))
    assert seen[0].dtype == torch.float32 and seen[0].shape == (7,)


@pytest.mark.parametrize("sigma,match", [
    (0.0, "> 0"), (-1.0, "> 0"), (float("nan"), "finite"), (float("inf"), "finite"),
    (torch.ones(3), r"shape \(7,\)"), (torch.ones(7, 1), r"shape \(7,\)"),
])
def test_bad_sigma(xs, sigma, match):
    D = gaussian_1d()
    with pytest.raises(ValueError, match="sigma"):
        D(xs, sigma)
    with pytest.raises(ValueError, match=match):
        D(xs, sigma)
    with pytest.raises(ValueError, match="sigma"):
        D.score(xs, sigma)
    with pytest.raises(ValueError, match="sigma"):
        D.eps(xs, sigma)


def test_bad_x():
    D = gaussian_1d()
    with pytest.raises(ValueError, match=r"x must have 4 dimensions.*\(3, 4, 4\)"):
        D(torch.zeros(3, 4, 4), 1.0)
    with pytest.raises(TypeError, match="floating-point.*torch.int64"):
        D(torch.zeros(2, 1, 4, 4, dtype=torch.long), 1.0)
    with pytest.raises(TypeError, match="torch.Tensor"):
        D([[1.0]], 1.0)
    with pytest.raises(ValueError, match="empty"):
        D(torch.zeros(0, 1, 2, 2), 1.0)
    with pytest.raises(NotImplementedError, match="denoise"):
        Denoiser()(torch.zeros(1, 1, 2, 2), 1.0)


@pytest.mark.parametrize("sigma", [0.05, 1.0, 20.0])
def test_eps_prediction_wrapper_round_trips_vp(xs, sigma):
    """An exact VP eps-model of N(MU, V), called with t = alpha_bar, wraps into the exact denoiser:
    E[eps | x_t] = sqrt(1 - ab) (x_t - sqrt(ab) MU) / (ab V + 1 - ab)."""
    calls = []

    def eps_model(x_t, ab):
        calls.append(ab)
        ab = ab.view(-1, 1, 1, 1)
        return torch.sqrt(1 - ab) * (x_t - torch.sqrt(ab) * MU) / (ab * V + 1 - ab)

    W = EpsPredictionDenoiser(eps_model, sigma_to_t=lambda s: sigma_to_alpha_bar(s).to(s.dtype))
    assert torch.allclose(W(xs, sigma), gaussian_1d()(xs, sigma), rtol=1e-10, atol=1e-12)
    assert torch.allclose(calls[0], torch.full((7,), 1 / (1 + sigma**2), dtype=F64))
    # a wrong convention (feeding the VE point to a VP model) is detectably different
    Wrong = EpsPredictionDenoiser(eps_model, sigma_to_t=lambda s: sigma_to_alpha_bar(s).to(s.dtype), vp=False)
    assert (Wrong(xs, sigma) - gaussian_1d()(xs, sigma)).abs().max() > 1e-5


def test_eps_prediction_wrapper_ve(xs):
    """vp=False: a VE eps-model E[z | x] = sigma (x - MU)/(V + sigma^2) called with t = sigma."""
    W = EpsPredictionDenoiser(lambda x, s: s.view(-1, 1, 1, 1) * (x - MU) / (V + s.view(-1, 1, 1, 1) ** 2),
                              vp=False)
    assert torch.allclose(W(xs, 0.8), gaussian_1d()(xs, 0.8), rtol=1e-12)


def test_views_accept_plain_callables(xs):
    """score/eps helpers hand a plain function the validated (B,) sigma tensor."""
    def plain(x, s):
        assert isinstance(s, torch.Tensor) and s.shape == (x.shape[0],)
        return MU + V / (V + s.view(-1, 1, 1, 1) ** 2) * (x - MU)

    assert torch.allclose(score_from_denoiser(plain, xs, 0.5), gaussian_1d().score(xs, 0.5))
    assert torch.allclose(eps_from_denoiser(plain, xs, 0.5), gaussian_1d().eps(xs, 0.5))
