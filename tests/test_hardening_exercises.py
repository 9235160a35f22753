"""Hardening (issue 17), exercise checks: numbers are compared as numbers with a dtype-aware tolerance, and a
checker's own failure is reported as the checker's, not as "your function raised"."""
import math

import torch

from course_lib.exercises import base, ch01, ch03, ch05
from course_lib.softmax import OnlineSoftmax


def test_non_numbers_are_not_correct_numeric_answers():
    good = ch01.check_critical_smoothing(lambda: math.sqrt(2 / math.pi))
    assert good.status == "correct"
    for bad in ("0.7979", f"{math.sqrt(2 / math.pi)}", True, complex(math.sqrt(2 / math.pi), 0.0),
                torch.tensor([math.sqrt(2 / math.pi)] * 2)):
        r = ch01.check_critical_smoothing(lambda bad=bad: bad)
        assert r.status == "wrong", (bad, r)
        assert "number" in r.message and "raised" not in r.message, r.message
    # a 0-d tensor or a NumPy scalar IS a number
    assert ch01.check_critical_smoothing(lambda: torch.tensor(math.sqrt(2 / math.pi))).correct


def test_integer_answers_reject_bools_and_strings():
    ref = ch05.reference_dictionary_size
    assert ch05.check_dictionary_size(ref).correct
    r = ch05.check_dictionary_size(lambda *a: str(ref(*a)))
    assert r.status == "wrong" and "int" in r.message
    assert ch05.check_dictionary_size(lambda *a: True if ref(*a) == 1 else ref(*a)).status == "wrong"


def test_scalar_answers_of_ch03_reject_complex_as_wrong_not_raised():
    def kappa(lam, s, n):
        from course_lib import rmt
        return complex(rmt.silverstein_kappa(lam, s, n).item(), 0.0)

    r = ch03.check_silverstein_kappa(kappa)
    assert r.status == "wrong" and "raised" not in r.message and "number" in r.message, r


def test_compare_rejects_strings_bools_and_complex_tensors():
    ref = torch.tensor([1.0, 2.0], dtype=torch.float64)
    assert base.compare(ref.clone(), ref, "x") is None
    assert "number" in base.compare(["1.0", "2.0"], ref, "x")
    assert "bool" in base.compare(torch.tensor([True, True]), torch.ones(2, dtype=torch.float64), "x")
    assert "complex" in base.compare(ref.to(torch.complex128), ref, "x")


def _float32_accumulator_softmax(logit_chunks, value_chunks):
    """A correct streaming softmax whose accumulators were created as float32 (torch's default dtype)."""
    m = s = acc = None
    for l, v in zip(logit_chunks, value_chunks):
        mc = l.amax(-1).float()
        m_new = mc if m is None else torch.maximum(m, mc)
        w = torch.exp(l - m_new[:, None].double()).float()
        if m is None:
            s, acc = w.sum(-1), w @ v.float()
        else:
            scale = torch.exp(m - m_new)
            s, acc = s * scale + w.sum(-1), acc * scale[:, None] + w @ v.float()
        m = m_new
    return acc / s[:, None]


def test_float32_streaming_softmax_is_judged_at_float32_precision():
    r = ch01.check_streaming_softmax_mean(_float32_accumulator_softmax)
    assert r.correct, r


def test_naive_softmax_still_gets_the_running_max_hint():
    def naive(logit_chunks, value_chunks):
        l, v = torch.cat(logit_chunks, 1), torch.cat(value_chunks, 0)
        w = torch.exp(l)
        return (w @ v) / w.sum(-1, keepdim=True)

    r = ch01.check_streaming_softmax_mean(naive)
    assert r.status == "wrong" and ("running maximum" in r.message or "NaN" in r.message), r


def _check(fn, checker_bug=False):
    """A check in the framework's style: the reader's function is the closure variable ``fn``."""
    def body():
        got = fn(1.0)
        if checker_bug:
            return {}["missing"]  # the checker itself fails after the reader's function returned
        return None if got == 1.0 else f"got {got}"
    return base.run_check("demo", body)


def test_checker_failure_is_reported_as_the_checkers():
    r = _check(lambda x: x, checker_bug=True)
    assert r.status == "checker error" and "your function raised" not in r.message and "KeyError" in r.message
    assert "float" in r.message and not r.correct   # it says what the reader's function returned
    assert _check(lambda x: x).correct


def test_reader_failures_are_still_the_readers():
    def boom(x):
        raise ZeroDivisionError("boom")

    def stub(x):
        raise NotImplementedError

    r = _check(boom)
    assert r.status == "wrong" and "your function raised ZeroDivisionError" in r.message
    assert _check(stub).status == "not attempted"


def test_reference_solutions_still_pass_every_check():
    for mod, names in ((ch01, ("posterior_weights", "streaming_softmax_mean", "kernel_smoothed_score")),):
        for n in names:
            assert getattr(mod, f"check_{n}")(getattr(mod, f"reference_{n}")).correct, n
    osm_fn = ch01.reference_streaming_softmax_mean
    assert isinstance(osm_fn([torch.zeros(1, 2, dtype=torch.float64)], [torch.ones(2, 1, dtype=torch.float64)]),
                      torch.Tensor)
    assert OnlineSoftmax is not None
