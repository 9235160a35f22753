"""Exercise checks of Chapter 2 (the linear lens).

- :func:`check_wiener_denoiser`     ``fn(x, mu, Sigma, sigma) -> (B, d)``: mu + Sigma (Sigma + sigma^2 I)^-1 (x - mu).
- :func:`check_closed_form_path`    ``fn(x_T, mu, lam, U, sigma_T, sigma) -> (B, d)``: the Gaussian PF-ODE
  solution x(sigma) (U is a full orthonormal basis (d, d), lam (d,)).
- :func:`check_power_law_rf`        ``fn(N, A, lam0, sigma) -> (N,)``: the 1-D power-law receptive field.
- :func:`check_mode_learning_curve` ``fn(lam, sigma, eta, tau) -> (K,)``: W_kk(tau) of gradient flow from W = 0.

Each returns a :class:`~course_lib.exercises.base.CheckResult`. Inputs are float64, flattened.
"""
from __future__ import annotations

import math

import torch

from .base import CheckResult, compare, run_check

__all__ = ["check_wiener_denoiser", "check_closed_form_path", "check_power_law_rf", "check_mode_learning_curve",
           "reference_wiener_denoiser", "reference_closed_form_path", "reference_power_law_rf",
           "reference_mode_learning_curve",
           "check_half_crossing", "check_predict_far_field_slope", "check_explain_spectral_bias",
           "reference_half_crossing", "SPECTRAL_BIAS_OPTIONS"]


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _problem(seed, d=8, B=5):
    g = _gen(seed)
    Q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    lam = torch.logspace(1, -2, d, dtype=torch.float64)
    mu = torch.randn(d, generator=g, dtype=torch.float64)
    x = torch.randn(B, d, generator=g, dtype=torch.float64) * 2
    return x, mu, lam, Q


# ----------------------------------------------------------------------------- references
def reference_wiener_denoiser(x, mu, Sigma, sigma):
    """D(x) = mu + Sigma (Sigma + sigma^2 I)^-1 (x - mu), rows of x (B, d)."""
    I = torch.eye(len(mu), dtype=x.dtype)
    return mu + torch.linalg.solve(Sigma + sigma**2 * I, Sigma @ (x - mu).T).T  # Sigma and the inverse commute


def reference_closed_form_path(x_T, mu, lam, U, sigma_T, sigma):
    """x(sigma) = mu + U diag(sqrt((sigma^2 + lam)/(sigma_T^2 + lam))) U^T (x_T - mu)."""
    g = torch.sqrt((sigma**2 + lam) / (sigma_T**2 + lam))
    return mu + ((x_T - mu) @ U) * g @ U.T


def reference_power_law_rf(N, A, lam0, sigma):
    """RF[k] = (1/N)[-sigma^2/(sigma^2 + lam0) + pi c cosh(pi c (1 - |k|/(N/2)))/sinh(pi c)], c = sqrt(A)/sigma,
    at circular offsets k = 0..N-1 (offset k and k - N are the same pixel)."""
    c = math.sqrt(A) / sigma
    k = torch.arange(N, dtype=torch.float64)
    k = torch.minimum(k, N - k)
    return (-sigma**2 / (sigma**2 + lam0) + math.pi * c * torch.cosh(math.pi * c * (1 - k / (N / 2)))
            / math.sinh(math.pi * c)) / N


def reference_mode_learning_curve(lam, sigma, eta, tau):
    """W_kk(tau) = w* (1 - exp(-2 eta tau (sigma^2 + lam))), w* = lam/(lam + sigma^2)."""
    w = lam / (lam + sigma**2)
    return w * (1 - torch.exp(-2 * eta * tau * (sigma**2 + lam)))


# ----------------------------------------------------------------------------- checks
def check_wiener_denoiser(fn) -> CheckResult:
    """``fn(x, mu, Sigma, sigma)`` with x (B, d) must return the Wiener/Gaussian denoiser output (B, d)."""
    def body():
        x, mu, lam, U = _problem(0)
        Sigma = U @ torch.diag(lam) @ U.T
        for sigma in (0.05, 1.0, 20.0):
            why = compare(fn(x.clone(), mu.clone(), Sigma.clone(), sigma),
                          reference_wiener_denoiser(x, mu, Sigma, sigma), f"D(x, sigma={sigma})", rtol=1e-6, atol=1e-8)
            if why:
                return why + " (hint: D = mu + Sigma (Sigma + sigma^2 I)^-1 (x - mu); sigma enters squared)"
    return run_check("wiener_denoiser", body,
                     hint='The posterior mean of a Gaussian prior N(mu, Sigma) under noise sigma^2 I is linear in x.',
                     hint2='D = mu + Sigma (Sigma + sigma^2 I)^-1 (x - mu); use torch.linalg.solve rather than an explicit inverse.')


def check_closed_form_path(fn) -> CheckResult:
    """``fn(x_T, mu, lam, U, sigma_T, sigma)`` must return x(sigma) of the Gaussian PF-ODE (B, d)."""
    def body():
        x, mu, lam, U = _problem(1)
        x_T = 30.0 * x
        for sigma in (10.0, 1.0, 0.01):
            why = compare(fn(x_T.clone(), mu.clone(), lam.clone(), U.clone(), 30.0, sigma),
                          reference_closed_form_path(x_T, mu, lam, U, 30.0, sigma), f"x(sigma={sigma})",
                          rtol=1e-6, atol=1e-8)
            if why:
                return why + " (hint: each PC coordinate scales by sqrt((sigma^2 + lam_k)/(sigma_T^2 + lam_k)))"
    return run_check("closed_form_path", body,
                     hint='In the eigenbasis U of Sigma the PF-ODE decouples into one scalar ODE per mode.',
                     hint2='Coordinate k of U^T (x - mu) scales by sqrt((sigma^2 + lam_k) / (sigma_T^2 + lam_k)).')


def check_power_law_rf(fn) -> CheckResult:
    """``fn(N, A, lam0, sigma)`` must return the (N,) closed-form receptive field at offsets 0..N-1."""
    def body():
        for N, A, lam0, sigma in ((64, 2.0, 5.0, 0.5), (33, 1.0, 1.0, 2.0)):
            why = compare(fn(N, A, lam0, sigma), reference_power_law_rf(N, A, lam0, sigma),
                          f"RF(N={N}, sigma={sigma})", rtol=1e-6, atol=1e-9)
            if why:
                return why + " (hint: c = sqrt(A)/sigma; the -sigma^2/(sigma^2+lam0) term corrects the m = 0 mode)"
    return run_check("power_law_rf", body,
                     hint="Sum the Wiener filter's Fourier factors lam_m / (lam_m + sigma^2) over the modes m.",
                     hint2='With c = sqrt(A) / sigma the sum is pi c cosh(pi c (1 - |k| / (N/2))) / sinh(pi c) / N, minus the m = 0 correction sigma^2 / (sigma^2 + lam0) / N.')


def check_mode_learning_curve(fn) -> CheckResult:
    """``fn(lam, sigma, eta, tau)`` must return W_kk(tau) (K,) for gradient flow started at W = 0."""
    def body():
        lam = torch.logspace(1, -3, 6, dtype=torch.float64)
        for sigma, tau in ((0.1, 3.0), (1.0, 0.2), (0.5, 100.0)):
            why = compare(fn(lam.clone(), sigma, 0.5, tau), reference_mode_learning_curve(lam, sigma, 0.5, tau),
                          f"W_kk(tau={tau}, sigma={sigma})", rtol=1e-6, atol=1e-9)
            if why:
                return why + " (hint: the relaxation rate of mode k is 2 eta (sigma^2 + lam_k))"
    return run_check("mode_learning_curve", body,
                     hint='Each mode k relaxes exponentially from 0 to the Wiener factor lam_k / (lam_k + sigma^2).',
                     hint2='W_kk(tau) = w* (1 - exp(-2 eta tau (sigma^2 + lam_k))).')


# ------------------------------------------------------------------ derive, predict then run, explain the figure
# (issue 18; numeric answers are validated by :func:`course_lib.exercises.kinds.as_number`)
def reference_half_crossing(lam: float) -> float:
    """sqrt(lam / (lam + sigma^2)) = 1/2  <=>  sigma^2 = 3 lam (the sigma_T -> infinity limit)."""
    return 3.0 * lam


def check_half_crossing(fn) -> CheckResult:
    """Derive: ``fn(lam)`` returns the noise variance sigma^2 at which the normalised coefficient
    xi(sigma, lam) sigma_T / sqrt(lam) of a component of variance lam crosses 1/2, for sigma_T -> infinity."""
    from .kinds import as_number

    def body():
        for lam in (0.7, 2.5, 0.01):
            v, reason = as_number(fn(lam), f"sigma^2 for lam={lam}")
            if reason:
                return reason
            if abs(v - 3 * lam) > 1e-6 * lam:
                if abs(v - lam / 3) < 1e-6 * lam:
                    return f"got lam/3 = {v:.4g}: at sigma^2 = lam/3 the coefficient is sqrt(3/4) = 0.87, not 1/2"
                if abs(v - lam) < 1e-6 * lam:
                    return (f"got lam = {v:.4g}: that is where the Wiener factor lam/(lam + sigma^2) is 1/2; the path "
                            f"coefficient is its square root")
                return f"got {v:.4g} for lam={lam}: square sqrt(lam/(lam + sigma^2)) = 1/2 and solve for sigma^2"
        return None
    return run_check("half_crossing", body,
                     hint='For sigma_T -> infinity the normalised coefficient is sqrt(lam / (lam + sigma^2)).',
                     hint2='Square both sides of sqrt(lam / (lam + sigma^2)) = 1/2: the equation is linear in sigma^2.')


def check_predict_far_field_slope(fn) -> CheckResult:
    """Predict, then run: ``fn()`` returns your prediction of the log-log slope of the score FSE between a
    skewed point cloud and its Gaussian fit at test points x_i + sigma z, sigma from 40 to 320. The run
    computes it (float64 machines, :func:`course_lib.linear.score_fse_over_sigma`); within 0.5 is right."""
    from ..denoisers import GaussianDenoiser, IdealDenoiser
    from ..linear import loglog_slope, score_fse_over_sigma
    from .kinds import as_number

    def body():
        v, reason = as_number(fn(), "your predicted slope")
        if reason:
            return reason
        Y = -torch.log(torch.rand(300, 6, generator=_gen(7), dtype=torch.float64)).reshape(300, 1, 1, 6)
        G = GaussianDenoiser.from_data(Y, correction=0, cache=False)
        sig = torch.tensor([40.0, 80.0, 160.0, 320.0])
        fse = score_fse_over_sigma(IdealDenoiser(Y), G, Y[:100], sig, generator=_gen(8)).mean(1)
        run = loglog_slope(sig, fse)
        if abs(v - run) <= 0.5:
            return None
        hint = (" (O(sigma^-2) is the relative gap at a FIXED x; here the points move out with sigma)"
                if abs(v + 2) < 0.5 or abs(v + 4) < 0.5 else "")
        return f"your prediction {v:.3g}; the run gives {run:.2f}{hint}"
    return run_check("predict_far_field_slope", body,
                     hint="Far from the data the mixture's score and its Gaussian fit agree to leading order; the first difference comes from the cloud's skew (third moment).",
                     hint2='The score gap is about m3 / (2 sigma^4) while the score itself has norm about sqrt(d) / sigma; the FSE is the square of their ratio.')


SPECTRAL_BIAS_OPTIONS = {
    "a": "theory only: the closed-form generated variance of a linear denoiser trained by gradient flow on MNIST's spectrum",
    "b": "a measurement on the course's trained MNIST UNet",
    "c": "a measurement on an MLP trained on MNIST",
    "d": "the Monte Carlo average of many gradient-descent runs",
}


def check_explain_spectral_bias(fn) -> CheckResult:
    """Explain the figure (spectral bias, right panel: emergence time against lambda_k): what is plotted?
    ``fn()`` returns a key of :data:`SPECTRAL_BIAS_OPTIONS`."""
    from .kinds import check_choice
    return check_choice("explain_spectral_bias", fn, SPECTRAL_BIAS_OPTIONS, "a", {
        "b": "no network is involved; a UNet, being convolutional, learns many modes at once (exponent near 0)",
        "c": "no MLP is trained in this chapter; MLPs show an attenuated exponent (0.35-0.5 in the paper)",
        "d": "the curves are closed forms (learning.generated_mode_variance), not averages of runs"},
        hint='Read the code cell that draws the panel: which function produces its curves, and does it train anything?',
        hint2="The curves come from learning.generated_mode_variance: read its docstring and the arguments the cell passes to it.")
