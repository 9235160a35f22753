"""Exercise checks of Chapter 4 (locality from data statistics).

- :func:`check_wiener_mask`        ``fn(L, tau) -> (d, d) bool``: the data-local masks from a Wiener matrix
  in the authors' convention (row q of the result = the pixels output pixel q compares).
- :func:`check_streaming_average`  ``fn(logit_chunks, value_chunks) -> (B, k)``: the softmax average over
  ALL items, fed chunk by chunk (the public code's per-chunk normalisation is the classic mistake).
- :func:`check_unpermute_field`    ``fn(field, perm) -> field``: bring a sensitivity field measured on
  pixel-permuted images back to the original pixel order.

Each returns a :class:`~course_lib.exercises.base.CheckResult`.
"""
from __future__ import annotations

import torch

from ..softmax import OnlineSoftmax
from .base import CheckResult, compare, run_check

__all__ = ["check_wiener_mask", "check_streaming_average", "check_unpermute_field",
           "reference_wiener_mask", "reference_streaming_average", "reference_unpermute_field"]


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------------------- references
def reference_wiener_mask(L: torch.Tensor, tau: float) -> torch.Tensor:
    """masks[q, n] = |L[n, q] / L[n, n]| >= tau * max |L / diag(L)[:, None]| (one global maximum)."""
    M = (L / torch.diagonal(L)[:, None]).abs()
    return (M >= tau * M.max()).T


def reference_streaming_average(logit_chunks, value_chunks) -> torch.Tensor:
    """sum_i softmax_i(l) v_i over all chunks with a running maximum (exact online log-sum-exp)."""
    state = OnlineSoftmax()
    for l, v in zip(logit_chunks, value_chunks):
        state.update(l, v)
    return state.mean()


def reference_unpermute_field(field: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    """Permuted pixel p is original pixel perm[p]: out[perm[p]] = field[p]."""
    out = torch.empty_like(field)
    out[perm] = field
    return out


# ----------------------------------------------------------------------------- checks
def _covariance_like(d: int, seed: int) -> torch.Tensor:
    """A Wiener matrix with unequal diagonal entries (so row and column normalisations differ)."""
    A = torch.randn(d, d, generator=_gen(seed), dtype=torch.float64)
    scale = torch.linspace(0.05, 3.0, d, dtype=torch.float64)
    S = (A @ A.T / d + 0.05 * torch.eye(d, dtype=torch.float64)) * scale[:, None] * scale[None, :]
    return S @ torch.linalg.inv(S + 0.8 * torch.eye(d, dtype=torch.float64))


def check_wiener_mask(fn) -> CheckResult:
    """``fn(L, tau)`` for a (d, d) Wiener matrix L must return the (d, d) bool masks of the authors'
    code, row q = the pixels output pixel q compares: normalise every ROW n of L by L[n, n], threshold
    at tau times the one global max, and take COLUMN q of the result."""
    def body():
        for seed, tau in ((0, 0.2), (1, 0.35)):
            L = _covariance_like(12, seed)
            got = fn(L.clone(), tau)
            if not isinstance(got, torch.Tensor) or got.dtype != torch.bool:
                return f"return a bool tensor, got {type(got).__name__} {getattr(got, 'dtype', '')}"
            exp = reference_wiener_mask(L, tau)
            if got.shape != exp.shape:
                return f"the masks have shape {tuple(got.shape)}, expected {tuple(exp.shape)}"
            if torch.equal(got, exp):
                continue
            if torch.equal(got, exp.T):
                return ("row q of your masks is row q of the row-normalised matrix, i.e. row q divided by its own "
                        "diagonal L[q, q]; the code divides row n by L[n, n] and output q reads COLUMN q")
            return f"{int((got != exp).sum())} of {exp.numel()} entries differ (tau={tau}); one global maximum per matrix"
        return None
    return run_check("wiener_mask", body,
                     hint="Normalise first, threshold second: one maximum over the whole normalised matrix.",
                     hint2="M = L / diag(L)[:, None] (row n divided by L[n, n]); keep |M| >= tau * |M|.max(); "
                           "output q compares on column q of that matrix.")


def check_streaming_average(fn) -> CheckResult:
    """``fn(logit_chunks, value_chunks)``: lists of (B, n_j) logits and (n_j, k) values; return the
    (B, k) softmax-weighted average over all sum_j n_j items."""
    def body():
        g = _gen(3)
        sizes = (5, 1, 9, 4)
        logits = [torch.randn(3, n, generator=g, dtype=torch.float64) * 4 + 300 * j for j, n in enumerate(sizes)]
        logits[1] = logits[1] - 80.0
        values = [torch.randn(n, 2, generator=g, dtype=torch.float64) for n in sizes]
        got = fn([t.clone() for t in logits], [v.clone() for v in values])
        exp = torch.softmax(torch.cat(logits, 1), 1) @ torch.cat(values)
        per_chunk = torch.stack([torch.softmax(l, 1) @ v for l, v in zip(logits, values)]).mean(0)
        if isinstance(got, torch.Tensor) and got.shape == exp.shape and torch.allclose(got.double(), per_chunk, atol=1e-9):
            return "this is the mean of per-chunk softmax averages (the public code's bug); keep a running max and rescale"
        return compare(got, exp, "the average", rtol=1e-9, atol=1e-10)
    return run_check("streaming_average", body,
                     hint="A softmax per chunk is not a softmax over all items: the chunks' normalisers differ.",
                     hint2="Keep a running max m, the sum s of exp(l - m) and the weighted sum v; when a chunk "
                           "raises m to m_new, multiply s and v by exp(m - m_new); return v / s.")


def check_unpermute_field(fn) -> CheckResult:
    """``fn(field, perm)``: field (H*W,) measured on images permuted by x'[p] = x[perm[p]]; return it in
    the original pixel order."""
    def body():
        perm = torch.randperm(36, generator=_gen(4))
        field = torch.randn(36, generator=_gen(5), dtype=torch.float64)
        got = fn(field.clone(), perm.clone())
        if isinstance(got, torch.Tensor) and got.shape == field.shape and torch.equal(got.double(), field[perm]):
            return "field[perm] applies the permutation a second time; invert it (out[perm] = field)"
        return compare(got, reference_unpermute_field(field, perm), "the un-permuted field", rtol=0, atol=0)
    return run_check("unpermute_field", body,
                     hint="Entry p of the field belongs to original pixel perm[p]: put it there.",
                     hint2="out = torch.empty_like(field); out[perm] = field (the inverse permutation).")
