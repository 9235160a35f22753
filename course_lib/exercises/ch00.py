"""Exercise checks of Chapter 0 (intro and notation).

- :func:`check_vp_to_ve`      ``fn(x_t, alpha_bar) -> (x, sigma)``: a VP (DDPM) point in the VE convention.
- :func:`check_tweedie`       ``fn(x, sigma, score) -> x0_hat``: Tweedie's formula, denoiser from score.
- :func:`check_euler_step`    ``fn(D, x, sigma, sigma_next) -> x_next``: one Euler step of the PF-ODE.

Each returns a :class:`~course_lib.exercises.base.CheckResult`.
"""
from __future__ import annotations

import torch

from ..denoisers.base import FunctionDenoiser
from ..schedules import alpha_bar_to_sigma, vp_to_ve
from ..tweedie import gaussian_denoiser_1d, gaussian_score_1d, posterior_mean_monte_carlo
from .base import CheckResult, compare, run_check

__all__ = ["check_vp_to_ve", "check_tweedie", "check_euler_step", "reference_vp_to_ve",
           "reference_tweedie", "reference_euler_step"]


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------------------- references
def reference_vp_to_ve(x_t: torch.Tensor, alpha_bar: torch.Tensor):
    """x = x_t / sqrt(alpha_bar), sigma = sqrt((1 - alpha_bar) / alpha_bar)."""
    return vp_to_ve(x_t, alpha_bar), alpha_bar_to_sigma(alpha_bar).to(x_t.dtype)


def reference_tweedie(x: torch.Tensor, sigma: float, score: torch.Tensor) -> torch.Tensor:
    """E[x0 | x] = x + sigma^2 score."""
    return x + sigma**2 * score


def reference_euler_step(D, x: torch.Tensor, sigma: float, sigma_next: float) -> torch.Tensor:
    """x_next = x + (sigma_next - sigma) (x - D(x, sigma)) / sigma   (dx/dsigma = (x - D) / sigma)."""
    return x + (sigma_next - sigma) * (x - D(x, sigma)) / sigma


# ----------------------------------------------------------------------------- checks
def check_vp_to_ve(fn) -> CheckResult:
    """``fn(x_t, alpha_bar)`` with x_t (B, C, H, W) and alpha_bar (B,) must return ``(x, sigma)``:
    the VE point x = x0 + sigma * eps carrying the same x0 and eps, and sigma of shape (B,)."""
    def body():
        g = _gen(0)
        x0 = torch.rand(4, 1, 5, 5, generator=g, dtype=torch.float64) * 2 - 1
        eps = torch.randn(4, 1, 5, 5, generator=g, dtype=torch.float64)
        ab = torch.tensor([0.999, 0.7, 0.2, 0.004], dtype=torch.float64)
        x_t = ab.sqrt().view(-1, 1, 1, 1) * x0 + (1 - ab).sqrt().view(-1, 1, 1, 1) * eps
        out = fn(x_t.clone(), ab.clone())
        if not isinstance(out, (tuple, list)) or len(out) != 2:
            return "return a pair (x, sigma)"
        x, sigma = out
        x_ref, sigma_ref = reference_vp_to_ve(x_t, ab)
        if (r := compare(sigma, sigma_ref, "sigma", rtol=1e-6)) is not None:
            return r + " (sigma^2 should be the noise-to-signal ratio (1 - alpha_bar) / alpha_bar)"
        if (r := compare(x, x_ref, "x", rtol=1e-6, atol=1e-9)) is not None:
            return r + " (the VE point must equal x0 + sigma * eps for the same x0 and eps)"
        return compare(x, x0 + sigma_ref.view(-1, 1, 1, 1) * eps, "x - (x0 + sigma eps)", rtol=1e-6, atol=1e-9)

    return run_check("vp_to_ve", body,
                     hint='Write x_t = sqrt(alpha_bar) (x0 + sigma eps) and read off sigma.',
                     hint2='sigma = sqrt((1 - alpha_bar) / alpha_bar) and x = x_t / sqrt(alpha_bar); reshape alpha_bar to (B, 1, 1, 1) to broadcast.')


def check_tweedie(fn) -> CheckResult:
    """``fn(x, sigma, score)`` with a float sigma and the score tensor grad log p_sigma(x) must return
    the posterior mean E[x0 | x]; checked on a Gaussian prior N(0.3, 0.5) where both are known."""
    def body():
        x = torch.linspace(-3, 3, 13, dtype=torch.float64).reshape(1, 1, 1, 13)
        for sigma in (0.2, 1.0, 4.0):
            score = gaussian_score_1d(x, sigma, mu=0.3, var=0.5)
            got = fn(x.clone(), sigma, score.clone())
            if (r := compare(got, gaussian_denoiser_1d(x, sigma, mu=0.3, var=0.5), f"x0_hat at sigma={sigma}",
                             rtol=1e-6, atol=1e-9)) is not None:
                return r + " (the score points toward the data; its weight is the noise variance)"
        return None

    return run_check("tweedie", body,
                     hint='Tweedie: the posterior mean is x plus a multiple of the score.',
                     hint2='E[x0 | x] = x + sigma**2 * score.')


def check_euler_step(fn) -> CheckResult:
    """``fn(D, x, sigma, sigma_next)`` must return one Euler step of dx/dsigma = (x - D(x, sigma)) / sigma,
    with D the exact denoiser of four training images; stepping to sigma_next = 0 must land on D(x, sigma)."""
    def body():
        g = _gen(1)
        train = torch.rand(4, 1, 3, 3, generator=g, dtype=torch.float64) * 2 - 1
        D = FunctionDenoiser(lambda x, s: posterior_mean_monte_carlo(x, s, train).mean, name="ideal(4 images)")
        x = 2.0 * torch.randn(3, 1, 3, 3, generator=g, dtype=torch.float64)
        for sigma, sigma_next in ((2.0, 1.2), (0.8, 0.3), (0.5, 0.0)):
            got = fn(D, x.clone(), sigma, sigma_next)
            want = reference_euler_step(D, x, sigma, sigma_next)
            if (r := compare(got, want, f"x_next for sigma {sigma} -> {sigma_next}", rtol=1e-6, atol=1e-9)) is not None:
                hint = " (a step toward sigma=0 must move x toward D(x, sigma))"
                return r + hint
        return None

    return run_check("euler_step", body,
                     hint='The PF-ODE in the VE convention is dx/dsigma = (x - D(x, sigma)) / sigma.',
                     hint2='x_next = x + (sigma_next - sigma) * (x - D(x, sigma)) / sigma.')
