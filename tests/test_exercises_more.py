"""The derive / predict-then-run / explain-the-figure exercises of Chapters 0-5 (issue 18): each check accepts
the solution (also as a float32 tensor), rejects a plausible wrong answer and non-numbers ('0.7979', True),
and says "not attempted" for a stub. Plus the chapter-specific rules: Chapter 1's streaming exercise
rejects an answer that collects the chunks, Chapter 3's Monte Carlo exercise a deterministic answer."""
import math

import numpy as np
import pytest
import torch

from course_lib import rmt
from course_lib.exercises import ch00, ch01, ch02, ch03, ch05
from course_lib.exercises.kinds import as_number


def _stub(*args):
    raise NotImplementedError


def _rejects_non_numbers(check, value, nargs=0):
    for bad in (str(value), True, float("nan"), [value]):
        r = check(lambda *a, b=bad: b)
        assert r.status == "wrong", (bad, r)
    assert check(_stub).status == "not attempted"


def test_as_number():
    assert as_number(torch.tensor(0.7979, dtype=torch.float32)) == (pytest.approx(0.7979, rel=1e-6), None)
    assert as_number(np.float32(2.5))[0] == 2.5 and as_number(3)[0] == 3.0
    for bad in ("0.7979", True, np.bool_(True), torch.tensor([1.0, 2.0]), torch.tensor(True), 1j, math.inf, None):
        v, reason = as_number(bad)
        assert v is None and reason, bad


# ------------------------------------------------------------------------------------------ Chapter 0
def test_ch00_edm_coefficients():
    assert ch00.check_edm_coefficients(ch00.reference_edm_coefficients).correct
    from course_lib.nets.precond import edm_coefficients   # the library's implementation agrees

    def via_library(sigma, sd):
        c = edm_coefficients(torch.tensor(sigma, dtype=torch.float32), sd)
        return c[0], c[1]    # float32 tensors are fine
    assert ch00.check_edm_coefficients(via_library).correct
    swapped = lambda sigma, sd: (sigma**2 / (sigma**2 + sd**2), sigma * sd / math.sqrt(sigma**2 + sd**2))
    no_sqrt = lambda sigma, sd: (sd**2 / (sigma**2 + sd**2), sigma * sd / (sigma**2 + sd**2))
    for wrong in (swapped, no_sqrt, lambda s, sd: "0.5"):
        assert ch00.check_edm_coefficients(wrong).status == "wrong"
    assert ch00.check_edm_coefficients(_stub).status == "not attempted"


def test_ch00_predict_posterior_mean():
    right = 0.3 + 0.25 / (0.25 + 0.25) * (1 - 0.3)
    assert ch00.check_predict_posterior_mean(lambda: right).correct
    assert ch00.check_predict_posterior_mean(lambda: torch.tensor(right, dtype=torch.float32)).correct
    assert ch00.check_predict_posterior_mean(lambda: 1.0).status == "wrong"     # no shrinkage
    _rejects_non_numbers(ch00.check_predict_posterior_mean, right)


def test_ch00_explain_mse_floor():
    assert ch00.check_explain_mse_floor(lambda: "a").correct
    assert ch00.check_explain_mse_floor(lambda: "A ").correct
    for wrong in ("b", "c", "d", "e", 1, None):
        assert ch00.check_explain_mse_floor(lambda w=wrong: w).status == "wrong"


# ------------------------------------------------------------------------------------------ Chapter 1
def test_ch01_critical_smoothing_gap():
    assert ch01.check_critical_smoothing_gap(ch01.reference_critical_smoothing_gap).correct
    assert ch01.check_critical_smoothing_gap(lambda d: torch.tensor(d / math.sqrt(2 * math.pi))).correct
    assert ch01.check_critical_smoothing_gap(lambda d: d * math.sqrt(2 / math.pi)).status == "wrong"
    assert ch01.check_critical_smoothing_gap(lambda d: d / 2).status == "wrong"
    _rejects_non_numbers(lambda f: ch01.check_critical_smoothing_gap(lambda d: f()), 0.7979)


def test_ch01_predict_n_eff():
    assert ch01.check_predict_n_eff(lambda N: N).correct
    assert ch01.check_predict_n_eff(lambda N: np.float32(N)).correct
    assert ch01.check_predict_n_eff(lambda N: 1).status == "wrong"
    assert ch01.check_predict_n_eff(lambda N: math.log(N)).status == "wrong"
    _rejects_non_numbers(lambda f: ch01.check_predict_n_eff(lambda N: f()), 50)


def test_ch01_explain_novelty():
    assert ch01.check_explain_novelty_residual(lambda: "a").correct
    assert ch01.check_explain_novelty_residual(lambda: "b").status == "wrong"


def test_ch01_streaming_rejects_collecting_the_chunks():
    def collect_then_softmax(logit_chunks, value_chunks):   # exact, but holds every chunk at once
        ls, vs = [], []
        for l, v in zip(logit_chunks, value_chunks):
            ls.append(l)
            vs.append(v)
        return torch.softmax(torch.cat(ls, 1), 1) @ torch.cat(vs, 0)

    r = ch01.check_streaming_softmax_mean(collect_then_softmax)
    assert r.status == "wrong" and "not streaming" in r.message
    assert ch01.check_streaming_softmax_mean(ch01.reference_streaming_softmax_mean).correct


# ------------------------------------------------------------------------------------------ Chapter 2
def test_ch02_half_crossing():
    assert ch02.check_half_crossing(ch02.reference_half_crossing).correct
    assert ch02.check_half_crossing(lambda lam: torch.tensor(3 * lam, dtype=torch.float64)).correct
    for wrong in (lambda lam: lam / 3, lambda lam: lam, lambda lam: 2 * lam):
        assert ch02.check_half_crossing(wrong).status == "wrong"
    _rejects_non_numbers(lambda f: ch02.check_half_crossing(lambda lam: f()), 2.1)


def test_ch02_predict_far_field_slope():
    assert ch02.check_predict_far_field_slope(lambda: -6).correct
    assert ch02.check_predict_far_field_slope(lambda: torch.tensor(-6.0, dtype=torch.float32)).correct
    r = ch02.check_predict_far_field_slope(lambda: -2.0)     # the fixed-x relative rate, not the FSE here
    assert r.status == "wrong" and "FIXED" in r.message
    _rejects_non_numbers(ch02.check_predict_far_field_slope, -6)


def test_ch02_explain_spectral_bias():
    assert ch02.check_explain_spectral_bias(lambda: "a").correct
    assert ch02.check_explain_spectral_bias(lambda: "b").status == "wrong"


# ------------------------------------------------------------------------------------------ Chapter 3
def test_ch03_mp_kappa():
    assert ch03.check_mp_kappa(ch03.reference_mp_kappa).correct

    def other_root(lam, gamma):
        b = 1 - gamma - lam
        return (-b - math.sqrt(b * b + 4 * lam)) / 2

    def via_solver(lam, gamma):   # the general Silverstein solver with Sigma = I agrees (float32 answer)
        return rmt.silverstein_kappa(lam, torch.ones(400, dtype=torch.float64), 400 / gamma).float()

    assert ch03.check_mp_kappa(via_solver).correct
    assert ch03.check_mp_kappa(other_root).status == "wrong"
    assert ch03.check_mp_kappa(lambda lam, gamma: lam).status == "wrong"     # no renormalisation
    _rejects_non_numbers(lambda f: ch03.check_mp_kappa(lambda lam, gamma: f()), 0.4)


def test_ch03_predict_split_ratio():
    assert ch03.check_predict_split_ratio(lambda: 4.0).correct
    assert ch03.check_predict_split_ratio(lambda: 2.0).status == "wrong"     # 1/sqrt(n) scaling
    _rejects_non_numbers(ch03.check_predict_split_ratio, 4.0)


def test_ch03_mc_trace_rejects_the_deterministic_equivalent():
    def deterministic(s, n, lam, n_sets, generator):
        return rmt.trace_de(lam, s, n).item()

    r = ch03.check_mc_trace(deterministic)
    assert r.status == "wrong" and "deterministic" in r.message
    assert ch03.check_mc_trace(ch03.reference_mc_trace).correct


def test_ch03_explain_anisotropy():
    assert ch03.check_explain_anisotropy(lambda: "a").correct
    assert ch03.check_explain_anisotropy(lambda: "c").status == "wrong"


# ------------------------------------------------------------------------------------------ Chapter 5
def test_ch05_ls_threshold():
    assert ch05.check_ls_threshold(lambda H: H if H % 2 else H + 1).correct
    assert ch05.check_ls_threshold(lambda H: torch.tensor(H + 1 - H % 2, dtype=torch.float32)).correct
    r = ch05.check_ls_threshold(lambda H: 2 * H - 1)
    assert r.status == "wrong" and "smallest" in r.message
    assert ch05.check_ls_threshold(lambda H: H + 1).status == "wrong"        # wrong for odd H
    _rejects_non_numbers(lambda f: ch05.check_ls_threshold(lambda H: f()), 29)


def test_ch05_predict_els_ls_gap():
    assert ch05.check_predict_els_ls_gap(lambda: 0.0).correct
    assert ch05.check_predict_els_ls_gap(lambda: 0.1).status == "wrong"
    _rejects_non_numbers(ch05.check_predict_els_ls_gap, 0.0)


def test_ch05_explain_scatter():
    assert ch05.check_explain_scatter(lambda: "a").correct
    assert ch05.check_explain_scatter(lambda: "c").status == "wrong"
