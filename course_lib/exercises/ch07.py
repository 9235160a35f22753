"""Exercise checks of Chapter 7 (global structure).

- :func:`check_transition_point`   ``fn(Ns, values, level) -> float``: the N where an increasing curve
  (e.g. the cross-network r^2 of the N-sweep) first reaches ``level``, by linear interpolation in log N.
- :func:`check_wiener_effective_dimension` ``fn(lam, sigma) -> float``: tr J of the Wiener filter,
  sum_k lam_k / (lam_k + sigma^2).
- :func:`check_subspace_overlap`   ``fn(A, B) -> float``: |A^T B|_F^2 / k for orthonormal A, B (d, k).

Each returns a :class:`~course_lib.exercises.base.CheckResult`. Inputs are float64.
"""
from __future__ import annotations

import math

import torch

from ..global_structure import crossing, effective_dimension, subspace_overlap
from .base import CheckResult, WrongAnswer, number, run_check

__all__ = ["check_transition_point", "check_wiener_effective_dimension", "check_subspace_overlap",
           "reference_transition_point", "reference_wiener_effective_dimension", "reference_subspace_overlap"]


# ----------------------------------------------------------------------------- references
def reference_transition_point(Ns, values, level):
    """:func:`course_lib.global_structure.crossing`."""
    return crossing(Ns, values, level)


def reference_wiener_effective_dimension(lam, sigma):
    """tr U diag(lam / (lam + sigma^2)) U^T = sum_k lam_k / (lam_k + sigma^2)."""
    return effective_dimension(lam / (lam + sigma**2))


def reference_subspace_overlap(A, B):
    """:func:`course_lib.global_structure.subspace_overlap`."""
    return subspace_overlap(A, B)


def _close(got, expect, what, rtol=1e-8):
    v = number(got, what)
    if not math.isclose(v, expect, rel_tol=rtol, abs_tol=1e-12):
        raise WrongAnswer(f"{what} should be {expect:.6g}, got {v:.6g}")


# ----------------------------------------------------------------------------- checks
def check_transition_point(fn) -> CheckResult:
    """``fn(Ns, values, level)`` (Ns increasing, values increasing) must return the crossing N."""
    def body():
        cases = [([10, 100, 1000], [0.1, 0.3, 0.9], 0.5), ([1, 10, 100, 2500], [0.0, 0.2, 0.45, 0.8], 0.6),
                 ([10, 100], [0.7, 0.9], 0.5)]
        for Ns, v, level in cases:
            _close(fn(list(Ns), torch.tensor(v, dtype=torch.float64), level),
                   crossing(Ns, v, level), f"the crossing of {v} at level {level} over N = {Ns}")
    return run_check("transition_point", body,
                     hint="Interpolate linearly in log N, not in N: the sweep's N are spread over decades.",
                     hint2="Find the first i with values[i] >= level; t = (level - v[i-1]) / (v[i] - v[i-1]); "
                           "N* = exp(log N[i-1] + t (log N[i] - log N[i-1])). If values[0] >= level, N* = N[0].")


def check_wiener_effective_dimension(fn) -> CheckResult:
    """``fn(lam, sigma)`` with lam (r,) eigenvalues of the data covariance must return tr J."""
    def body():
        g = torch.Generator().manual_seed(7)
        lam = torch.rand(50, generator=g, dtype=torch.float64) ** 4 * 5
        for sigma in (0.05, 0.5, 3.0):
            _close(fn(lam.clone(), sigma), reference_wiener_effective_dimension(lam, sigma),
                   f"tr J at sigma = {sigma}")
    return run_check("wiener_effective_dimension", body,
                     hint="J = U diag(s_k) U^T with shrinkage factors s_k in [0, 1]; the trace of J is the sum of them.",
                     hint2="s_k = lam_k / (lam_k + sigma^2): a soft count, not the number of lam_k above sigma^2.")


def check_subspace_overlap(fn) -> CheckResult:
    """``fn(A, B)`` with orthonormal columns A, B (d, k) must return |A^T B|_F^2 / k."""
    def body():
        g = torch.Generator().manual_seed(8)
        for d, k in ((20, 3), (50, 10)):
            A = torch.linalg.qr(torch.randn(d, k, generator=g, dtype=torch.float64))[0]
            B = torch.linalg.qr(A + 0.7 * torch.randn(d, k, generator=g, dtype=torch.float64))[0]
            _close(fn(A.clone(), B.clone()), subspace_overlap(A, B), f"the overlap (d={d}, k={k})")
        _close(fn(A.clone(), A.clone()), 1.0, "the overlap of a subspace with itself")
    return run_check("subspace_overlap", body,
                     hint="The overlap is the mean squared cosine of the principal angles between the subspaces.",
                     hint2="(A.T @ B).pow(2).sum() / k: square the entries before summing, divide by k (not d).")
