"""Chapter 6 exercise checks: accept the reference, say "not attempted" for a stub, reject plausible mistakes."""
import math

import torch

from course_lib.exercises import ch06


def _stub(*args):
    raise NotImplementedError


def test_hankel_system():
    assert ch06.check_hankel_system(ch06.reference_hankel_system).correct

    def by_hand(m, K):  # independent of the library: loops
        H = torch.stack([torch.stack([m[a + b] for b in range(K + 1)]) for a in range(K + 1)])
        b = torch.stack([-a * m[a - 1] if a else m[0] * 0 for a in range(K + 1)])
        return H, b

    assert ch06.check_hankel_system(by_hand).correct
    assert ch06.check_hankel_system(_stub).status == "not attempted"

    def wrong_sign(m, K):
        H, b = by_hand(m, K)
        return H, -b

    def derivative_index(m, K):  # a m_a instead of a m_(a-1)
        H, _ = by_hand(m, K)
        return H, torch.stack([-a * m[a] for a in range(K + 1)])

    for wrong in (wrong_sign, derivative_index):
        assert ch06.check_hankel_system(wrong).status == "wrong", wrong.__name__


def test_noisy_moments():
    assert ch06.check_noisy_moments(ch06.reference_noisy_moments).correct
    assert ch06.check_noisy_moments(_stub).status == "not attempted"

    def z_moments_one(clean, sigma):  # forgets the double factorial: E[z^k] = 1 for even k
        R = len(clean) - 1
        return torch.stack([sum(math.comb(r, i) * sigma ** (r - i) * (1 - (r - i) % 2) * clean[i]
                                for i in range(r + 1)) for r in range(R + 1)])

    def variance_only(clean, sigma):  # adds sigma^2 only to the second moment
        out = clean.clone()
        out[2] = out[2] + sigma ** 2
        return out

    for wrong in (z_moments_one, variance_only):
        assert ch06.check_noisy_moments(wrong).status == "wrong", wrong.__name__


def test_band_tied_features():
    assert ch06.check_band_tied_features(ch06.reference_band_tied_features).correct

    def by_hand(h, v, d):
        return torch.stack([torch.ones_like(h), h, v, d, h * h, h * v, h * d, v * v, v * d, d * d], -1)

    assert ch06.check_band_tied_features(by_hand).correct
    assert ch06.check_band_tied_features(_stub).status == "not attempted"

    def no_cross_terms(h, v, d):
        return torch.stack([torch.ones_like(h), h, v, d, h * h, v * v, d * d], -1)

    def wrong_order(h, v, d):
        return torch.stack([torch.ones_like(h), h, v, d, h * h, v * v, d * d, h * v, h * d, v * d], -1)

    for wrong in (no_cross_terms, wrong_order):
        assert ch06.check_band_tied_features(wrong).status == "wrong", wrong.__name__
