"""Chapter 7 exercise checks: accept the reference and hand-written solutions, reject plausible mistakes."""
import math


from course_lib.exercises import ch07


def _stub(*args):
    raise NotImplementedError


def test_transition_point():
    assert ch07.check_transition_point(ch07.reference_transition_point).correct

    def by_hand(Ns, values, level):
        for i, v in enumerate(values):
            if v >= level:
                if i == 0:
                    return Ns[0]
                t = (level - values[i - 1]) / (v - values[i - 1])
                return math.exp(math.log(Ns[i - 1]) + t * (math.log(Ns[i]) - math.log(Ns[i - 1])))
        return float("nan")

    assert ch07.check_transition_point(by_hand).correct
    assert ch07.check_transition_point(_stub).status == "not attempted"

    def linear_in_n(Ns, values, level):
        for i, v in enumerate(values):
            if v >= level:
                if i == 0:
                    return Ns[0]
                t = (level - values[i - 1]) / (v - values[i - 1])
                return Ns[i - 1] + float(t) * (Ns[i] - Ns[i - 1])

    assert ch07.check_transition_point(linear_in_n).status == "wrong"


def test_wiener_effective_dimension():
    assert ch07.check_wiener_effective_dimension(ch07.reference_wiener_effective_dimension).correct
    assert ch07.check_wiener_effective_dimension(lambda lam, s: float((lam / (lam + s * s)).sum())).correct
    assert ch07.check_wiener_effective_dimension(_stub).status == "not attempted"
    assert ch07.check_wiener_effective_dimension(lambda lam, s: int((lam > s * s).sum())).status == "wrong"
    assert ch07.check_wiener_effective_dimension(lambda lam, s: float((lam / (lam + s)).sum())).status == "wrong"


def test_subspace_overlap():
    assert ch07.check_subspace_overlap(ch07.reference_subspace_overlap).correct
    assert ch07.check_subspace_overlap(lambda A, B: float((A.T @ B).pow(2).sum() / A.shape[1])).correct
    assert ch07.check_subspace_overlap(_stub).status == "not attempted"
    assert ch07.check_subspace_overlap(lambda A, B: float((A.T @ B).norm() / A.shape[1])).status == "wrong"
    assert ch07.check_subspace_overlap(lambda A, B: float((A.T @ B).pow(2).sum() / A.shape[0])).status == "wrong"
    assert ch07.check_subspace_overlap(lambda A, B: "0.5").status == "wrong"
