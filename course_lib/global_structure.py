"""Global structure: memorization vs generalization, adaptive bases, what local machines miss (Chapter 7).

1. **Memorization -> generalization as N grows** (Kadkhodaie, Guth, Simoncelli & Mallat, ICLR 2024,
   Sec. 2): two networks of one architecture trained on DISJOINT training sets of size N. When they
   memorize, each reproduces its own training images and their samples from the same noise differ;
   when they generalize, both learn the same density and draw nearly the same image from the same noise.
   :func:`generalization_curve` measures, per N, the r^2 between the two networks' samples from the
   same seeds and each sample's rms distance to the nearest image of its network's training set;
   :func:`crossing` locates the transition (the N where the cross-network r^2 crosses a level, by
   linear interpolation in log N).
2. **Geometry-adaptive harmonic bases** (ibid., Sec. 3): near a noisy image y the denoiser acts
   linearly, D(y + dy) ~ D(y) + J dy with J = dD/dy. For an MMSE denoiser J = I + sigma^2 H_y log p_sigma
   is symmetric with eigenvalues in [0, 1]: D shrinks y along J's eigenvectors by the eigenvalues.
   :func:`adaptive_basis` computes J with :func:`course_lib.jacobian.sensitivity_fields` and
   eigen-decomposes its symmetric part; ``trace J`` (:func:`effective_dimension`) is the dimension of
   the subspace the denoiser keeps. For the Wiener filter J = U diag(lam / (lam + sigma^2)) U^T: the
   eigenvectors are the PCA basis, fixed; a network's adapt to the image. :func:`subspace_overlap` and
   :func:`wavelet_compaction` compare the bases.
3. **What local machines miss**: :func:`class_consistency`, the share of a sample's k nearest training
   digits that carry its majority label: a digit-like sample has neighbours of one class, a patch mosaic
   neighbours of several.
"""
from __future__ import annotations

import math

import torch

from .denoisers.base import check_images

__all__ = ["nsweep_pairs", "generalization_curve", "novelty_of", "crossing", "full_jacobian", "adaptive_basis",
           "effective_dimension", "subspace_overlap", "wavelet_compaction", "class_consistency"]


# ------------------------------------------------------------------------------------------ N-sweep
def nsweep_pairs(include_halves: bool = True) -> dict:
    """{N: (name_a, name_b)} of the committed N-sweep networks (``mnist_nsweep_n{N}_{a,b}_book``) and,
    with ``include_halves``, Chapter 3's two 2,500-image halves (a wider UNet: widths 32/64/64)."""
    from .configs import NSWEEP_N
    from .nets import list_pretrained

    have = set(list_pretrained())
    out = {N: (f"mnist_nsweep_n{N}_a_book", f"mnist_nsweep_n{N}_b_book") for N in NSWEEP_N}
    if include_halves:
        out[2500] = ("mnist_unet_half_a_book", "mnist_unet_half_b_book")
    return {N: p for N, p in out.items() if p[0] in have and p[1] in have}


def generalization_curve(pairs: dict, seeds, n_steps: int = 18, solver: str = "heun", device=None,
                         progress: bool = False) -> dict:
    """Per N: {"r2": (S,) r^2 of network b's sample with network a's as target, same noise;
    "novelty_a", "novelty_b": (S,) rms distance of each sample to the nearest image of that network's
    own training set; "samples_a", "samples_b": (S, C, H, W)} (module doc, 1.)."""
    from .compare import compare
    from .creativity import network_training_images
    from .diagnostics import novelty
    from .nets import load_pretrained
    from .schedules import karras_sigmas

    sig = karras_sigmas(n_steps)
    out = {}
    for N, (a, b) in sorted(pairs.items()):
        Da, Db = (load_pretrained(n, device=device or "cpu") for n in (a, b))
        c = compare({"b": Db}, Da, sig, list(seeds), (1, 28, 28), solver, reference_name="a", device=device,
                    progress=progress)
        sa, sb = c.samples["a"], c.samples["b"]
        out[N] = {"r2": c.r2["b"], "samples_a": sa, "samples_b": sb,
                  "novelty_a": novelty(sa, network_training_images(Da)), "novelty_b": novelty(sb, network_training_images(Db))}
    return out


def novelty_of(images: torch.Tensor, network: str) -> torch.Tensor:
    """(B,) rms distance of ``images`` to the nearest training image of the committed ``network``
    (the baseline for :func:`generalization_curve`'s novelty: held-out test digits)."""
    from .creativity import network_training_images
    from .diagnostics import novelty
    from .nets import load_pretrained

    return novelty(images, network_training_images(load_pretrained(network)))


def crossing(Ns, values, level: float = 0.5) -> float:
    """The first N where ``values`` (increasing in N, e.g. the cross-network r^2) reaches ``level``,
    by linear interpolation in log N between the bracketing points; nan if it never does, N[0] if the
    first value already does."""
    N = torch.as_tensor(Ns, dtype=torch.float64)
    v = torch.as_tensor(values, dtype=torch.float64)
    if N.ndim != 1 or N.shape != v.shape or len(N) < 1:
        raise ValueError(f"Ns and values must be 1-D of equal length, got {tuple(N.shape)} and {tuple(v.shape)}")
    if bool((N <= 0).any()) or bool((N[1:] <= N[:-1]).any()):
        raise ValueError(f"Ns must be positive and increasing, got {N.tolist()}")
    if v[0] >= level:
        return float(N[0])
    for i in range(1, len(N)):
        if v[i] >= level:
            t = float((level - v[i - 1]) / (v[i] - v[i - 1]))
            return float(math.exp(math.log(N[i - 1]) + t * (math.log(N[i]) - math.log(N[i - 1]))))
    return float("nan")


# ------------------------------------------------------------------------------------------ Jacobian
def full_jacobian(denoiser, y: torch.Tensor, sigma: float, chunk_size: int = 98) -> torch.Tensor:
    """J[q, p] = d D(y, sigma)_q / d y_p for one image y (1, C, H, W); a (d, d) float tensor."""
    from .jacobian import sensitivity_fields

    y = check_images(y, "y")
    if y.shape[0] != 1:
        raise ValueError(f"y must hold one image (1, C, H, W), got {tuple(y.shape)}")
    d = y[0].numel()
    g = sensitivity_fields(denoiser, y, sigma, torch.arange(d), chunk_size=chunk_size)  # (d, 1, C, H, W)
    return g.reshape(d, d)


def adaptive_basis(denoiser, y: torch.Tensor, sigma: float, chunk_size: int = 98) -> dict:
    """Eigen-decomposition of the symmetric part of J = dD/dy at y (module doc, 2.):
    {"eigenvalues": (d,) descending, "eigenvectors": (d, d) columns, "asymmetry": |J - J^T|_F / |J|_F,
    "trace": tr J}."""
    J = full_jacobian(denoiser, y, sigma, chunk_size).double()
    S = 0.5 * (J + J.T)
    lam, V = torch.linalg.eigh(S)
    lam, V = lam.flip(0), V.flip(1)
    asym = float((J - J.T).norm() / J.norm().clamp_min(1e-300))
    return {"eigenvalues": lam, "eigenvectors": V, "asymmetry": asym, "trace": float(torch.trace(J))}


def effective_dimension(eigenvalues) -> float:
    """sum_k lambda_k = tr J: the number of directions the denoiser keeps (a shrinkage of 1 counts 1)."""
    return float(torch.as_tensor(eigenvalues, dtype=torch.float64).sum())


def subspace_overlap(A: torch.Tensor, B: torch.Tensor) -> float:
    """|A^T B|_F^2 / k for orthonormal columns A (d, k), B (d, k): 1 for the same subspace, 0 for
    orthogonal ones, k/d on average for a random one."""
    if A.ndim != 2 or A.shape != B.shape:
        raise ValueError(f"A and B must both be (d, k), got {tuple(A.shape)} and {tuple(B.shape)}")
    return float((A.double().T @ B.double()).pow(2).sum() / A.shape[1])


def wavelet_compaction(vectors: torch.Tensor, shape, fraction: float = 0.05, wavelet: str = "haar",
                       level: int = 2) -> torch.Tensor:
    """Share of each column's energy held by its largest ``fraction`` of (orthonormal) wavelet
    coefficients, (k,): near 1 for a vector that is a few wavelets, near ``fraction`` for white noise."""
    from .wavelets import dwt2_packed

    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must lie in (0, 1], got {fraction!r}")
    k = vectors.shape[1]
    c = dwt2_packed(vectors.T.reshape(k, *shape).double(), wavelet, level).reshape(k, -1) ** 2
    m = max(1, int(round(fraction * c.shape[1])))
    return c.topk(m, dim=1).values.sum(1) / c.sum(1).clamp_min(1e-300)


# ------------------------------------------------------------------------------------------ global stats
def class_consistency(samples: torch.Tensor, train: torch.Tensor, labels: torch.Tensor, k: int = 10) -> torch.Tensor:
    """(B,) share of each sample's ``k`` nearest training images (Euclidean) with the most common label."""
    samples, train = check_images(samples, "samples"), check_images(train, "train")
    if labels.shape != (train.shape[0],):
        raise ValueError(f"labels must have shape ({train.shape[0]},), got {tuple(labels.shape)}")
    if not 1 <= k <= train.shape[0]:
        raise ValueError(f"k must lie in [1, {train.shape[0]}], got {k!r}")
    x, t = samples.flatten(1).double(), train.flatten(1).double()
    d2 = (x * x).sum(1, keepdim=True) - 2 * x @ t.T + (t * t).sum(1)
    idx = d2.topk(k, dim=1, largest=False).indices
    lab = labels.to(idx.device)[idx]                                       # (B, k)
    counts = torch.nn.functional.one_hot(lab, int(labels.max()) + 1).sum(1)  # (B, classes)
    return counts.max(1).values.double() / k
