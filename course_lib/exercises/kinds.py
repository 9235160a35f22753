"""Exercise kinds beyond "write the function": a numeric answer (derive, or predict then run) and a
multiple-choice answer (explain the figure). Used by the chapter modules' ``check_*`` functions.

A numeric answer must be a real number: a Python int or float, a NumPy scalar or a one-element
floating-point tensor (float32 is fine). Strings such as ``'0.7979'``, booleans, complex numbers,
NaN and inf are rejected with a reason.
"""
from __future__ import annotations

import math
from typing import Callable

from .base import CheckResult, WrongAnswer, number, run_check

__all__ = ["as_number", "check_number", "check_choice"]


def as_number(value, what: str = "the answer") -> tuple[float | None, str | None]:
    """(float, None) for a finite real number (:func:`course_lib.exercises.base.number`), else (None, reason)."""
    try:
        v = number(value, what)
    except WrongAnswer as e:
        return None, str(e)
    if not math.isfinite(v):
        return None, f"{what} should be finite, got {v!r}"
    return v, None


def check_number(name: str, fn: Callable[[], object], expected: float | Callable[[], float], *, rtol: float = 1e-3,
                 atol: float = 0.0, hint: str = "", hint2: str = "", inline_hint: bool = True,
                 wrong: dict | None = None, note: str = "", what: str = "the answer") -> CheckResult:
    """``fn()`` must return a number within ``atol + rtol |expected|`` of ``expected`` (a number, or a
    function computing it: the "run" of a predict-then-run exercise). ``wrong`` maps known wrong values
    to a specific explanation (matched with the same tolerance). ``hint`` and ``hint2`` are forwarded to
    :func:`~course_lib.exercises.base.run_check` (shown after the first and second wrong attempts);
    with ``inline_hint`` (the default) ``hint`` is also appended in parentheses to the generic
    "expected about" message; ``note`` is appended to it in any case. ``what`` names the answer in
    the message when it is not a number."""
    def body():
        v, reason = as_number(fn(), what)
        if reason:
            return reason
        target = float(expected() if callable(expected) else expected)
        close = lambda a, b: abs(a - b) <= atol + rtol * abs(b)
        if close(v, target):
            return None
        for w, why in (wrong or {}).items():
            if close(v, float(w)):
                return f"got {v:.4g}: {why}"
        extra = [t for t in ((hint if inline_hint else ""), note) if t]
        return f"got {v:.4g}, expected about {target:.4g}" + "".join(f" ({t})" for t in extra)
    return run_check(name, body, hint=hint, hint2=hint2)


def check_choice(name: str, fn: Callable[[], object], options: dict, correct: str, feedback: dict | None = None,
                 *, hint: str = "", hint2: str = "") -> CheckResult:
    """``fn()`` returns one key of ``options`` (a letter, case-insensitive). ``feedback`` explains each
    wrong option; the message of a correct answer is empty. ``hint`` and ``hint2`` are forwarded to
    :func:`~course_lib.exercises.base.run_check` (shown after the first and second wrong attempts)."""
    def body():
        v = fn()
        if not isinstance(v, str) or v.strip().lower() not in {k.lower() for k in options}:
            return f"answer with one of {sorted(options)} (a string), got {v!r}"
        v = v.strip().lower()
        if v == correct.lower():
            return None
        key = next(k for k in options if k.lower() == v)
        return (feedback or {}).get(key, f"({key}) is not what the figure shows; look at it again")
    return run_check(name, body, hint=hint, hint2=hint2)
