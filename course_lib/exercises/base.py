"""The exercise framework (see every chapter's "Exercises" section).

A check function builds test inputs, calls the reader's function through :func:`run_check` and
compares with a reference. The reader's stub raising ``NotImplementedError`` means "not attempted".

Conventions every check follows (and the helpers here enforce):

- the reader's function is the check's argument ``fn`` (``run_check`` finds it in the body's closure
  and tells its exceptions, "your function raised ...", from the checker's own failures, reported as
  status ``"checker error"``, a bug in the course, never blamed on the reader);
- answers are compared as numbers: :func:`compare` (tensors) and :func:`number` / :func:`integer`
  (scalars) reject strings, bools and complex values instead of converting them, and a wrong-type
  answer is "wrong" with the reason (raise :class:`WrongAnswer` from a helper to say so);
- tolerances are dtype-aware: a float32 answer is judged at float32 precision (``rtol`` and ``atol``
  are raised to a few float32 ulps), so a correct float32 implementation is not rejected.
"""
from __future__ import annotations

import html
import json
import numbers
import os
import re
from dataclasses import dataclass
from typing import Callable

import torch

__all__ = ["CheckResult", "run_check", "compare", "number", "integer", "WrongAnswer", "LOG_ENV"]

_STATUSES = {"correct": "#1a7f37", "wrong": "#cf222e", "not attempted": "#6e7781", "checker error": "#9a6700"}
_ULPS = 64  # a float answer may differ from the reference by this many ulps of its own dtype
#: environment variable naming a file to which every check appends one JSON line (set by the runner,
#: ``python -m course_lib.exercises``, and by ``tools/build_book.py``)
LOG_ENV = "COURSE_EXERCISE_LOG"
_WRONG_ATTEMPTS: dict[str, int] = {}  # wrong attempts per check in this kernel: the 2nd shows hint2


class WrongAnswer(Exception):
    """Raised by a check's helper to report a wrong answer (e.g. not a number) with its reason."""


class _ReaderRaised(Exception):
    """Wraps an exception raised inside the reader's function (see :func:`run_check`)."""

    def __init__(self, exc):
        super().__init__(str(exc))
        self.exc = exc


@dataclass
class CheckResult:
    status: str  # "not attempted" | "wrong" | "correct" | "checker error"
    message: str = ""
    name: str = ""
    hint: str = ""   # shown with a wrong answer
    hint2: str = ""  # a second, more explicit hint, shown from the second wrong attempt on

    @property
    def correct(self) -> bool:
        return self.status == "correct"

    def _lines(self) -> list[str]:
        label = f"[{self.name}] " if self.name else ""
        lines = [f"{label}{self.status}" + (f": {self.message}" if self.message else "")]
        if self.status == "wrong" and self.hint:
            lines.append(f"Hint: {self.hint}")
        if self.status == "wrong" and self.hint2:
            lines.append(f"Second hint: {self.hint2}")
        return lines

    def __str__(self):  # plain text: `code` markup printed without its backticks
        return "\n".join(re.sub(r"`([^`]*)`", r"\1", line) for line in self._lines())

    __repr__ = __str__

    def _repr_html_(self):
        color = _STATUSES[self.status]
        code = r'<code style="color:inherit;background:none">\1</code>'  # readable in dark mode too
        lines = [re.sub(r"`([^`]*)`", code, html.escape(line, quote=False)) for line in self._lines()]
        rest = "".join(f"<br>{line}" for line in lines[1:])
        return f'<p style="color:{color}"><b>{lines[0]}</b>{rest}</p>'

    def to_json(self) -> str:
        return json.dumps({"name": self.name, "status": self.status, "message": self.message})


def _describe(v) -> str:
    if isinstance(v, torch.Tensor):
        return f"a {v.dtype} tensor of shape {tuple(v.shape)}"
    return f"{type(v).__name__} {v!r}"[:120]


def number(got, what: str) -> float:
    """``got`` as a real float if it IS a real number (int, float, NumPy scalar, 0-d or 1-element real
    tensor), else raise :class:`WrongAnswer`: a string, a bool or a complex number is not a number answer."""
    v = got
    if isinstance(v, torch.Tensor):
        if v.numel() != 1 or v.is_complex() or v.dtype == torch.bool:
            raise WrongAnswer(f"{what} should be a real number, got {_describe(got)}")
        v = v.item()
    elif type(v).__module__ == "numpy" and getattr(v, "ndim", None) == 0:
        v = v.item()
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise WrongAnswer(f"{what} should be a real number, got {_describe(got)}")
    return float(v)


def integer(got, what: str) -> int:
    """``got`` as an int if it is an integer-valued real number (not a bool or a string), else WrongAnswer."""
    try:
        v = number(got, what)
    except WrongAnswer:
        raise WrongAnswer(f"{what} should be an int, got {_describe(got)}") from None
    if not v == int(v):
        raise WrongAnswer(f"{what} should be an integer, got {got!r}")
    return int(v)


def _precision(dtype: torch.dtype) -> float:
    return torch.finfo(dtype).eps if dtype.is_floating_point else 0.0


def compare(got, expected, what: str, rtol: float = 1e-5, atol: float = 1e-7, hint: str = "") -> str | None:
    """Return None when ``got`` matches ``expected`` (shape and values), else a reason string.

    ``got`` must be a real tensor or something that IS numbers (a NumPy array, a list of numbers):
    strings, bools and complex values are rejected, never converted. The tolerance is dtype-aware:
    ``rtol`` and ``atol`` are raised to 64 ulps of ``got``'s dtype when that is coarser than the
    reference's (a float32 answer to a float64 check). ``hint`` is appended when the values differ.
    """
    if not isinstance(got, torch.Tensor):
        flat = got if isinstance(got, (list, tuple)) else [got]
        try:
            import numpy as np
            arr = np.asarray(got)
            ok = arr.dtype.kind in "iuf" and not any(isinstance(v, (bool, str)) for v in flat)
        except Exception:
            ok = False
        if not ok:
            return f"{what} should be a tensor of numbers of shape {tuple(expected.shape)}, got {_describe(got)}"
        got = torch.as_tensor(arr)
    if got.dtype == torch.bool or got.is_complex():
        return f"{what} should be a real tensor, got {got.dtype} (bool and complex answers are not numbers here)"
    if got.shape != expected.shape:
        return f"{what} has shape {tuple(got.shape)}, expected {tuple(expected.shape)}"
    if not bool(torch.isfinite(got).all()):
        return f"{what} contains NaN or inf" + (f" ({hint})" if hint else "")
    eps = _precision(got.dtype)
    coarser = got.dtype.is_floating_point and eps > _precision(expected.dtype)
    if coarser:
        scale = float(expected.abs().max()) if expected.numel() else 0.0
        rtol, atol = max(rtol, _ULPS * eps), max(atol, _ULPS * eps * scale)
    got = got.to(expected.dtype)
    if not torch.allclose(got, expected, rtol=rtol, atol=atol):
        err = (got - expected).abs().max().item()
        reason = f"{what} differs from the reference by up to {err:.3g}"
        if coarser:
            return (reason + f", more than {got.dtype} rounding explains (your result is {str(got.dtype)[6:]} "
                    f"but the inputs are {str(expected.dtype)[6:]}: compute in the inputs' dtype)")
        return reason + (f" ({hint})" if hint else "")
    return None


def _wrap_reader(body: Callable):
    """Replace the closure variable ``fn`` of ``body`` (the reader's function) by a wrapper that marks
    its exceptions; return a function restoring it (a no-op when there is no ``fn``)."""
    names = body.__code__.co_freevars
    if "fn" not in names or body.__closure__ is None:
        return None
    cell = body.__closure__[names.index("fn")]
    reader = cell.cell_contents
    if not callable(reader):
        return None
    info = {}

    def wrapped(*args, **kwargs):
        try:
            out = reader(*args, **kwargs)
        except NotImplementedError:
            raise
        except Exception as exc:
            raise _ReaderRaised(exc) from exc
        info["last"] = out
        return out

    cell.cell_contents = wrapped

    def restore():
        cell.cell_contents = reader
        return info
    return restore


def run_check(name: str, body: Callable[[], str | None], hint: str = "", hint2: str = "") -> CheckResult:
    """Run ``body()``, which calls the reader's function and returns None (correct) or a reason.

    ``NotImplementedError`` from the reader's stub becomes "not attempted"; an exception raised by the
    reader's function (the body's closure variable ``fn``) becomes "wrong" with the exception in the
    message, and :class:`WrongAnswer` "wrong" with its reason. Any other exception is the checker's
    own failure: status "checker error", with what the reader's function last returned. A wrong answer
    shows ``hint``; from the second wrong attempt at the same check on, also ``hint2``. When the
    environment variable ``COURSE_EXERCISE_LOG`` names a file, the result is appended to it as a JSON
    line (this is how ``python -m course_lib.exercises`` collects results).
    """
    restore = _wrap_reader(body)
    try:
        reason = body()
        status = "correct" if reason is None else "wrong"
    except NotImplementedError:
        status, reason = "not attempted", "replace the `raise NotImplementedError` with your code"
    except _ReaderRaised as e:  # the reader's code failed: report it as a wrong answer
        status, reason = "wrong", f"your function raised {type(e.exc).__name__}: {e.exc}"
    except WrongAnswer as e:
        status, reason = "wrong", str(e)
    except Exception as exc:
        if restore is None:  # no `fn` to tell the reader's code from the checker's: blame neither wrongly
            status, reason = "wrong", (f"the check failed with {type(exc).__name__}: {exc} (your function, or "
                                       f"what it returned, may have caused it)")
        else:
            last = restore().get("last", "<nothing>")
            restore = None
            status, reason = "checker error", (
                f"the check itself failed with {type(exc).__name__}: {exc}; your function returned "
                f"{_describe(last)}. If that looks right, this is a bug in the course's check, not in your code")
    finally:
        if restore is not None:
            restore()
    res = CheckResult(status, reason or "", name)
    if status == "wrong":
        _WRONG_ATTEMPTS[name] = _WRONG_ATTEMPTS.get(name, 0) + 1
        res.hint = hint
        res.hint2 = hint2 if _WRONG_ATTEMPTS[name] >= 2 else ""
    if os.environ.get(LOG_ENV):
        with open(os.environ[LOG_ENV], "a") as f:
            f.write(res.to_json() + "\n")
    return res
