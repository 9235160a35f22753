"""Chapter 1 exercise checks: accept the reference, say "not attempted" for a stub, reject plausible mistakes."""
import math

import torch

from course_lib.exercises import ch01


def _stub(*args):
    raise NotImplementedError


def test_posterior_weights():
    assert ch01.check_posterior_weights(ch01.reference_posterior_weights).correct

    def solution(x, train, sigma):  # from scratch, broadcasting
        d2 = ((x[:, None, :] - train[None, :, :]) ** 2).sum(-1)
        logits = -d2 / (2 * sigma**2)
        w = torch.exp(logits - logits.max(-1, keepdim=True).values)
        return w / w.sum(-1, keepdim=True)

    assert ch01.check_posterior_weights(solution).correct
    assert ch01.check_posterior_weights(_stub).status == "not attempted"

    def no_two(x, train, sigma):  # the exponent -|x - x_i|^2 / sigma^2 (missing the 2)
        return torch.softmax(-torch.cdist(x, train) ** 2 / sigma**2, -1)

    def distance_not_squared(x, train, sigma):
        return torch.softmax(-torch.cdist(x, train) / (2 * sigma**2), -1)

    def unnormalised(x, train, sigma):
        return torch.exp(-torch.cdist(x, train) ** 2 / (2 * sigma**2))

    for wrong in (no_two, distance_not_squared, unnormalised):
        assert ch01.check_posterior_weights(wrong).status == "wrong", wrong.__name__
    assert "2 sigma^2" in ch01.check_posterior_weights(no_two).message


def test_streaming_softmax_mean():
    assert ch01.check_streaming_softmax_mean(ch01.reference_streaming_softmax_mean).correct

    def solution(logit_chunks, value_chunks):
        m = s = acc = None
        for l, v in zip(logit_chunks, value_chunks):
            mc = l.max(-1).values
            m_new = mc if m is None else torch.maximum(m, mc)
            w = torch.exp(l - m_new[:, None])
            if m is None:
                s, acc = w.sum(-1), w @ v
            else:
                scale = torch.exp(m - m_new)
                s, acc = s * scale + w.sum(-1), acc * scale[:, None] + w @ v
            m = m_new
        return acc / s[:, None]

    assert ch01.check_streaming_softmax_mean(solution).correct
    assert ch01.check_streaming_softmax_mean(_stub).status == "not attempted"

    def naive(logit_chunks, value_chunks):  # exp without a max: underflows to 0/0
        num = sum(torch.exp(l) @ v for l, v in zip(logit_chunks, value_chunks))
        den = sum(torch.exp(l).sum(-1) for l in logit_chunks)
        return num / den[:, None]

    def per_chunk_softmax(logit_chunks, value_chunks):  # average of per-chunk softmax means
        outs = [torch.softmax(l, -1) @ v for l, v in zip(logit_chunks, value_chunks)]
        return sum(outs) / len(outs)

    def no_rescale(logit_chunks, value_chunks):  # per-chunk max, sums never rescaled
        s = acc = 0
        for l, v in zip(logit_chunks, value_chunks):
            w = torch.exp(l - l.max(-1, keepdim=True).values)
            s, acc = s + w.sum(-1), acc + w @ v
        return acc / s[:, None]

    for wrong in (naive, per_chunk_softmax, no_rescale):
        assert ch01.check_streaming_softmax_mean(wrong).status == "wrong", wrong.__name__


def test_kernel_smoothed_score():
    assert ch01.check_kernel_smoothed_score(ch01.reference_kernel_smoothed_score).correct
    assert ch01.check_kernel_smoothed_score(_stub).status == "not attempted"

    def sigma_denominator(x, train, sigma, s):  # weights at tau, but divided by sigma^2
        tau2 = sigma**2 + s**2
        w = torch.softmax(-torch.cdist(x, train) ** 2 / (2 * tau2), -1)
        return (w @ train - x) / sigma**2

    def weights_at_sigma(x, train, sigma, s):
        w = torch.softmax(-torch.cdist(x, train) ** 2 / (2 * sigma**2), -1)
        return (w @ train - x) / (sigma**2 + s**2)

    def tau_is_sum(x, train, sigma, s):  # tau = sigma + s instead of sqrt(sigma^2 + s^2)
        tau2 = (sigma + s) ** 2
        w = torch.softmax(-torch.cdist(x, train) ** 2 / (2 * tau2), -1)
        return (w @ train - x) / tau2

    for wrong in (sigma_denominator, weights_at_sigma, tau_is_sum):
        assert ch01.check_kernel_smoothed_score(wrong).status == "wrong", wrong.__name__


def test_critical_smoothing():
    assert ch01.check_critical_smoothing(ch01.reference_critical_smoothing).correct
    assert ch01.check_critical_smoothing(lambda: 0.7979).correct
    assert ch01.check_critical_smoothing(_stub).status == "not attempted"
    for wrong in (lambda: 1.0, lambda: 1 / math.sqrt(2 * math.pi), lambda: "0.8", lambda: math.nan):
        assert ch01.check_critical_smoothing(wrong).status == "wrong"
