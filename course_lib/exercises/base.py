"""The exercise framework (see every chapter's "Exercises" section).

A check function builds test inputs, calls the reader's function through :func:`run_check` and
compares with a reference. The reader's stub raising ``NotImplementedError`` means "not attempted".
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

__all__ = ["CheckResult", "run_check", "compare"]


@dataclass
class CheckResult:
    status: str  # "not attempted" | "wrong" | "correct"
    message: str = ""
    name: str = ""

    @property
    def correct(self) -> bool:
        return self.status == "correct"

    def __str__(self):
        head = {"correct": "correct", "wrong": "wrong", "not attempted": "not attempted"}[self.status]
        label = f"[{self.name}] " if self.name else ""
        return f"{label}{head}" + (f": {self.message}" if self.message else "")

    __repr__ = __str__

    def _repr_html_(self):
        color = {"correct": "#1a7f37", "wrong": "#cf222e", "not attempted": "#6e7781"}[self.status]
        return f'<p style="color:{color}"><b>{self}</b></p>'


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


def run_check(name: str, body: Callable[[], str | None]) -> CheckResult:
    """Run ``body()``, which calls the reader's function and returns None (correct) or a reason.

    ``NotImplementedError`` from the reader's stub becomes "not attempted"; any other exception
    raised by the reader's code becomes "wrong" with the exception in the message.
    """
    try:
        reason = body()
    except NotImplementedError:
        return CheckResult("not attempted", "replace the `raise NotImplementedError` with your code", name)
    except Exception as exc:  # the reader's code failed: report it as a wrong answer
        return CheckResult("wrong", f"your function raised {type(exc).__name__}: {exc}", name)
    if reason is None:
        return CheckResult("correct", "", name)
    return CheckResult("wrong", reason, name)
