"""The exercise framework (see every chapter's "Exercises" section).

A check function builds test inputs, calls the reader's function through :func:`run_check` and
compares with a reference. The reader's stub raising ``NotImplementedError`` means "not attempted".
"""
from __future__ import annotations

import html
import json
import os
import re
from dataclasses import dataclass
from typing import Callable

import torch

__all__ = ["CheckResult", "run_check", "compare", "LOG_ENV"]

#: environment variable naming a file to which every check appends one JSON line (set by the runner,
#: ``python -m course_lib.exercises``, and by ``tools/build_book.py``)
LOG_ENV = "COURSE_EXERCISE_LOG"
_WRONG_ATTEMPTS: dict[str, int] = {}  # wrong attempts per check in this kernel: the 2nd shows hint2


@dataclass
class CheckResult:
    status: str  # "not attempted" | "wrong" | "correct"
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
        color = {"correct": "#1a7f37", "wrong": "#cf222e", "not attempted": "#6e7781"}[self.status]
        code = r'<code style="color:inherit;background:none">\1</code>'  # readable in dark mode too
        lines = [re.sub(r"`([^`]*)`", code, html.escape(line, quote=False)) for line in self._lines()]
        rest = "".join(f"<br>{line}" for line in lines[1:])
        return f'<p style="color:{color}"><b>{lines[0]}</b>{rest}</p>'

    def to_json(self) -> str:
        return json.dumps({"name": self.name, "status": self.status, "message": self.message})


def compare(got, expected, what: str, rtol: float = 1e-5, atol: float = 1e-7) -> str | None:
    """Return None when ``got`` matches ``expected`` (shape and values), else a reason string."""
    if not isinstance(got, torch.Tensor):
        try:
            got = torch.as_tensor(got, dtype=expected.dtype)
        except Exception:
            return f"{what} should be a tensor, got {type(got).__name__}"
    if got.shape != expected.shape:
        return f"{what} has shape {tuple(got.shape)}, expected {tuple(expected.shape)}"
    if not bool(torch.isfinite(got).all()):
        return f"{what} contains NaN or inf"
    got = got.to(expected.dtype)
    if not torch.allclose(got, expected, rtol=rtol, atol=atol):
        err = (got - expected).abs().max().item()
        return f"{what} differs from the reference by up to {err:.3g}"
    return None


def run_check(name: str, body: Callable[[], str | None], hint: str = "", hint2: str = "") -> CheckResult:
    """Run ``body()``, which calls the reader's function and returns None (correct) or a reason.

    ``NotImplementedError`` from the reader's stub becomes "not attempted"; any other exception
    raised by the reader's code becomes "wrong" with the exception in the message. A wrong answer
    shows ``hint``; from the second wrong attempt at the same check on, also ``hint2``. When the
    environment variable ``COURSE_EXERCISE_LOG`` names a file, the result is appended to it as a JSON
    line (this is how ``python -m course_lib.exercises`` collects results).
    """
    try:
        reason = body()
        status = "correct" if reason is None else "wrong"
    except NotImplementedError:
        status, reason = "not attempted", "replace the `raise NotImplementedError` with your code"
    except Exception as exc:  # the reader's code failed: report it as a wrong answer
        status, reason = "wrong", f"your function raised {type(exc).__name__}: {exc}"
    res = CheckResult(status, reason or "", name)
    if status == "wrong":
        _WRONG_ATTEMPTS[name] = _WRONG_ATTEMPTS.get(name, 0) + 1
        res.hint = hint
        res.hint2 = hint2 if _WRONG_ATTEMPTS[name] >= 2 else ""
    if os.environ.get(LOG_ENV):
        with open(os.environ[LOG_ENV], "a") as f:
            f.write(res.to_json() + "\n")
    return res
