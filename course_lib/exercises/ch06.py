"""Exercise checks of Chapter 6 (wavelet scores).

- :func:`check_hankel_system`    ``fn(m, K) -> (H, b)``: the Stein normal equations of one coefficient with
  features (1, c, .., c^K): H_ab = m_{a+b} ((K+1, K+1)) and b_a = -a m_{a-1} ((K+1,)), from the noisy
  moments m = (m_0, .., m_2K).
- :func:`check_noisy_moments`    ``fn(clean, sigma) -> (R+1,)``: m_r = E[(c + sigma z)^r] for r = 0..R from
  clean = (E[c^0], .., E[c^R]).
- :func:`check_band_tied_features` ``fn(h, v, d) -> (B, 10)``: the degree-2 band-tied feature map
  (1, h, v, d, h^2, hv, hd, v^2, vd, d^2).

Each returns a :class:`~course_lib.exercises.base.CheckResult`. Inputs are float64.
"""
from __future__ import annotations

import math

import torch

from ..wavelet_moments import MonomialBasis, gaussian_moment, hankel_gram, noisy_moments, poly_features
from .base import CheckResult, compare, run_check

__all__ = ["check_hankel_system", "check_noisy_moments", "check_band_tied_features", "reference_hankel_system",
           "reference_noisy_moments", "reference_band_tied_features"]


# ----------------------------------------------------------------------------- references
def reference_hankel_system(m, K):
    """H = [m_{a+b}]_{a,b=0..K}, b_a = -E[d c^a / dc] = -a m_{a-1}."""
    a = torch.arange(K + 1)
    b = -a.to(m.dtype) * m[(a - 1).clamp_min(0)]
    return hankel_gram(m, K), b


def reference_noisy_moments(clean, sigma):
    """m_r = sum_i C(r, i) sigma^(r-i) E[z^(r-i)] E[c^i], via the library's moment transform."""
    R = clean.shape[0] - 1
    if R % 2:  # the library's table holds degrees 0..2K; pad an odd R with one extra moment
        return reference_noisy_moments(torch.cat([clean, clean.new_zeros(1)]), sigma)[:-1]
    return noisy_moments(clean[None], MonomialBasis(1, R // 2), sigma)[0]


def reference_band_tied_features(h, v, d):
    """All monomials of degree <= 2 of (h, v, d) in graded order."""
    return poly_features(torch.stack([h, v, d], -1), MonomialBasis(3, 2))


# ----------------------------------------------------------------------------- checks
def check_hankel_system(fn) -> CheckResult:
    """``fn(m, K)`` with m (2K+1,) must return (H (K+1, K+1), b (K+1,))."""
    def body():
        g = torch.Generator().manual_seed(0)
        for K in (1, 2, 4):
            c = torch.randn(200, generator=g, dtype=torch.float64) ** 2 - 0.3
            m = torch.stack([(c ** r).mean() for r in range(2 * K + 1)])
            out = fn(m.clone(), K)
            if not isinstance(out, (tuple, list)) or len(out) != 2:
                return "return a pair (H, b)"
            H, b = reference_hankel_system(m, K)
            why = compare(out[0], H, f"H (K={K})", rtol=1e-10) or compare(out[1], b, f"b (K={K})", rtol=1e-10)
            if why:
                return why + " (hint: E[phi_a phi_b] = m_(a+b); Stein: E[phi_a s] = -E[a c^(a-1)])"
    return run_check("hankel_system", body,
                     hint='With features phi_a(c) = c^a, both the Gram matrix E[phi_a phi_b] and the right-hand side reduce to moments of c.',
                     hint2="H_ab = m_(a+b); Stein's identity E[phi_a(c) s(c)] = -E[phi_a'(c)] gives b_a = -a m_(a-1), so b_0 = 0.")


def check_noisy_moments(fn) -> CheckResult:
    """``fn(clean, sigma)`` with clean (R+1,) = E[c^0..c^R] must return the noisy moments (R+1,)."""
    def body():
        g = torch.Generator().manual_seed(1)
        c = torch.rand(500, generator=g, dtype=torch.float64) * 3 - 1
        for R, sigma in ((4, 0.5), (6, 2.0), (5, 0.1)):
            clean = torch.stack([(c ** r).mean() for r in range(R + 1)])
            expect = torch.stack([sum(math.comb(r, i) * sigma ** (r - i) * gaussian_moment(r - i) * clean[i]
                                      for i in range(r + 1)) for r in range(R + 1)])
            why = compare(fn(clean.clone(), sigma), expect, f"noisy moments (R={R}, sigma={sigma})", rtol=1e-10)
            if why:
                return why + " (hint: expand (c + sigma z)^r binomially; E[z^k] = (k-1)!! for even k, 0 for odd)"
    return run_check("noisy_moments", body,
                     hint='Expand (c + sigma z)^r with the binomial theorem; c and z are independent.',
                     hint2='m_r = sum_i C(r, i) sigma^(r-i) E[z^(r-i)] E[c^i], with E[z^k] = (k-1)!! for even k and 0 for odd k.')


def check_band_tied_features(fn) -> CheckResult:
    """``fn(h, v, d)`` with h, v, d (B,) must return the (B, 10) degree-2 band-tied features."""
    def body():
        g = torch.Generator().manual_seed(2)
        h, v, d = torch.randn(3, 7, generator=g, dtype=torch.float64)
        why = compare(fn(h.clone(), v.clone(), d.clone()), reference_band_tied_features(h, v, d), "features",
                      rtol=1e-12)
        if why:
            return why + " (order: 1, h, v, d, h^2, hv, hd, v^2, vd, d^2; cross terms couple the orientations)"
    return run_check("band_tied_features", body,
                     hint='List every monomial of degree 0, 1 and 2 in the three coefficients (h, v, d): there are 10.',
                     hint2='Order: 1; h, v, d; h^2, hv, hd, v^2, vd, d^2. Stack them on the last axis to get (B, 10).')
