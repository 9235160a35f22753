"""Monte Carlo over training sets, and split experiments on real data (Chapter 3).

The deterministic equivalents of :mod:`course_lib.rmt` are checked against many independently drawn
training sets. For Gaussian data x = mu + U diag(sqrt(s)) z the law of U^T Sigma_hat U does not depend
on U, so the Monte Carlo works directly in the population eigenbasis (U = I, mu = 0): a batch of B
data sets is a (B, n, d) tensor, Sigma_hat a (B, d, d) tensor, and each data set is eigendecomposed
once (batched ``eigh``); any spectral function f(Sigma_hat) x is then V diag(f(ell)) V^T x.

On real data (:func:`wiener_generation_map`, :func:`disjoint_splits`, :func:`pc_stratified_splits`)
the Wiener sampler of each split is applied in closed form from an SVD of the centred split.
"""
from __future__ import annotations

import math
from typing import Callable

import torch

from .rmt import spectrum
from .validate import int_like

__all__ = ["power_law_spectrum", "batched_eigh", "sample_spectra", "mc_values", "spectral_apply", "mean_se", "var_se",
           "wiener_generation_map", "disjoint_splits", "pc_stratified_splits", "split_differences",
           "subset_filter_diagonal", "validate_equivalents", "gaussian_surrogate"]

_F64 = torch.float64


def power_law_spectrum(d: int, alpha: float = 1.0, normalize: bool = True) -> torch.Tensor:
    """s_k = k^-alpha, k = 1..d (float64), rescaled to mean 1 when ``normalize``."""
    d = int_like(d)
    if not isinstance(d, int) or d < 1:
        raise ValueError(f"d must be an int >= 1, got {d!r}")
    s = torch.arange(1, d + 1, dtype=_F64) ** (-float(alpha))
    return s / s.mean() if normalize else s


def batched_eigh(S: torch.Tensor):
    """``torch.linalg.eigh`` of a batch of small symmetric matrices. On CPU it runs with one torch thread:
    LAPACK on many small matrices gains nothing from threads, and on a loaded machine the thread
    pool's spin-waits made it 100x slower (measured: 0.17 s vs 21 s for 250 matrices 60 x 60)."""
    if S.device.type != "cpu":
        return torch.linalg.eigh(S)
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        return torch.linalg.eigh(S)
    finally:
        torch.set_num_threads(old)


def sample_spectra(eigenvalues, n: int, n_sets: int, generator: torch.Generator, *, center: bool = False,
                   return_mean: bool = False):
    """Draw ``n_sets`` Gaussian training sets of size n in the population eigenbasis and eigendecompose them.

    Sigma_hat = X^T X / n (known mean, ``center=False``) or the centred (X - X_bar)^T (X - X_bar)/(n - 1).
    Returns (ell (B, d), V (B, d, d)) with Sigma_hat_b = V_b diag(ell_b) V_b^T, float64, and the
    sample means mu_hat (B, d) as a third element when ``return_mean``.
    """
    s = spectrum(eigenvalues)
    n = int_like(n)
    if not isinstance(n, int) or n < (2 if center else 1):
        raise ValueError(f"n must be an int >= {2 if center else 1}, got {n!r}")
    n_sets = int_like(n_sets)
    if not isinstance(n_sets, int) or n_sets < 1:
        raise ValueError(f"n_sets must be an int >= 1, got {n_sets!r}")
    z = torch.randn(n_sets, n, s.numel(), generator=generator, dtype=_F64).to(s.device)
    X = z * s.sqrt()
    mu_hat = X.mean(1)
    if center:
        X = X - mu_hat[:, None, :]
    S = X.transpose(1, 2) @ X / (n - 1 if center else n)
    ell, V = batched_eigh(S)
    return (ell.clamp(min=0), V, mu_hat) if return_mean else (ell.clamp(min=0), V)


def spectral_apply(ell, V, f: Callable, x) -> torch.Tensor:
    """f(Sigma_hat_b) x for every data set b: V_b diag(f(ell_b)) V_b^T x.

    ``x``: (d,) or (K, d) vectors shared by every data set, or (B, K, d) with one set of K vectors per
    data set. Returns (B, K, d).
    """
    x = torch.as_tensor(x, dtype=V.dtype, device=V.device)
    if x.ndim == 3:
        if x.shape[0] != V.shape[0] or x.shape[-1] != V.shape[-1]:
            raise ValueError(f"x of shape {tuple(x.shape)} must be (B={V.shape[0]}, K, d={V.shape[-1]})")
        c = torch.einsum("bij,bki->bkj", V, x)
    else:
        c = torch.einsum("bij,ki->bkj", V, x.reshape(-1, V.shape[-1]))     # V^T x
    return torch.einsum("bij,bkj->bki", V, c * f(ell)[:, None, :])


def mc_values(eigenvalues, n: int, n_sets: int, fn: Callable, generator: torch.Generator, *,
              chunk: int = 250, center: bool = False, return_mean: bool = False,
              progress: bool = False) -> torch.Tensor:
    """Stack fn(ell, V) -> (b, ...) (or fn(ell, V, mu_hat) with ``return_mean``) over ``n_sets`` data sets
    drawn in chunks of ``chunk`` (memory ~ chunk d^2)."""
    from tqdm.auto import tqdm

    out = []
    for i in tqdm(range(0, n_sets, chunk), disable=not progress, desc="training sets"):
        out.append(fn(*sample_spectra(eigenvalues, n, min(chunk, n_sets - i), generator, center=center,
                                      return_mean=return_mean)))
    return torch.cat(out)


def mean_se(values: torch.Tensor):
    """Sample mean over dim 0 and its standard error sqrt(var / B)."""
    B = values.shape[0]
    if B < 2:
        raise ValueError(f"need at least 2 Monte Carlo draws, got {B}")
    return values.mean(0), values.std(0) / math.sqrt(B)


def var_se(values: torch.Tensor):
    """Sample variance over dim 0 (unbiased) and its standard error sqrt((m4 - m2^2) / B)."""
    B = values.shape[0]
    if B < 4:
        raise ValueError(f"need at least 4 Monte Carlo draws, got {B}")
    dev2 = (values - values.mean(0)) ** 2
    return dev2.sum(0) / (B - 1), dev2.std(0) / math.sqrt(B)


# ----------------------------------------------------------------------------- real data
def _flat(images, name):
    if not isinstance(images, torch.Tensor) or images.ndim < 2:
        raise ValueError(f"{name} must be a tensor (N, ...) of images, got {type(images).__name__}")
    return images.reshape(images.shape[0], -1).to(_F64)


def wiener_generation_map(train, x_T, sigma_T: float = 80.0, sigma_0: float = 0.0) -> torch.Tensor:
    """Closed-form Wiener (Gaussian PF-ODE) sample of one training split for seeds x_T (Chapter 2):

        x_0 = mu_hat + (Sigma_hat + sigma_0^2)^(1/2) (Sigma_hat + sigma_T^2)^(-1/2) (x_T - mu_hat),

    with mu_hat, Sigma_hat (divisor n - 1) of ``train`` (N, ...). Computed from a thin SVD of the
    centred split, so the cost is O(N d min(N, d)); returns float64 with the shape of x_T.
    """
    X = _flat(train, "train")
    if X.shape[0] < 2:
        raise ValueError(f"train needs at least 2 images, got {X.shape[0]}")
    xT = _flat(x_T, "x_T").to(X.device)
    if xT.shape[1] != X.shape[1]:
        raise ValueError(f"x_T has {xT.shape[1]} pixels per image, train has {X.shape[1]}")
    if not (math.isfinite(sigma_T) and sigma_T > 0) or not (math.isfinite(sigma_0) and 0 <= sigma_0 < sigma_T):
        raise ValueError(f"need 0 <= sigma_0 < sigma_T, got sigma_0={sigma_0!r}, sigma_T={sigma_T!r}")
    mu = X.mean(0)
    _, S, Vh = torch.linalg.svd(X - mu, full_matrices=False)
    ell = S**2 / (X.shape[0] - 1)
    y = xT - mu
    c = y @ Vh.T
    g = torch.sqrt((ell + sigma_0**2) / (ell + sigma_T**2))
    out = mu + (c * g) @ Vh + (sigma_0 / sigma_T) * (y - c @ Vh)
    return out.reshape(x_T.shape)


def disjoint_splits(N: int, n: int, n_splits: int, generator: torch.Generator) -> torch.Tensor:
    """``n_splits`` disjoint random index sets of size n from range(N): (n_splits, n)."""
    n = int_like(n)
    if not isinstance(n, int) or n < 2 or n * n_splits > N:
        raise ValueError(f"need n >= 2 and n * n_splits <= N; got n={n!r}, n_splits={n_splits}, N={N}")
    return torch.randperm(N, generator=generator)[: n * n_splits].reshape(n_splits, n)


def pc_stratified_splits(images, k: int, n: int, generator: torch.Generator, U=None):
    """Two splits of size n with *different* moments: images whose projection on principal component k
    (0-based) is below vs above the median, each subsampled at random to n (needs n <= N/2).
    ``U`` (d, r): precomputed principal directions as columns (else an SVD of ``images``).
    Returns (idx_low, idx_high)."""
    X = _flat(images, "images")
    N = X.shape[0]
    n = int_like(n)
    if not isinstance(n, int) or n < 2 or 2 * n > N:
        raise ValueError(f"n must be an int in [2, N/2 = {N // 2}], got {n!r}")
    mu = X.mean(0)
    if U is None:
        _, _, Vh = torch.linalg.svd(X - mu, full_matrices=False)
    else:
        Vh = torch.as_tensor(U, dtype=_F64, device=X.device).T
    if not 0 <= k < Vh.shape[0]:
        raise ValueError(f"k must be in [0, {Vh.shape[0]}), got {k!r}")
    order = torch.argsort((X - mu) @ Vh[k])
    low, high = order[: N // 2], order[N - N // 2:]
    pick = lambda idx: idx[torch.randperm(len(idx), generator=generator)[:n]]
    return pick(low), pick(high)


def split_differences(images, idx_a, idx_b, x_T, sigma_T: float = 80.0) -> torch.Tensor:
    """x^(a) - x^(b): the Wiener-sampler outputs of two training splits from the same seeds x_T.

    ``idx_a``, ``idx_b``: (P, n) index sets (P split pairs) into ``images``; returns (P, B, d) float64.
    """
    idx_a, idx_b = torch.as_tensor(idx_a).reshape(-1, torch.as_tensor(idx_a).shape[-1]), torch.as_tensor(idx_b)
    idx_b = idx_b.reshape(idx_a.shape[0], -1)
    out = [(wiener_generation_map(images[a], x_T, sigma_T) - wiener_generation_map(images[b], x_T, sigma_T))
           .reshape(len(x_T), -1) for a, b in zip(idx_a, idx_b)]
    return torch.stack(out)


def subset_filter_diagonal(images, U, n: int, sigma: float, n_sets: int, generator: torch.Generator) -> torch.Tensor:
    """Diagonal, in the basis U (d, r), of the empirical Wiener filter Sigma_hat (Sigma_hat + sigma^2)^-1 of
    ``n_sets`` random subsets of size n of ``images`` (mean-centred, divisor n - 1): (n_sets, r).
    Its average over subsets is what the 1-point deterministic equivalent predicts."""
    X = _flat(images, "images")
    n = int_like(n)
    if not isinstance(n, int) or not 2 <= n <= X.shape[0]:
        raise ValueError(f"n must be an int in [2, N={X.shape[0]}], got {n!r}")
    if not (math.isfinite(sigma) and sigma > 0):
        raise ValueError(f"sigma must be a finite number > 0, got {sigma!r}")
    U = torch.as_tensor(U, dtype=_F64, device=X.device)
    out = []
    for _ in range(n_sets):
        Xs = X[torch.randperm(X.shape[0], generator=generator)[:n]]
        _, S, Vh = torch.linalg.svd(Xs - Xs.mean(0), full_matrices=False)
        ell = S**2 / (n - 1)
        P = Vh @ U                                                     # (min(n, d), r)
        out.append(((ell / (ell + sigma**2))[:, None] * P * P).sum(0))
    return torch.stack(out)


def validate_equivalents(eigenvalues, n: int, n_sets: int, generator: torch.Generator, *, sigma: float = 0.3,
                         lam: float = 0.1, chunk: int = 250, progress: bool = False) -> dict:
    """Monte Carlo over ``n_sets`` Gaussian training sets vs every deterministic equivalent of Chapter 3.

    Probes: the top PC v = u_1 and a random input w ~ N(0, Sigma + sigma^2) for the denoiser; a seed
    xbar ~ N(0, I) for the generation map. Returns {name: (theory, mc, standard error)} as floats for
    the trace DE, the 1-point and 2-point DEs of v^T D(x), and the total mean and variance of the map.
    """
    from . import rmt

    s = spectrum(eigenvalues)
    d = s.numel()
    v = torch.zeros(d, dtype=_F64, device=s.device)
    v[0] = 1.0
    w = torch.randn(d, generator=generator, dtype=_F64).to(s.device) * (s + sigma**2).sqrt()
    xbar = torch.randn(d, generator=generator, dtype=_F64).to(s.device)

    def fn(ell, V):
        tr = (ell / (ell + lam)).mean(-1)
        den = spectral_apply(ell, V, lambda l: l / (l + sigma**2), w)[:, 0, 0]
        gen = spectral_apply(ell, V, torch.sqrt, xbar)[:, 0]
        return torch.cat([tr[:, None], den[:, None], gen], 1)

    q = mc_values(s, n, n_sets, fn, generator, chunk=chunk, progress=progress)
    m, se = mean_se(q)
    var, vse = var_se(q)
    gm = rmt.generation_mean(xbar, s, n)
    gv = rmt.generation_variance(s, n, xbar[None])[0]
    return {
        "tr[S_hat (S_hat + lam)^-1]": (rmt.trace_de(lam, s, n).item(), m[0].item(), se[0].item()),
        "E[u1^T D(x)]  (1-point)": ((w * rmt.one_point_filter(sigma, s, n))[0].item(), m[1].item(), se[1].item()),
        "Var[u1^T D(x)]  (2-point)": (rmt.two_point_variance(v, w, sigma, s, n).item(), var[1].item(), vse[1].item()),
        "||E[S_hat^1/2 xbar]||^2": (gm.pow(2).sum().item(), m[2:].pow(2).sum().item(),
                                    2 * (m[2:] * se[2:]).norm().item()),
        "sum_k Var[u_k^T S_hat^1/2 xbar]": (gv.sum().item(), var[2:].sum().item(), vse[2:].pow(2).sum().sqrt().item()),
    }


def gaussian_surrogate(mu, eigenvalues, U, n: int, generator: torch.Generator, shape=None) -> torch.Tensor:
    """n i.i.d. draws of N(mu, U diag(s) U^T): a Gaussian stand-in with a dataset's first two moments.

    ``mu`` (d,), ``eigenvalues`` (r,), ``U`` (d, r). Returns (n, *shape) float64 (shape defaults to (d,)).
    Comparing real splits with surrogate splits separates non-Gaussian effects from finite-size ones.
    """
    s = spectrum(eigenvalues)
    U = torch.as_tensor(U, dtype=_F64, device=s.device)
    mu = torch.as_tensor(mu, dtype=_F64, device=s.device)
    if U.shape != (mu.numel(), s.numel()):
        raise ValueError(f"U must have shape (d={mu.numel()}, r={s.numel()}), got {tuple(U.shape)}")
    z = torch.randn(n, s.numel(), generator=generator, dtype=_F64).to(s.device)
    x = mu + (z * s.sqrt()) @ U.T
    return x.reshape(n, *(shape if shape is not None else (mu.numel(),)))
