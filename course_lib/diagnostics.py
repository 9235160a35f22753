"""Diagnostics of memorization (Chapter 1, Secs. "Posterior collapse" and "The impact of smoothing").

- Posterior entropy H(x, sigma) = -sum_i w_i log w_i of the ideal denoiser's weights and the
  effective number of contributing training images n_eff = exp(H) (1 = one image, N = uniform).
- The collapse sigma of a sampling trajectory: the largest sigma from which on (towards sigma = 0)
  the top posterior weight stays >= a threshold, i.e. where the guessing game has been decided.
- Novelty: the (root-mean-square per pixel) distance of a sample to its nearest training image,
  computed by :func:`course_lib.metrics.nearest_neighbor_distance`.
- Fidelity proxy: the rms per pixel of the part of (x - mu) outside the top-r principal subspace
  of the training data. Real held-out images have a small residual; a training image plus
  isotropic noise of std s has residual ~ s sqrt((d - r)/d).
"""
from __future__ import annotations

import math

import torch

__all__ = [
    "posterior_entropy", "effective_number", "posterior_along_trajectory", "collapse_sigma",
    "nearest_training_distance", "memorized_fraction", "novelty", "off_subspace_residual",
    "top_logit",
]


def _ideal_of(denoiser):
    """The IdealDenoiser behind ``denoiser`` (itself, or the ``.ideal`` of a smoothed variant)."""
    ideal = getattr(denoiser, "ideal", denoiser)
    if not hasattr(ideal, "posterior_stats"):
        raise TypeError(f"expected an IdealDenoiser (or a denoiser with .ideal), got {type(denoiser).__name__}")
    return ideal


def posterior_entropy(denoiser, x: torch.Tensor, sigma) -> torch.Tensor:
    """H(x, sigma) = -sum_i w_i log w_i in nats, (B,), streamed over the training set."""
    return _ideal_of(denoiser).posterior_stats(x, sigma)["entropy"]


def effective_number(denoiser, x: torch.Tensor, sigma) -> torch.Tensor:
    """n_eff(x, sigma) = exp(H): the number of training images that effectively share the weight."""
    return _ideal_of(denoiser).posterior_stats(x, sigma)["n_eff"]


def posterior_along_trajectory(denoiser, xs, sigmas, progress: bool = False) -> dict:
    """Posterior summaries at every step of a trajectory.

    ``xs`` is a sequence (or (T, B, C, H, W) tensor) of states and ``sigmas`` the T noise levels at
    which they were reached (positive; a final sigma = 0 state must be left out). Returns a dict of
    (T, B) tensors ``entropy``, ``n_eff``, ``max_weight``, ``argmax`` plus ``sigma`` (T,).
    """
    ideal = _ideal_of(denoiser)
    sig = torch.as_tensor(sigmas, dtype=torch.float64).flatten()
    if len(xs) != len(sig):
        raise ValueError(f"xs has {len(xs)} states but sigmas has {len(sig)} values")
    if bool((sig <= 0).any()):
        raise ValueError("sigmas must all be > 0 (drop the final sigma = 0 state)")
    it = range(len(sig))
    if progress:
        from tqdm.auto import tqdm
        it = tqdm(it, desc="posterior")
    rows = [ideal.posterior_stats(xs[t], float(sig[t])) for t in it]
    out = {k: torch.stack([r[k] for r in rows]) for k in rows[0]}
    out["sigma"] = sig
    return out


def collapse_sigma(sigmas, max_weight: torch.Tensor, threshold: float = 0.99) -> torch.Tensor:
    """Per trajectory, the largest sigma_t such that max_weight >= threshold at t and at every later
    (smaller-sigma) step; ``nan`` if the last step is still below the threshold.

    ``sigmas`` (T,) must be descending; ``max_weight`` is (T, B) (or (T,)).
    """
    sig = torch.as_tensor(sigmas, dtype=torch.float64).flatten()
    mw = torch.as_tensor(max_weight, dtype=torch.float64)
    squeeze = mw.ndim == 1
    mw = mw.reshape(len(sig), -1) if mw.ndim >= 1 else mw
    if mw.shape[0] != len(sig):
        raise ValueError(f"max_weight must have {len(sig)} rows (one per sigma), got shape {tuple(mw.shape)}")
    if len(sig) > 1 and bool((sig[1:] > sig[:-1]).any()):
        raise ValueError("sigmas must be descending (the order of a sampling trajectory)")
    if not 0 < threshold < 1:
        raise ValueError(f"threshold must lie in (0, 1), got {threshold!r}")
    ok = mw >= threshold
    # stays[t] = ok[t] and ok[t+1] and ... (reverse cumulative product)
    stays = torch.flip(torch.cumprod(torch.flip(ok.to(torch.int64), [0]), 0), [0]).bool()
    first = torch.where(stays.any(0), stays.to(torch.int64).argmax(0), torch.full_like(stays[0], -1, dtype=torch.int64))
    out = torch.where(first >= 0, sig[first.clamp_min(0)], torch.full_like(sig[:1].expand(first.shape[0]), math.nan))
    return out[0] if squeeze else out


def nearest_training_distance(samples: torch.Tensor, train: torch.Tensor, chunk_size: int = 4096):
    """Euclidean distance of every sample to its nearest training image, (B,), with the index (B,).

    The neighbour is found by :func:`course_lib.metrics.nearest_neighbor_distance`; the distance to
    it is then recomputed exactly as |x - x_nn|."""
    from .metrics import nearest_neighbor_distance

    _, idx = nearest_neighbor_distance(samples, train, chunk_size=chunk_size, return_index=True)
    # recompute |x - x_nn| directly: the |x|^2 - 2 x.y + |y|^2 form used for the search loses the
    # last digits to cancellation (~1e-3 for a float32 exact match), which would hide memorization
    nn = train[idx.to(train.device)].to(samples.device, samples.dtype)
    return (samples - nn).flatten(1).norm(dim=-1), idx


def memorized_fraction(distances: torch.Tensor, tol: float = 1e-3) -> float:
    """Fraction of samples whose rms-per-pixel distance to the training set is below ``tol``.

    ``distances`` are Euclidean distances divided by sqrt(d) (see :func:`novelty`)."""
    d = torch.as_tensor(distances)
    return float((d <= tol).double().mean())


def novelty(samples: torch.Tensor, train: torch.Tensor, chunk_size: int = 4096) -> torch.Tensor:
    """Novelty = |x - NN(x)| / sqrt(d): rms-per-pixel distance to the nearest training image, (B,)."""
    d = samples[0].numel()
    dist, _ = nearest_training_distance(samples, train, chunk_size=chunk_size)
    return dist / math.sqrt(d)


def off_subspace_residual(x: torch.Tensor, mean: torch.Tensor, U: torch.Tensor) -> torch.Tensor:
    """rms per pixel of (I - U U^T)(x - mean), (B,): the part of x outside the principal subspace
    spanned by the orthonormal columns of U (d, r). Lower = closer to the data's subspace."""
    B = x.shape[0]
    v = x.reshape(B, -1) - mean.reshape(1, -1).to(x)
    U = U.to(x)
    if U.ndim != 2 or U.shape[0] != v.shape[1]:
        raise ValueError(f"U must be (d={v.shape[1]}, r), got shape {tuple(U.shape)}")
    r = v - (v @ U) @ U.T
    return r.norm(dim=-1) / math.sqrt(v.shape[1])


def top_logit(x: torch.Tensor, train: torch.Tensor, sigma: float, chunk_size: int = 4096) -> torch.Tensor:
    """The largest logit -min_i |x - x_i|^2 / (2 sigma^2) of the ideal denoiser's softmax at ``x``, (B,)
    (Chapter 1, Sec. "Computing it"): the scale below which exp() of every logit underflows."""
    if not (math.isfinite(float(sigma)) and float(sigma) > 0):
        raise ValueError(f"sigma must be a finite number > 0, got {sigma!r}")
    dist, _ = nearest_training_distance(x, train, chunk_size=chunk_size)
    return -dist.double() ** 2 / (2 * float(sigma) ** 2)
