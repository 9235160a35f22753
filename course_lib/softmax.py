"""The one exact streaming softmax-weighted average (Chapter 1, Sec. "Computing the ideal denoiser").

Every machine that averages over a training set (IS, ES, LS, ELS, smoothed variants) computes

    out = sum_i softmax_i(l_i) v_i,      l_i = -|q - k_i|^2 / (2 sigma^2),

over N items that do not fit in memory at once. :class:`OnlineSoftmax` consumes the items in chunks
and keeps, for every query, the running maximum ``m``, the rescaled normaliser ``s = sum exp(l - m)``
and the rescaled accumulator ``acc = sum exp(l - m) v``. When a chunk raises the maximum to ``m'``,
the old sums are multiplied by ``exp(m - m')``: the result is the softmax over the whole set (not a
per-chunk softmax), exact up to floating-point rounding, with memory independent of N.

Two states over disjoint item sets merge exactly (:meth:`OnlineSoftmax.merge`): rescale both to the
larger maximum and add. This is how fused attention kernels' outputs (a normalised mean and its
log-sum-exp, :meth:`OnlineSoftmax.from_mean`) are chained over chunks, and how shards of a training
set held by different processes are combined (:mod:`course_lib.distributed`).
"""
from __future__ import annotations

import math
from typing import Callable

import torch

__all__ = ["OnlineSoftmax", "squared_distances"]


def squared_distances(q: torch.Tensor, k: torch.Tensor, k_sq: torch.Tensor | None = None) -> torch.Tensor:
    """|q_b - k_n|^2 for q (B, d) and k (N, d) as |q|^2 - 2 q.k + |k|^2 (one matmul), clamped at 0."""
    q_sq = (q * q).sum(-1, keepdim=True)
    if k_sq is None:
        k_sq = (k * k).sum(-1)
    d2 = torch.addmm(k_sq.unsqueeze(0) + q_sq, q, k.T, alpha=-2.0)
    return d2.clamp_min_(0.0)


def _log_tiny(dtype) -> float:
    """1 + log of the smallest normal number of ``dtype`` (-86.3 in float32, -707.4 in float64): exp()
    of it is a normal number, computed on the fast path."""
    return math.log(torch.finfo(dtype).tiny) + 1.0


class OnlineSoftmax:
    """Streaming softmax average with an exact online log-sum-exp.

    Call :meth:`update` once per chunk with that chunk's ``logits`` of shape (..., n_chunk) and
    either ``values`` (n_chunk, d) or a function ``weighted_sum(w) -> (..., d)`` that contracts the
    unnormalised weights ``w`` (same shape as ``logits``) with the chunk's values. Then
    :meth:`mean` returns sum_i softmax_i v_i of shape (..., d). ``-inf`` logits (masked items) are
    allowed, as long as every query has at least one finite logit overall. Weights below the smallest
    normal number of the dtype (relative to the largest) are computed as that number (exp() of
    smaller arguments is 10-30x slower on CPUs): a change of at most n * 1e-38 relative in float32.

    With ``track_entropy=True`` it also accumulates sum exp(l - m) (l - m), which gives the Shannon
    entropy of the weights, H = logsumexp - E_w[l] = log s - E_w[l - m] (used for the effective
    number of images), without the cancellation of two large numbers at small sigma.
    """

    def __init__(self, track_entropy: bool = False):
        self.m = self.s = self.acc = self.wl = None
        self.track_entropy = track_entropy

    def update(self, logits: torch.Tensor, values: torch.Tensor | None = None,
               weighted_sum: Callable[[torch.Tensor], torch.Tensor] | None = None,
               inplace: bool = False) -> None:
        """Absorb one chunk. ``inplace=True`` lets the call overwrite ``logits`` with the weights (a
        scratch tensor of the caller's: no allocation and three fewer passes over it; ignored when
        the entropy is tracked, which needs both the logits and the weights, and when ``logits``
        requires grad, since autograd needs the intermediate tensors)."""
        if (values is None) == (weighted_sum is None):
            raise ValueError("pass exactly one of values= or weighted_sum=")
        if self.m is not None and logits.shape[:-1] != self.m.shape:
            raise ValueError(f"logits must have shape {tuple(self.m.shape)} + (n_chunk,) like the previous "
                             f"chunks, got {tuple(logits.shape)}")
        m_chunk = logits.amax(-1)
        m_new = m_chunk if self.m is None else torch.maximum(self.m, m_chunk)
        shift = torch.where(torch.isfinite(m_new), m_new, torch.zeros_like(m_new))
        # exp() of an argument below log(tiny) (a subnormal or zero result) takes a slow path, 10-30x
        # slower on x86 CPUs; such a weight is below `tiny` times the chunk's largest weight (1), so
        # raising it to `tiny` changes s and acc by at most n * tiny relative: far below rounding
        # (a masked, -inf, item likewise gets weight <= tiny: it moves the mean by <= n tiny max|v|)
        if inplace and not self.track_entropy and not logits.requires_grad:   # autograd needs copies
            rel = w = logits.sub_(shift.unsqueeze(-1)).clamp_min_(_log_tiny(logits.dtype)).exp_()
        else:
            rel = (logits - shift.unsqueeze(-1)).clamp_min_(_log_tiny(logits.dtype))
            w = torch.exp(rel)
        part = w @ values if values is not None else weighted_sum(w)
        w_sum = w.sum(-1)
        # entropy accumulator relative to the running shift: sum exp(l - m)(l - m), no cancellation
        wl = torch.where(w > 0, w * rel, torch.zeros_like(w)).sum(-1) if self.track_entropy else None
        if self.m is None:
            self.s, self.acc, self.wl = w_sum, part, wl
        else:
            # a query whose earlier items were all masked (m = -inf) has s = acc = 0: its scale is 0,
            # never exp(0 - shift), which overflows to inf for very negative logits (0 * inf = NaN)
            finite = torch.isfinite(self.m)
            old = torch.where(finite, self.m, shift)
            scale = torch.where(finite, torch.exp(old - shift), torch.zeros_like(shift))
            if self.track_entropy:
                # sum exp(l - m')(l - m') = scale * (sum exp(l - m)(l - m) + (m - m') s)
                self.wl = scale * (self.wl + (old - shift) * self.s) + wl
            self.s = self.s * scale + w_sum
            self.acc = self.acc * scale.unsqueeze(-1) + part
        self.m = m_new
        self._shift = shift

    @classmethod
    def from_mean(cls, mean: torch.Tensor, lse: torch.Tensor) -> "OnlineSoftmax":
        """The state of a finished softmax average: ``mean`` (..., d) and its log-sum-exp ``lse`` (...).

        Stored as shift = lse, s = 1, acc = mean (s = acc = 0 where lse = -inf: no item). Its ``m`` is
        the log-sum-exp, not the largest logit, so it has no entropy and no max weight; it merges.
        """
        if mean.shape[:-1] != lse.shape:
            raise ValueError(f"lse must have shape {tuple(mean.shape[:-1])} (mean's without the last "
                             f"axis), got {tuple(lse.shape)}")
        osm = cls()
        lse = lse.to(mean.dtype)
        finite = torch.isfinite(lse)
        osm.m = torch.where(finite, lse, torch.full_like(lse, -math.inf))
        osm._shift = torch.where(finite, lse, torch.zeros_like(lse))
        osm.s = finite.to(mean.dtype)
        osm.acc = torch.where(finite.unsqueeze(-1), mean, torch.zeros_like(mean))
        return osm

    def merge(self, other: "OnlineSoftmax") -> "OnlineSoftmax":
        """Absorb the state of a disjoint set of items (in place; returns self).

        With M = max(m_a, m_b): s = s_a e^{m_a - M} + s_b e^{m_b - M}, likewise acc, and the entropy
        accumulator sum w (l - M) = sum_k e^{m_k - M} (wl_k + (m_k - M) s_k). Exact up to rounding.
        """
        if other.m is None:
            return self
        if self.m is None:
            self.m, self._shift, self.s, self.acc, self.wl = (other.m, other._shift, other.s,
                                                              other.acc, other.wl)
            self.track_entropy = other.track_entropy
            return self
        if self.m.shape != other.m.shape or self.acc.shape != other.acc.shape:
            raise ValueError(f"cannot merge states of shapes {tuple(self.acc.shape)} and "
                             f"{tuple(other.acc.shape)}")
        if self.track_entropy != other.track_entropy:
            raise ValueError("cannot merge a state that tracks the entropy with one that does not")
        m = torch.maximum(self.m, other.m)
        shift = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
        sa, sb = self._rescale(shift), other._rescale(shift)
        if self.track_entropy:
            self.wl = (sa * (self.wl + (self._shift - shift) * self.s)
                       + sb * (other.wl + (other._shift - shift) * other.s))
        self.s = self.s * sa + other.s * sb
        self.acc = self.acc * sa.unsqueeze(-1) + other.acc * sb.unsqueeze(-1)
        self.m, self._shift = m, shift
        return self

    def _rescale(self, shift: torch.Tensor) -> torch.Tensor:
        """exp(own shift - shift), and 0 where this state has no item (m = -inf: s = acc = 0)."""
        finite = torch.isfinite(self.m)
        own = torch.where(finite, self._shift, shift)
        return torch.where(finite, torch.exp(own - shift), torch.zeros_like(shift))

    def _check(self):
        if self.m is None:
            raise RuntimeError("OnlineSoftmax.update was never called (empty training set?)")
        if not bool(torch.isfinite(self.m).all()):
            raise ValueError("some queries have no finite logit: every item was masked out (e.g. a class with no "
                             "training image), or every logit -|x - x_i|^2 / (2 sigma^2) overflowed to -inf (sigma "
                             "too small for the dtype: use a larger sigma or float64 queries)")

    def mean(self) -> torch.Tensor:
        """sum_i softmax_i(l) v_i, shape (..., d)."""
        self._check()
        return self.acc / self.s.unsqueeze(-1)

    def logsumexp(self) -> torch.Tensor:
        """log sum_i exp(l_i), shape (...)."""
        self._check()
        return self._shift + torch.log(self.s)

    def entropy(self) -> torch.Tensor:
        """Shannon entropy (nats) of the softmax weights, shape (...)."""
        if not self.track_entropy:
            raise RuntimeError("construct OnlineSoftmax(track_entropy=True) to get the entropy")
        self._check()
        return torch.log(self.s) - self.wl / self.s
