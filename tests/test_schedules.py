"""Schedules against independent numpy implementations of the published formulas."""
import math

import numpy as np
import pytest
import torch

from course_lib import schedules as S


@pytest.mark.parametrize("n,smin,smax,rho", [(18, 0.002, 80.0, 7.0), (5, 0.01, 10.0, 3.0), (2, 0.5, 2.0, 1.0)])
def test_karras_vs_formula(n, smin, smax, rho):
    sig = S.karras_sigmas(n, smin, smax, rho)
    i = np.arange(n)
    ref = (smax ** (1 / rho) + i / (n - 1) * (smin ** (1 / rho) - smax ** (1 / rho))) ** rho
    assert sig.shape == (n + 1,) and sig.dtype == torch.float64
    np.testing.assert_allclose(sig[:-1].numpy(), ref, rtol=1e-12)
    assert sig[0].item() == smax and sig[n - 1].item() == smin and sig[-1] == 0
    assert bool((sig[1:] < sig[:-1]).all())
    assert S.karras_sigmas(n, smin, smax, rho, append_zero=False).shape == (n,)


def test_karras_rho1_is_linear_and_errors():
    np.testing.assert_allclose(S.karras_sigmas(5, 1.0, 5.0, rho=1.0)[:-1].numpy(), [5, 4, 3, 2, 1])
    assert S.karras_sigmas(1, 0.1, 3.0).tolist() == [3.0, 0.0]
    for kw, match in [(dict(n=0), "n must"), (dict(n=3, sigma_min=0.0), "sigma_min"),
                      (dict(n=3, sigma_min=5.0, sigma_max=1.0), "sigma_min"),
                      (dict(n=3, sigma_max=float("nan")), "sigma_max"), (dict(n=3, rho=-1.0), "rho")]:
        with pytest.raises(ValueError, match=match):
            S.karras_sigmas(**kw)


def test_vp_ve_round_trips():
    sigma = torch.tensor([0.0, 1e-3, 0.5, 1.0, 10.0, 80.0], dtype=torch.float64)
    ab = S.sigma_to_alpha_bar(sigma)
    np.testing.assert_allclose(ab.numpy(), 1 / (1 + sigma.numpy() ** 2), rtol=1e-14)
    assert torch.allclose(S.alpha_bar_to_sigma(ab), sigma, rtol=1e-10, atol=1e-12)
    a2 = torch.linspace(0.01, 1.0, 7, dtype=torch.float64)
    assert torch.allclose(S.sigma_to_alpha_bar(S.alpha_bar_to_sigma(a2)), a2, rtol=1e-12)
    # the same x0 and noise: x_t = sqrt(ab) x0 + sqrt(1-ab) eps  <->  x = x0 + sigma eps
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(6, 1, 2, 2, generator=g, dtype=torch.float64)
    eps = torch.randn(6, 1, 2, 2, generator=g, dtype=torch.float64)
    s4, ab4 = sigma.view(-1, 1, 1, 1), ab.view(-1, 1, 1, 1)
    x_ve, x_vp = x0 + s4 * eps, ab4.sqrt() * x0 + (1 - ab4).sqrt() * eps
    assert torch.allclose(S.ve_to_vp(x_ve, sigma), x_vp, atol=1e-12)
    assert torch.allclose(S.vp_to_ve(x_vp, ab), x_ve, atol=1e-10)
    assert torch.allclose(S.ve_to_vp(x_ve[:1], 2.0), x_ve[:1] / math.sqrt(5.0))
    with pytest.raises(ValueError, match="sigma"):
        S.sigma_to_alpha_bar(torch.tensor([-1.0]))
    with pytest.raises(ValueError, match="sigma"):
        S.sigma_to_alpha_bar(float("nan"))
    with pytest.raises(ValueError, match="alpha_bar"):
        S.alpha_bar_to_sigma(torch.tensor([0.0, 0.5]))
    with pytest.raises(ValueError, match="alpha_bar"):
        S.alpha_bar_to_sigma(1.5)


def test_linear_beta_vs_numpy():
    betas = np.linspace(1e-4, 0.02, 1000)
    ref = np.cumprod(1 - betas)
    ab = S.linear_beta_alpha_bar(1000)
    np.testing.assert_allclose(ab.numpy(), ref, rtol=1e-12)
    # published value: DDPM's alpha_bar_T ~ 4.0e-5 (sigma_T ~ 157)
    assert ab[-1].item() == pytest.approx(4.036e-5, rel=1e-2)


def test_cosine_vs_numpy():
    """Nichol & Dhariwal 2021, Eq. 17 and their betas_for_alpha_bar (betas clipped at 0.999)."""
    T, s = 1000, 0.008

    def f(t):
        return math.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2

    betas = [min(1 - f(t + 1) / f(t), 0.999) for t in range(T)]
    ref = np.cumprod(1 - np.array(betas))
    ab = S.cosine_alpha_bar(T)
    np.testing.assert_allclose(ab.numpy(), ref, rtol=1e-10)
    # without clipping, alpha_bar_t = f(t)/f(0) exactly where no beta was clipped
    unclipped = np.array([f(t) / f(0) for t in range(1, T + 1)])
    np.testing.assert_allclose(ab.numpy()[:-20], unclipped[:-20], rtol=1e-10)
    assert bool((ab[1:] < ab[:-1]).all())


def test_ddim_grid():
    assert S.ddim_timesteps(4, 10).tolist() == [9, 7, 5, 3]
    assert S.ddim_timesteps(4, 10, spacing="leading").tolist() == [6, 4, 2, 0]
    assert S.ddim_timesteps(50, 1000, "leading").tolist() == list(range(0, 1000, 20))[::-1]
    assert S.ddim_timesteps(1000, 1000).tolist() == list(range(999, -1, -1))
    ab = S.linear_beta_alpha_bar(1000)
    sig = S.ddim_sigmas(10, ab)
    assert sig.shape == (11,) and sig[-1] == 0 and bool((sig[1:] < sig[:-1]).all())
    idx = S.ddim_timesteps(10, 1000)
    np.testing.assert_allclose(sig[:-1].numpy(), np.sqrt((1 - ab[idx].numpy()) / ab[idx].numpy()), rtol=1e-12)
    with pytest.raises(ValueError, match="num_steps"):
        S.ddim_timesteps(0)
    with pytest.raises(ValueError, match="num_steps"):
        S.ddim_timesteps(2000, 1000)
    with pytest.raises(ValueError, match="spacing"):
        S.ddim_timesteps(10, spacing="linspace")
