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
           "reference_tweedie", "reference_euler_step",
           "check_edm_coefficients", "check_predict_posterior_mean", "check_explain_mse_floor",
           "reference_edm_coefficients", "MSE_FLOOR_OPTIONS"]


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


# ------------------------------------------------------------------ derive, predict then run, explain the figure
# (issue 18; numeric answers are validated by :func:`course_lib.exercises.kinds.as_number`)
def reference_edm_coefficients(sigma, sigma_data: float = 0.5):
    """(c_skip, c_out) of EDM: c_skip minimises Var[x0 - c_skip (x0 + sigma n)] for Var x0 = sigma_data^2,
    c_out^2 is that minimum (a unit-variance target for the raw network)."""
    s2 = sigma**2 + sigma_data**2
    return sigma_data**2 / s2, sigma * sigma_data / s2**0.5


def check_edm_coefficients(fn) -> CheckResult:
    """``fn(sigma, sigma_data) -> (c_skip, c_out)`` (floats). Judged by the two defining properties:
    c_skip minimises the variance v(c) = (1 - c)^2 sigma_data^2 + c^2 sigma^2 of the residual target,
    and c_out^2 = v(c_skip), so the raw network regresses a unit-variance target."""
    from .kinds import as_number

    def body():
        for sigma, sd in ((0.1, 0.5), (0.5, 0.5), (3.0, 0.5), (2.0, 1.3)):
            out = fn(sigma, sd)
            if not isinstance(out, (tuple, list)) or len(out) != 2:
                return f"return the pair (c_skip, c_out), got {type(out).__name__}"
            (cs, r1), (co, r2) = as_number(out[0], "c_skip"), as_number(out[1], "c_out")
            if r1 or r2:
                return r1 or r2
            v = lambda c: (1 - c) ** 2 * sd**2 + c**2 * sigma**2
            if abs(cs - sd**2 / (sd**2 + sigma**2)) > 1e-6:
                return (f"c_skip = {cs:.4g} at sigma={sigma}, sigma_data={sd} does not minimise the target variance "
                        f"(v({cs:.3g}) = {v(cs):.4g}; set dv/dc = 0)")
            if abs(co**2 - v(cs)) > 1e-6 * max(1.0, v(cs)) or co <= 0:
                return f"c_out = {co:.4g} at sigma={sigma}: the target (x0 - c_skip x)/c_out must have unit variance"
        return None
    return run_check("edm_coefficients", body,
                     hint='Write the variance of the residual target, v(c) = (1 - c)^2 sigma_data^2 + c^2 sigma^2, as a function of c = c_skip and minimise it.',
                     hint2='dv/dc = 0 gives c_skip as a ratio of sigma_data^2 to the total variance sigma^2 + sigma_data^2; c_out is the square root of v at that c_skip.')


def check_predict_posterior_mean(fn, n_draws: int = 200_000, seed: int = 0) -> CheckResult:
    """Predict, then run: ``fn()`` is your prediction of E[x0 | x = 1] for x0 ~ N(0.3, 0.25) at sigma = 0.5.
    The run: a Monte Carlo estimate (self-normalised importance sampling with ``n_draws`` prior draws);
    the prediction must lie within 4 standard errors (+ 1e-3) of it."""
    from ..tweedie import posterior_mean_monte_carlo
    from .kinds import as_number

    def body():
        v, reason = as_number(fn(), "your prediction")
        if reason:
            return reason
        draws = 0.3 + 0.5 * torch.randn(n_draws, 1, generator=_gen(seed), dtype=torch.float64)
        est = posterior_mean_monte_carlo(torch.ones(1, 1, dtype=torch.float64), 0.5, draws)
        m, se = est.mean.item(), est.stderr.item()
        if abs(v - m) <= 4 * se + 1e-3:
            return None
        return (f"your prediction {v:.4g}; the Monte Carlo run gives {m:.4f} +- {se:.4f} (shrink x - mu by "
                f"v / (v + sigma^2))")
    return run_check("predict_posterior_mean", body,
                     hint='Prior and likelihood are both Gaussian, so the posterior mean is a weighted average of the prior mean and the observation.',
                     hint2='E[x0 | x] = mu + v / (v + sigma^2) (x - mu); here mu = 0.3, v = 0.25, sigma = 0.5 and x = 1.')


MSE_FLOOR_OPTIONS = {
    "a": "the exact denoiser returns the training digit nearest to the noisy input; its distance to the test digit sets the floor",
    "b": "float32 rounding error in the softmax",
    "c": "the noise draw z is the same for every sigma",
    "d": "the sampler's discretisation error at small sigma",
}


def check_explain_mse_floor(fn) -> CheckResult:
    """Explain the figure ("Explore" section): why does the MSE of D(x, sigma) to the clean test digit stay
    flat, far above sigma^2, at small sigma? ``fn()`` returns a key of :data:`MSE_FLOOR_OPTIONS`."""
    from .kinds import check_choice
    return check_choice("explain_mse_floor", fn, MSE_FLOOR_OPTIONS, "a", {
        "b": "float32 rounding is ~1e-7 relative; the floor is many orders of magnitude larger",
        "c": "a fixed z only makes the curve smooth; with fresh z the floor is the same",
        "d": "no sampler is involved: the figure evaluates D once per sigma"},
        hint='What does the exact denoiser return when sigma is much smaller than the distance between training digits?',
        hint2='At small sigma the softmax weights sit on one training image; the test digit is not in the training set, so compare the two.')
