"""Exercise checks of Chapter 3 (random-matrix theory of consistency).

- :func:`check_silverstein_kappa`   ``fn(lam, s, n) -> float``: the renormalised ridge kappa(lam).
- :func:`check_overshrinkage`       ``fn(sigma, s, n) -> (d,)``: s_k / (s_k + kappa(sigma^2)).
- :func:`check_two_point_variance`  ``fn(v, w, sigma, s, n) -> float``: Var over training sets of v^T D(x).
- :func:`check_mc_trace`            ``fn(s, n, lam, n_sets, generator) -> float``: a Monte Carlo estimate
  of E tr[Sigma_hat (Sigma_hat + lam I)^-1] (tr = Tr/d, Sigma_hat = X^T X / n, X ~ N(0, diag(s))).

Each returns a :class:`~course_lib.exercises.base.CheckResult`; ``s`` is a float64 spectrum (d,),
vectors are float64 coordinates in the population eigenbasis.
"""
from __future__ import annotations

import math

import torch

from .. import rmt, rmt_mc
from .base import CheckResult, compare, number, run_check

__all__ = ["check_silverstein_kappa", "check_overshrinkage", "check_two_point_variance", "check_mc_trace",
           "reference_silverstein_kappa", "reference_overshrinkage", "reference_two_point_variance",
           "reference_mc_trace",
           "check_mp_kappa", "check_predict_split_ratio", "check_explain_anisotropy", "reference_mp_kappa",
           "ANISOTROPY_OPTIONS"]

F64 = torch.float64


# ----------------------------------------------------------------------------- references
def reference_silverstein_kappa(lam, s, n):
    """Bisection on g(kappa) = kappa (1 - sum_k s_k/(s_k + kappa) / n) = lam over [lam, lam + sum(s)/n]."""
    lo, hi = float(lam), float(lam) + float(s.sum()) / n
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if mid * (1 - (s / (s + mid)).sum().item() / n) < lam:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def reference_overshrinkage(sigma, s, n):
    """s_k / (s_k + kappa(sigma^2)): the factors of the training-set-averaged Wiener filter."""
    return s / (s + reference_silverstein_kappa(sigma**2, s, n))


def reference_two_point_variance(v, w, sigma, s, n):
    """kappa^2/(n - df2) [diamond(v) diamond(w) + diamond(v, w)^2], kappa = kappa(sigma^2)."""
    k = reference_silverstein_kappa(sigma**2, s, n)
    m = s / (s + k) ** 2
    df2 = (s * s / (s + k) ** 2).sum()
    return (k**2 / (n - df2) * ((v * m * v).sum() * (w * m * w).sum() + (v * m * w).sum() ** 2)).item()


def reference_mc_trace(s, n, lam, n_sets, generator):
    """Average over n_sets data sets of tr[Sigma_hat (Sigma_hat + lam)^-1] via the eigenvalues of Sigma_hat."""
    X = torch.randn(n_sets, n, len(s), generator=generator, dtype=F64) * s.sqrt()
    ell = torch.linalg.eigvalsh(X.transpose(1, 2) @ X / n)
    return (ell / (ell + lam)).mean().item()


# ----------------------------------------------------------------------------- checks
def _spectrum(d=40, alpha=1.2):
    return rmt_mc.power_law_spectrum(d, alpha)


def _scalar(got, what):
    return number(got, what)


def check_silverstein_kappa(fn) -> CheckResult:
    """``fn(lam, s, n)`` must return kappa(lam) solving kappa - lam = (d/n) kappa tr[Sigma (Sigma + kappa)^-1]."""
    def body():
        s = _spectrum()
        for lam, n in [(0.05, 12), (0.5, 80), (1e-3, 25), (0.0, 20)]:
            got = _scalar(fn(lam, s.clone(), n), "kappa")
            ref = rmt.silverstein_kappa(lam, s, n).item()
            if not math.isfinite(got) or abs(got - ref) > 1e-7 * max(ref, 1e-12):
                hint = (" (hint: kappa >= lam; for lam = 0 and d > n take the positive root, df1(kappa) = n)"
                        if lam == 0 else " (hint: gamma = d/n and tr is the normalised trace Tr/d)")
                return f"kappa(lam={lam}, n={n}) = {got:.6g}, expected {ref:.6g}" + hint
    return run_check("silverstein_kappa", body,
                     hint='kappa solves kappa - lam = (kappa / n) sum_k s_k / (s_k + kappa), and kappa >= lam.',
                     hint2='The left side minus the right side is increasing in kappa: bisect on [lam, lam + sum(s) / n].')


def check_overshrinkage(fn) -> CheckResult:
    """``fn(sigma, s, n)`` must return the (d,) factors s_k / (s_k + kappa(sigma^2))."""
    def body():
        s = _spectrum()
        for sigma, n in [(0.3, 15), (1.0, 100)]:
            why = compare(fn(sigma, s.clone(), n), rmt.one_point_filter(sigma, s, n), f"factors(sigma={sigma}, n={n})",
                          rtol=1e-7, atol=1e-12)
            if why:
                return why + " (hint: the ridge of the Silverstein equation is lam = sigma^2)"
    return run_check("overshrinkage", body,
                     hint='The averaged Wiener filter is the population filter with sigma^2 replaced by the renormalised ridge kappa.',
                     hint2='factors = s / (s + kappa(sigma^2)), with kappa from the Silverstein equation at lam = sigma^2.')


def check_two_point_variance(fn) -> CheckResult:
    """``fn(v, w, sigma, s, n)`` must return the 2-point deterministic equivalent (with the real-Gaussian term)."""
    def body():
        s = _spectrum()
        g = torch.Generator().manual_seed(5)
        for sigma, n in [(0.3, 30), (0.8, 200)]:
            v = torch.randn(len(s), generator=g, dtype=F64)
            w = torch.randn(len(s), generator=g, dtype=F64) * s.sqrt() + 2 * v   # correlated with v
            got = _scalar(fn(v.clone(), w.clone(), sigma, s.clone(), n), "the variance")
            ref = rmt.two_point_variance(v, w, sigma, s, n).item()
            if not math.isfinite(got) or abs(got - ref) > 1e-7 * ref:
                return (f"Var(sigma={sigma}, n={n}) = {got:.6g}, expected {ref:.6g} (hint: kappa^2/(n - df2(kappa)) "
                        f"times diamond(v) diamond(w) PLUS diamond(v, w)^2, with diamond(a, b) = a^T Sigma "
                        f"(Sigma + kappa)^-2 b)")
    return run_check("two_point_variance", body,
                     hint='The variance is a product of the one-point diamonds plus a squared cross term.',
                     hint2='kappa^2 / (n - df2(kappa)) * (diamond(v) diamond(w) + diamond(v, w)^2), diamond(a, b) = a^T Sigma (Sigma + kappa)^-2 b.')


def check_mc_trace(fn) -> CheckResult:
    """``fn(s, n, lam, n_sets, generator)``: Monte Carlo E tr[Sigma_hat (Sigma_hat + lam)^-1], judged against the
    deterministic equivalent with a tolerance of 4 standard errors plus the O(1/d) finite-size bias 0.5/d."""
    def body():
        s, n, n_sets = _spectrum(60), 30, 200
        for lam in (0.02, 0.5):
            got = _scalar(fn(s.clone(), n, lam, n_sets, torch.Generator().manual_seed(1)), "the estimate")
            per_set = []
            g = torch.Generator().manual_seed(2)
            for _ in range(20):   # the standard error of one set's trace, from an independent reference run
                per_set.append(reference_mc_trace(s, n, lam, 1, g))
            se = torch.tensor(per_set).std().item() / math.sqrt(n_sets)
            de = rmt.trace_de(lam, s, n).item()
            if not math.isfinite(got) or abs(got - de) > 4 * se + 0.5 / len(s) * de:
                return (f"estimate {got:.5g} for lam={lam} is far from the deterministic equivalent {de:.5g} "
                        f"(hint: Sigma_hat = X^T X / n with X (n, d) drawn with variances s; tr = Tr/d)")
        # Monte Carlo is asked: two generators must give two (slightly) different estimates
        a, b = (_scalar(fn(s.clone(), n, 0.5, 8, torch.Generator().manual_seed(k)), "the estimate") for k in (11, 12))
        if a == b:
            return ("the same value for two different generators: this is a deterministic formula (e.g. the "
                    "deterministic equivalent), not a Monte Carlo estimate; draw the training sets with `generator`")
        return None
    return run_check("mc_trace", body,
                     hint='Draw n_sets data sets X of shape (n, d) with column variances s, and average the normalised trace.',
                     hint2='Sigma_hat = X^T X / n; tr[Sigma_hat (Sigma_hat + lam)^-1] / d is the mean of ell / (ell + lam) over its eigenvalues ell.')


# ------------------------------------------------------------------ derive, predict then run, explain the figure
# (issue 18; numeric answers are validated by :func:`course_lib.exercises.kinds.as_number`)
def reference_mp_kappa(lam: float, gamma: float) -> float:
    """Sigma = I: kappa - lam = gamma kappa / (1 + kappa)  <=>  kappa^2 + (1 - gamma - lam) kappa - lam = 0,
    the root that is >= lam."""
    b = 1 - gamma - lam
    return (-b + math.sqrt(b * b + 4 * lam)) / 2


def check_mp_kappa(fn) -> CheckResult:
    """Derive: ``fn(lam, gamma)`` returns kappa(lam) for Sigma = I and gamma = d/n (Marchenko-Pastur)."""
    from .kinds import as_number

    def body():
        for lam, gamma in ((0.1, 0.5), (0.5, 2.0), (1e-3, 4.0), (2.0, 0.25)):
            v, reason = as_number(fn(lam, gamma), f"kappa for lam={lam}, gamma={gamma}")
            if reason:
                return reason
            ref = rmt.marchenko_pastur_kappa(torch.tensor(lam, dtype=F64), gamma).item()
            if abs(v - ref) > 1e-6 * max(ref, 1e-3):
                b = 1 - gamma - lam
                if abs(v - (-b - math.sqrt(b * b + 4 * lam)) / 2) < 1e-6:
                    return f"got the negative root {v:.4g}; kappa must be >= lam > 0"
                return (f"got {v:.4g} for lam={lam}, gamma={gamma}, expected {ref:.4g}: with Sigma = I, "
                        f"df1(kappa) = d/(1 + kappa); write the Silverstein equation as a quadratic")
        return None
    return run_check("mp_kappa", body,
                     hint='With Sigma = I every eigenvalue is 1, so df1(kappa) = d / (1 + kappa) and the Silverstein equation becomes algebraic.',
                     hint2='Multiply kappa - lam = gamma kappa / (1 + kappa) out into a quadratic in kappa and keep the root that is >= lam.')


def check_predict_split_ratio(fn) -> CheckResult:
    """Predict, then run: ``fn()`` returns your prediction of the ratio of the predicted split-to-split
    distances of the Wiener sampler at n = 1000 and at n = 4000 (power-law spectrum s_k ~ 1/k, d = 100).
    The run evaluates :func:`course_lib.rmt.split_distance_theory`; within 10% is right."""
    from .kinds import check_number

    def run():
        s = rmt_mc.power_law_spectrum(100, 1.0)
        return (rmt.split_distance_theory(s, 1000, n_nodes=81) / rmt.split_distance_theory(s, 4000, n_nodes=81)).item()
    return check_number("predict_split_ratio", fn, run, rtol=0.1, what="your predicted ratio",
                        note="how does a variance of an average scale with n?", inline_hint=False,
                        hint='The split-to-split distance is a variance over independently drawn training sets: how does such a variance scale with n?',
                        hint2='The prefactor kappa^2 / (n - df2(kappa)) sets the scaling, and kappa barely moves between n = 1000 and n = 4000: compare 1/n at the two sizes.')


ANISOTROPY_OPTIONS = {
    "a": "along the top principal components: their coefficients vary most between splits",
    "b": "uniformly over all principal components",
    "c": "along the lowest-variance components, which the splits estimate worst",
    "d": "only in the mean image; the covariance of two large splits is the same",
}


def check_explain_anisotropy(fn) -> CheckResult:
    """Explain the figure (anisotropy): where does the split-to-split difference of the Wiener samples
    live? ``fn()`` returns a key of :data:`ANISOTROPY_OPTIONS`."""
    from .kinds import check_choice
    return check_choice("explain_anisotropy", fn, ANISOTROPY_OPTIONS, "a", {
        "b": "the measured squared difference per PC falls over orders of magnitude with k",
        "c": "low-variance PCs are badly estimated, but the sampler multiplies them by sqrt(s_k), which is small",
        "d": "the mean's fluctuation is one term (Tr Sigma / n); the covariance term dominates the top PCs"},
        hint='Look at the per-component squared difference in the figure: at which end of the k axis is it largest?',
        hint2='The sampler multiplies each principal coefficient by sqrt(s_k): an estimation error in a low-variance component is scaled down, one in a top component is not.')
