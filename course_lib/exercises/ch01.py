"""Exercise checks of Chapter 1 (the optimal denoiser, memorization and smoothing).

- :func:`check_posterior_weights`       ``fn(x, train, sigma) -> w`` (B, N): the guessing-game posterior.
- :func:`check_streaming_softmax_mean`  ``fn(logit_chunks, value_chunks) -> (B, d)``: exact online softmax.
- :func:`check_kernel_smoothed_score`   ``fn(x, train, sigma, s) -> score`` (B, d): smoothing (a).
- :func:`check_critical_smoothing`      ``fn() -> float``: the s above which the barycenter of two
  images becomes the attractor of the closed-form smoothed flow (smoothing (b)).

Each returns a :class:`~course_lib.exercises.base.CheckResult`. Inputs are flattened: x (B, d),
train (N, d).
"""
from __future__ import annotations

import math

import torch

from ..softmax import OnlineSoftmax
from .base import CheckResult, compare, number, run_check

__all__ = ["check_posterior_weights", "check_streaming_softmax_mean", "check_kernel_smoothed_score",
           "check_critical_smoothing", "reference_posterior_weights", "reference_streaming_softmax_mean",
           "reference_kernel_smoothed_score", "reference_critical_smoothing",
           "check_critical_smoothing_gap", "check_predict_n_eff", "check_explain_novelty_residual",
           "reference_critical_smoothing_gap", "NOVELTY_OPTIONS"]


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------------------- references
def reference_posterior_weights(x: torch.Tensor, train: torch.Tensor, sigma: float) -> torch.Tensor:
    """w_bi = softmax_i(-|x_b - x_i|^2 / (2 sigma^2))."""
    d2 = torch.cdist(x, train) ** 2
    return torch.softmax(-d2 / (2 * sigma**2), dim=-1)


def reference_streaming_softmax_mean(logit_chunks, value_chunks) -> torch.Tensor:
    """sum_i softmax_i(l) v_i over all chunks, with a running max (online log-sum-exp)."""
    osm = OnlineSoftmax()
    for logits, values in zip(logit_chunks, value_chunks):
        osm.update(logits, values=values)
    return osm.mean()


def reference_kernel_smoothed_score(x: torch.Tensor, train: torch.Tensor, sigma: float, s: float) -> torch.Tensor:
    """Score of 1/N sum_i N(x_i, (sigma^2 + s^2) I): (sum_i w_i(x; tau) x_i - x) / tau^2."""
    tau2 = sigma**2 + s**2
    w = torch.softmax(-torch.cdist(x, train) ** 2 / (2 * tau2), dim=-1)
    return (w @ train - x) / tau2


def reference_critical_smoothing() -> float:
    """D_s(x) -> 2 Phi(x/s) - 1 for images at -1, +1; the slope at 0 is 2 phi(0)/s = 1 at s = sqrt(2/pi)."""
    return math.sqrt(2 / math.pi)


# ----------------------------------------------------------------------------- checks
def check_posterior_weights(fn) -> CheckResult:
    """``fn(x, train, sigma)`` with x (B, d), train (N, d) must return the (B, N) posterior weights."""
    def body():
        g = _gen(1)
        train = torch.randn(7, 5, generator=g, dtype=torch.float64)
        x = train[:3] + 0.8 * torch.randn(3, 5, generator=g, dtype=torch.float64)
        for sigma in (0.7, 2.0):
            w = fn(x.clone(), train.clone(), sigma)
            ref = reference_posterior_weights(x, train, sigma)
            if (r := compare(w, ref, f"w at sigma={sigma}", rtol=1e-6, atol=1e-9)) is not None:
                if isinstance(w, torch.Tensor) and w.shape == ref.shape and torch.allclose(
                        w.to(ref.dtype).sum(-1), torch.ones(3, dtype=ref.dtype)):
                    r += " (the rows sum to 1; check the 2 sigma^2 in the Gaussian exponent)"
                return r
        return None
    return run_check("posterior_weights", body,
                     hint='Each training image is a Gaussian of variance sigma^2 around it; the weights are a softmax over the N images.',
                     hint2='w = softmax(-|x_b - x_i|^2 / (2 sigma^2)) over i; torch.cdist(x, train)**2 gives the squared distances.')


def check_streaming_softmax_mean(fn) -> CheckResult:
    """``fn(logit_chunks, value_chunks)``: lists of (B, n_k) logits and (n_k, d) values; must return
    the softmax-weighted mean over ALL items, (B, d), without overflow or underflow."""
    def body():
        g = _gen(2)
        sizes = [3, 5, 1, 4]
        # logits of size ~1e4 (tiny sigma): exp() of them underflows to 0 without a running max
        logits = [-1e4 * torch.rand(2, n, generator=g, dtype=torch.float64) - 5e3 for n in sizes]
        logits[2][0, 0] = -4e3  # the winning item of row 0 sits alone in the third chunk
        values = [torch.randn(n, 3, generator=g, dtype=torch.float64) for n in sizes]
        out = fn([l.clone() for l in logits], [v.clone() for v in values])
        ref = torch.softmax(torch.cat(logits, 1), 1) @ torch.cat(values, 0)
        if (r := compare(out, ref, "softmax mean", rtol=1e-9, atol=1e-12,
                         hint="keep a running maximum m and rescale the old sums by exp(m_old - m_new)")) is not None:
            return r
        # moderate logits, many chunks
        logits = [torch.randn(2, n, generator=g, dtype=torch.float64) for n in sizes]
        out = fn(logits, values)
        ref = torch.softmax(torch.cat(logits, 1), 1) @ torch.cat(values, 0)
        if (r := compare(out, ref, "softmax mean (moderate logits)", rtol=1e-9, atol=1e-12)) is not None:
            return r
        return _streaming_violation(fn, g)
    return run_check("streaming_softmax_mean", body,
                     hint='Never exponentiate a raw logit: keep a running maximum over the chunks.',
                     hint2='Keep m, the sum s of exp(l - m) and the weighted sum v; when a chunk raises m to m_new, multiply s and v by exp(m - m_new).')


def _streaming_violation(fn, g) -> str | None:
    """Feed 12 chunks through generators that produce one chunk at a time and record how many earlier
    chunks are still alive (weak references) when the next one is requested. A streaming answer holds
    a bounded number (the loop variables of ``zip``: 3); one that collects the chunks holds them all."""
    import weakref

    sizes = [2, 3, 1, 4] * 3
    logits = [torch.randn(2, n, generator=g, dtype=torch.float64) for n in sizes]
    values = [torch.randn(n, 3, generator=g, dtype=torch.float64) for n in sizes]
    alive, peak = [], [0]

    def produce(items):
        for t in items:
            peak[0] = max(peak[0], sum(ref() is not None for ref in alive))
            c = t.clone()
            alive.append(weakref.ref(c))
            yield c
            del c

    out = fn(produce(logits), produce(values))
    ref = torch.softmax(torch.cat(logits, 1), 1) @ torch.cat(values, 0)
    if (r := compare(out, ref, "softmax mean (chunks from generators)", rtol=1e-9, atol=1e-12)) is not None:
        return r
    if peak[0] >= len(sizes) // 2:   # a streaming loop holds a bounded number (3: zip's loop variables)
        return (f"not streaming: {peak[0]} earlier chunks were still held when the next one was requested; "
                f"process each (logits, values) pair and keep only m, s and the accumulator")
    return None


def check_kernel_smoothed_score(fn) -> CheckResult:
    """``fn(x, train, sigma, s)``: the score of the noised kernel-smoothed training distribution."""
    def body():
        g = _gen(3)
        train = torch.randn(6, 4, generator=g, dtype=torch.float64)
        x = 1.5 * torch.randn(3, 4, generator=g, dtype=torch.float64)
        for sigma, s in ((0.5, 0.3), (1.0, 1.2)):
            out = fn(x.clone(), train.clone(), sigma, s)
            ref = reference_kernel_smoothed_score(x, train, sigma, s)
            if (r := compare(out, ref, f"score at sigma={sigma}, s={s}", rtol=1e-6, atol=1e-9)) is not None:
                return r + " (each training point becomes N(x_i, s^2 I); noise adds sigma^2: the mixture " \
                           "has variance sigma^2 + s^2 in both the weights and the denominator)"
        return None
    return run_check("kernel_smoothed_score", body,
                     hint='Smoothing each training point with N(0, s^2 I) and then adding noise sigma gives a Gaussian mixture.',
                     hint2='The mixture has variance tau^2 = sigma^2 + s^2: score = (softmax(-|x - x_i|^2 / (2 tau^2)) @ train - x) / tau^2.')


def check_critical_smoothing(fn) -> CheckResult:
    """``fn()`` returns the critical s (a float) for two 1-pixel training images at -1 and +1."""
    def body():
        v = number(fn(), "the critical s")
        if not math.isfinite(v) or abs(v - reference_critical_smoothing()) > 1e-3:
            return (f"got {v:.4g}: write D_s(x, sigma -> 0) = P(x + s z > 0) - P(x + s z < 0) and ask when "
                    "its slope at the barycenter x = 0 drops below 1")
        return None
    return run_check("critical_smoothing", body,
                     hint='At sigma -> 0 the smoothed denoiser of two images at -1 and +1 is 2 Phi(x / s) - 1.',
                     hint2='The barycenter x = 0 attracts the flow when the slope of D at 0, 2 phi(0) / s, is below 1: solve 2 phi(0) / s = 1.')


# ------------------------------------------------------------------ derive, predict then run, explain the figure
# (issue 18; numeric answers are validated by :func:`course_lib.exercises.kinds.as_number`)
def reference_critical_smoothing_gap(delta: float) -> float:
    """Two images at distance delta: D_s(x) -> midpoint + (delta/2)(2 Phi(u/s) - 1) along the line joining
    them (u the coordinate along it); the slope at the midpoint is delta phi(0)/s = 1 at s = delta/sqrt(2 pi)."""
    return delta / math.sqrt(2 * math.pi)


def check_critical_smoothing_gap(fn) -> CheckResult:
    """Derive: ``fn(delta)`` returns the critical closed-form smoothing s* for two training images at
    Euclidean distance ``delta`` (any dimension)."""
    from .kinds import as_number

    def body():
        for delta in (2.0, 0.5, 10.75):
            v, reason = as_number(fn(delta), f"s* for delta={delta}")
            if reason:
                return reason
            ref = reference_critical_smoothing_gap(delta)
            if abs(v - ref) > 1e-4 * ref:
                if abs(v - delta * math.sqrt(2 / math.pi)) < 1e-4 * ref:
                    return (f"got {v:.4g} for delta={delta}: that is the delta = 2 answer times delta; rescale the "
                            f"two-image problem, x -> x * delta / 2 scales s with it")
                return (f"got {v:.4g} for delta={delta}: only the component of z along the line joining the images "
                        f"matters; write D_s there and ask when its slope at the midpoint reaches 1")
        return None
    return run_check("critical_smoothing_gap", body,
                     hint='Only the coordinate along the line joining the two images matters: it is the two-image exercise above, rescaled.',
                     hint2='Along that line D_s(u) = (delta/2)(2 Phi(u/s) - 1) around the midpoint; set its slope at u = 0 equal to 1 and solve for s.')


def check_predict_n_eff(fn, N: int = 50, seed: int = 0) -> CheckResult:
    """Predict, then run: ``fn(N)`` is your prediction of the effective number of images
    n_eff = exp(H(w)) of the ideal denoiser of N images (pixels in [-1, 1], d = 16) at sigma = 1000.
    The run computes it (``diagnostics.effective_number``); the prediction must be within 2%."""
    from ..denoisers import IdealDenoiser
    from ..diagnostics import effective_number
    from .kinds import check_number

    def run():
        g = _gen(seed)
        train = torch.rand(N, 1, 4, 4, generator=g, dtype=torch.float64) * 2 - 1
        x = torch.rand(3, 1, 4, 4, generator=g, dtype=torch.float64) * 2 - 1 + 1000 * torch.randn(
            3, 1, 4, 4, generator=g, dtype=torch.float64)
        return effective_number(IdealDenoiser(train), x, 1000.0).mean().item()
    return check_number("predict_n_eff", lambda: fn(N), run, rtol=0.02, what="your prediction",
                        note="at sigma >> the data's spread, who wins the guess?", inline_hint=False,
                        hint='At sigma = 1000 the noisy input is far from every training image, and at almost the same distance from each: what do the softmax weights look like?',
                        hint2='The logit differences are about |x| |x_i - x_j| / sigma^2, nearly 0; what is exp(entropy) of N nearly equal weights?')


NOVELTY_OPTIONS = {
    "a": "its samples become averages of several neighbouring digits, smoother than any real digit",
    "b": "its samples become noisier than real digits",
    "c": "the sampler stops before sigma = 0",
    "d": "the proxy measures the distance to the nearest training image",
}


def check_explain_novelty_residual(fn) -> CheckResult:
    """Explain the figure (novelty against fidelity): why does the closed-form smoothing's curve fall
    *below* the band of real test digits at large s? ``fn()`` returns a key of :data:`NOVELTY_OPTIONS`."""
    from .kinds import check_choice
    return check_choice("explain_novelty_residual", fn, NOVELTY_OPTIONS, "a", {
        "b": "noise raises the residual (that is kernel smoothing's curve, which climbs)",
        "c": "every machine is sampled to sigma = 0 on the same grid",
        "d": "that is the horizontal axis (novelty); the vertical one is the energy outside the principal subspace"},
        hint='The vertical axis is the energy outside the principal subspace of real digits: what kind of image has little of it?',
        hint2='Averaging several digits cancels their individual strokes, which live outside the top principal components.')
