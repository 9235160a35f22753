"""Chapter 0 exercise checks: accept the reference, say "not attempted" for a stub, reject plausible mistakes."""
import torch

from course_lib.exercises import ch00


def _stub(*args):
    raise NotImplementedError


def test_vp_to_ve():
    assert ch00.check_vp_to_ve(ch00.reference_vp_to_ve).status == "correct"

    def solution(x_t, alpha_bar):  # as a reader would write it, from scratch
        sigma = torch.sqrt((1 - alpha_bar) / alpha_bar)
        return x_t / torch.sqrt(alpha_bar).view(-1, 1, 1, 1), sigma

    assert ch00.check_vp_to_ve(solution).correct
    assert ch00.check_vp_to_ve(_stub).status == "not attempted"

    def no_sqrt(x_t, ab):  # sigma^2 mistaken for sigma
        return x_t / ab.sqrt().view(-1, 1, 1, 1), (1 - ab) / ab

    def wrong_scale(x_t, ab):  # multiplied instead of divided
        return x_t * ab.sqrt().view(-1, 1, 1, 1), ((1 - ab) / ab).sqrt()

    def one_value(x_t, ab):
        return x_t / ab.sqrt().view(-1, 1, 1, 1)

    for wrong in (no_sqrt, wrong_scale, one_value):
        res = ch00.check_vp_to_ve(wrong)
        assert res.status == "wrong", (wrong.__name__, res)
    assert "sigma" in ch00.check_vp_to_ve(no_sqrt).message


def test_tweedie():
    assert ch00.check_tweedie(ch00.reference_tweedie).correct
    assert ch00.check_tweedie(_stub).status == "not attempted"
    assert ch00.check_tweedie(lambda x, s, score: x - s**2 * score).status == "wrong"  # sign error
    assert ch00.check_tweedie(lambda x, s, score: x + s * score).status == "wrong"  # sigma, not sigma^2
    assert ch00.check_tweedie(lambda x, s, score: s**2 * score).status == "wrong"  # forgot x
    res = ch00.check_tweedie(lambda x, s, score: x + s**2 * score.sum())  # wrong shape
    assert res.status == "wrong"


def test_euler_step():
    assert ch00.check_euler_step(ch00.reference_euler_step).correct

    def via_score(D, x, sigma, sigma_next):  # the same step written with the score: dx/dsigma = -sigma score
        score = (D(x, sigma) - x) / sigma**2
        return x - (sigma_next - sigma) * sigma * score

    assert ch00.check_euler_step(via_score).correct
    assert ch00.check_euler_step(_stub).status == "not attempted"

    def sign_error(D, x, s, sn):
        return x + (s - sn) * (x - D(x, s)) / s

    def score_not_velocity(D, x, s, sn):  # used the score as the velocity
        return x + (sn - s) * (D(x, s) - x) / s**2

    def crashes(D, x, s, sn):
        return D(x)  # missing sigma: the reader's exception becomes "wrong"

    for wrong in (sign_error, score_not_velocity, crashes):
        res = ch00.check_euler_step(wrong)
        assert res.status == "wrong", (wrong.__name__, res)
    assert "raised" in ch00.check_euler_step(crashes).message


def test_check_result_renders():
    res = ch00.check_tweedie(ch00.reference_tweedie)
    assert "correct" in str(res) and "tweedie" in str(res)
    assert "<b>" in res._repr_html_()
