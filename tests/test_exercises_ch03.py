"""Chapter 3 exercise checks: accept the reference, say "not attempted" for a stub, reject plausible mistakes."""
import torch

from course_lib import rmt
from course_lib.exercises import ch03


def _stub(*args):
    raise NotImplementedError


def test_silverstein_kappa():
    assert ch03.check_silverstein_kappa(ch03.reference_silverstein_kappa).correct
    assert ch03.check_silverstein_kappa(lambda lam, s, n: rmt.silverstein_kappa(lam, s, n).item()).correct
    assert ch03.check_silverstein_kappa(_stub).status == "not attempted"

    def no_renormalisation(lam, s, n):
        return lam

    def gamma_inverted(lam, s, n):
        return ch03.reference_silverstein_kappa(lam, s, len(s) ** 2 / n)   # gamma = n/d

    def unnormalised_trace(lam, s, n):                                   # forgot the 1/d of tr
        return ch03.reference_silverstein_kappa(lam, s, n / len(s))

    for wrong in (no_renormalisation, gamma_inverted, unnormalised_trace):
        r = ch03.check_silverstein_kappa(wrong)
        assert r.status == "wrong", wrong.__name__


def test_overshrinkage():
    assert ch03.check_overshrinkage(ch03.reference_overshrinkage).correct
    assert ch03.check_overshrinkage(_stub).status == "not attempted"

    def population_filter(sigma, s, n):
        return s / (s + sigma**2)

    def sigma_not_squared(sigma, s, n):
        return s / (s + rmt.silverstein_kappa(sigma, s, n))

    for wrong in (population_filter, sigma_not_squared):
        assert ch03.check_overshrinkage(wrong).status == "wrong", wrong.__name__


def test_two_point_variance():
    assert ch03.check_two_point_variance(ch03.reference_two_point_variance).correct
    assert ch03.check_two_point_variance(_stub).status == "not attempted"

    def slides_only(v, w, sigma, s, n):
        return rmt.two_point_variance(v, w, sigma, s, n, real=False).item()

    def no_renormalisation(v, w, sigma, s, n):                          # kappa -> sigma^2, n - df2 -> n
        m = s / (s + sigma**2) ** 2
        return (sigma**4 / n * ((v * m * v).sum() * (w * m * w).sum() + (v * m * w).sum() ** 2)).item()

    for wrong in (slides_only, no_renormalisation):
        assert ch03.check_two_point_variance(wrong).status == "wrong", wrong.__name__


def test_mc_trace():
    assert ch03.check_mc_trace(ch03.reference_mc_trace).correct
    assert ch03.check_mc_trace(_stub).status == "not attempted"

    def population_trace(s, n, lam, n_sets, generator):                # no sampling at all
        return (s / (s + lam)).mean().item()

    def forgot_divide_by_n(s, n, lam, n_sets, generator):
        X = torch.randn(n_sets, n, len(s), generator=generator, dtype=torch.float64) * s.sqrt()
        ell = torch.linalg.eigvalsh(X.transpose(1, 2) @ X)
        return (ell / (ell + lam)).mean().item()

    for wrong in (population_trace, forgot_divide_by_n):
        assert ch03.check_mc_trace(wrong).status == "wrong", wrong.__name__
