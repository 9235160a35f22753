"""Locality from data statistics: Wiener sensitivity fields and masks (Chapter 4; Lukoianov et al. 2025).

The Wiener filter of data with covariance Sigma (Chapter 2) is linear, D(x) = mu + L (x - mu) with

    L(sigma) = Sigma (Sigma + sigma^2 I)^-1 = U diag(lam / (lam + sigma^2)) U^T,

so its *sensitivity field* at output pixel q (row q of the Jacobian, :mod:`course_lib.jacobian`) is
row q of L, the same for every input. Pixels are correlated with their neighbours, so L is
concentrated near the diagonal: the optimal *linear* denoiser is already local, with a support that
grows with sigma. (L is symmetric, so row q and column q are the same vector.)

**Masks, in the authors' convention** (public code of Lukoianov et al., ``_projection_mask``; the
VP shrinkage ab lam / (ab lam + 1 - ab) there is lam / (lam + sigma^2) here with
sigma^2 = (1 - ab) / ab, the conversion of Chapter 0):

1. divide every ROW n of L by its diagonal entry: M[n, m] = L[n, m] / L[n, n] (a diagonal entry with
   |L[n, n]| < eps = 1e-6, e.g. a pixel that never varies in the data, is replaced by 1);
2. binarise with ONE global threshold: B[n, m] = 1 if |M[n, m]| >= tau * max_{n', m'} |M[n', m']|;
3. output pixel q compares the training images on the pixels n with B[n, q] = 1, i.e. on COLUMN q
   of B (the distance is sum_n B[n, q] (x_n - y_n)^2, the code's ``einsum("bkn,nm->bkm")``).

Column q of the row-normalised matrix is L[n, q] / L[n, n] = L[q, n] / L[n, n]: every entry of
row q divided by the *other* pixel's diagonal, not by L[q, q]. The two differ where pixel variances
differ (the dim border of MNIST against its bright centre). :func:`wiener_masks` returns the
matrix ``masks`` with ``masks[q, n] = B[n, q]`` so that ROW q of our result is the set output pixel q
compares (the convention of :class:`course_lib.denoisers.DataLocalDenoiser`);
``convention="row"`` gives the plain alternative |L[q, n] / L[q, q]| >= tau * max instead (Chapter 4
compares the two). tau per data set as in the authors' configs: :data:`TAU`.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch

__all__ = ["TAU", "wiener_matrix", "wiener_masks", "WienerMasks", "wiener_fields", "field_similarity",
           "binarise_fields", "without_center", "local_mass", "similarity_vs_sigma", "calibrate_tau", "TauCalibration"]

# the authors' thresholds (configs/pca_locality/*.yaml)
TAU = {"mnist": 0.005, "fashion_mnist": 0.005, "cifar10": 0.05, "celeba_hq": 0.02, "afhq": 0.02, "faces": 0.02}
CONVENTIONS = ("authors", "row")


def _gaussian(data):
    """A :class:`GaussianDenoiser` from training images (N, C, H, W), or the one passed in."""
    from .denoisers.gaussian import GaussianDenoiser

    if isinstance(data, GaussianDenoiser):
        return data
    if not isinstance(data, torch.Tensor) or data.ndim != 4:
        raise ValueError(f"train_images must be a (N, C, H, W) tensor or a GaussianDenoiser, got "
                         f"{type(data).__name__} {tuple(getattr(data, 'shape', ()))}")
    return GaussianDenoiser.from_data(data)


def _check_sigma(sigma) -> float:
    s = float(sigma)
    if not s > 0 or s != s or s == float("inf"):
        raise ValueError(f"sigma must be finite and > 0, got {sigma!r}")
    return s


def _check_tau(tau) -> float:
    t = float(tau)
    if not 0 <= t <= 1:
        raise ValueError(f"tau must lie in [0, 1] (a fraction of the largest entry), got {tau!r}")
    return t


def wiener_matrix(train_images, sigma) -> torch.Tensor:
    """L(sigma) = Sigma (Sigma + sigma^2 I)^-1, (d, d) float64 (module doc)."""
    g = _gaussian(train_images)
    return g.jacobian(_check_sigma(sigma)).to(torch.float64)


def wiener_masks(train_images, sigma, tau: float, convention: str = "authors", eps: float = 1e-6) -> torch.Tensor:
    """(d, d) bool masks; ROW q = the pixels output pixel q compares (module doc, Chapter 4 Sec. "Masks").

    ``train_images``: (N, C, H, W) images or a fitted :class:`GaussianDenoiser`. ``convention="authors"``:
    ``masks[q, n] = |L[n, q] / L[n, n]| >= tau * max|L / diag(L)[:, None]|`` (the public code's column q of
    the row-normalised matrix); ``"row"``: ``|L[q, n] / L[q, q]| >= tau * max`` (row q normalised by its own
    diagonal). Diagonal entries below ``eps`` in absolute value are replaced by 1, as in the code.
    """
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}")
    tau = _check_tau(tau)
    L = wiener_matrix(train_images, sigma)
    diag = torch.diagonal(L).clone()
    diag[diag.abs() < eps] = 1.0
    M = (L / diag[:, None]).abs()              # row n divided by L[n, n]
    if convention == "authors":
        M = M.T                                 # row q of the result = column q of the row-normalised matrix
    else:
        M = (L / diag[None, :]).abs().T         # M[q, n] = L[n, q] / L[q, q] = L[q, n] / L[q, q]
    return M >= tau * M.max()


class WienerMasks:
    """``sigma -> wiener_masks(train_images, sigma, tau)`` with the covariance fitted once and the
    masks of the last ``cache_size`` sigmas kept (the argument ``masks=`` of ``DataLocalDenoiser``)."""

    def __init__(self, train_images, tau: float, convention: str = "authors", cache_size: int = 64):
        self.gaussian = _gaussian(train_images)
        self.tau = _check_tau(tau)
        if convention not in CONVENTIONS:
            raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}")
        self.convention, self.cache_size, self._cache = convention, int(cache_size), {}

    def __call__(self, sigma) -> torch.Tensor:
        key = round(_check_sigma(sigma), 12)
        if key not in self._cache:
            if len(self._cache) >= self.cache_size:
                self._cache.pop(next(iter(self._cache)))
            self._cache[key] = wiener_masks(self.gaussian, key, self.tau, self.convention)
        return self._cache[key]

    @property
    def cache_key(self) -> str:
        from .stats import tensor_hash

        return f"wiener-masks-{tensor_hash(self.gaussian.mean)}-{tensor_hash(self.gaussian.lam)}-{self.tau}-{self.convention}"

    def __repr__(self):
        return f"WienerMasks(tau={self.tau}, convention={self.convention!r}, shape={self.gaussian.shape})"


def wiener_fields(train_images, sigma, pixels) -> torch.Tensor:
    """Rows q of L(sigma) for the given pixels (see :func:`course_lib.jacobian.as_pixels`), (Q, C, H, W)."""
    from .jacobian import as_pixels

    g = _gaussian(train_images)
    C, H, W = g.shape
    p = as_pixels(pixels, g.shape)
    flat = p[:, 0] * H * W + p[:, 1] * W + p[:, 2]
    return wiener_matrix(g, sigma)[flat].reshape(-1, C, H, W)


def binarise_fields(fields: torch.Tensor, tau: float) -> torch.Tensor:
    """Support of each field: |f| >= tau * max|f| per field (Q, ...) -> bool (Q, ...)."""
    a = fields.abs().flatten(1)
    return (a >= _check_tau(tau) * a.amax(1, keepdim=True)).reshape(fields.shape)


def without_center(fields: torch.Tensor, pixels) -> torch.Tensor:
    """A copy of fields (Q, C, H, W) with the output pixel's own entry (c, i, j) of each field set to 0:
    the self-weight c_skip-like spike dominates a field's mass and is shared by every denoiser, so
    locality comparisons (Chapter 4, "Scrambled pixels") look at the rest."""
    from .jacobian import as_pixels

    p = as_pixels(pixels, fields.shape[1:])
    out = fields.clone()
    out[torch.arange(len(p)), p[:, 0], p[:, 1], p[:, 2]] = 0
    return out


def local_mass(fields: torch.Tensor, pixels, radius: int = 3) -> torch.Tensor:
    """Fraction of sum |f| (output pixel itself excluded) within Chebyshev distance ``radius`` of the
    output pixel, per field, (Q,) float64: 1 for a field confined to the (2 r + 1)^2 window."""
    from .jacobian import as_pixels

    p = as_pixels(pixels, fields.shape[1:])
    a = without_center(fields, pixels).abs().double().sum(1)       # (Q, H, W)
    H, W = a.shape[-2:]
    di = (torch.arange(H).view(1, H, 1) - p[:, 1].view(-1, 1, 1)).abs()
    dj = (torch.arange(W).view(1, 1, W) - p[:, 2].view(-1, 1, 1)).abs()
    near = (torch.maximum(di, dj) <= int(radius)).to(a.device)
    tot = a.flatten(1).sum(1)
    return torch.where(tot > 0, (a * near).flatten(1).sum(1) / tot.clamp_min(1e-300), torch.zeros_like(tot))


def field_similarity(a: torch.Tensor, b: torch.Tensor, kind: str = "cosine", tau: float = 0.1) -> torch.Tensor:
    """Similarity of two batches of fields (Q, ...), (Q,) float64.

    ``"cosine"``: cosine of the flattened fields (1 = same shape up to a positive factor; the score
    used in Chapter 4); ``"iou"``: intersection over union of their supports binarised at
    ``tau * max|f|`` per field (:func:`binarise_fields`).
    """
    if a.shape != b.shape:
        raise ValueError(f"fields must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    a, b = a.double().flatten(1), b.double().flatten(1)
    if kind == "cosine":
        return torch.nn.functional.cosine_similarity(a, b, dim=1, eps=1e-300)
    if kind == "iou":
        sa, sb = binarise_fields(a, tau), binarise_fields(b, tau)
        inter, union = (sa & sb).sum(1).double(), (sa | sb).sum(1).double()
        return torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union))
    raise ValueError(f"kind must be 'cosine' or 'iou', got {kind!r}")


def similarity_vs_sigma(denoiser, train_images, x0: torch.Tensor, sigmas: Sequence[float], pixels,
                        n_noise: int = 1, kind: str = "cosine", generator: torch.Generator | None = None,
                        progress: bool = False) -> dict:
    """Average sensitivity field of ``denoiser`` (E_x g_q, :func:`course_lib.jacobian.average_sensitivity`
    over x = x0 + sigma z) against the Wiener field row q of L(sigma), per sigma and pixel.

    Returns {"sigmas": (S,), "similarity": (S, Q) float64, "net": list of (Q, C, H, W) fields,
    "wiener": list of (Q, C, H, W) fields}.
    """
    from tqdm.auto import tqdm

    from .jacobian import average_sensitivity

    g = _gaussian(train_images)
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    out = {"sigmas": torch.tensor([float(s) for s in sigmas], dtype=torch.float64), "net": [], "wiener": []}
    sims = []
    for s in tqdm(out["sigmas"].tolist(), disable=not progress, desc="fields vs sigma"):
        f = average_sensitivity(denoiser, x0, s, pixels, n_noise=n_noise, generator=gen).mean.double().cpu()
        w = wiener_fields(g, s, pixels).cpu()
        out["net"].append(f)
        out["wiener"].append(w)
        sims.append(field_similarity(f, w, kind))
    out["similarity"] = torch.stack(sims)
    return out


class TauCalibration:
    """``tau`` (the best candidate), ``candidates``, ``scores`` (n_candidates,) mean cosine over steps and
    seeds, ``per_step`` (K, n_candidates)."""

    def __init__(self, tau, candidates, scores, per_step):
        self.tau, self.candidates, self.scores, self.per_step = tau, candidates, scores, per_step

    def __repr__(self):
        return f"TauCalibration(tau={self.tau}, candidates={self.candidates})"


def calibrate_tau(reference: Callable, train_images: torch.Tensor, x_T: torch.Tensor, sigmas,
                  candidates: Sequence[float], solver: str = "euler", trajectory=None,
                  progress: bool = False) -> TauCalibration:
    """Pick ONE tau for the data-local denoiser against ``reference`` (e.g. a network), as Chapter 5
    calibrates P(sigma): along the reference's own trajectory from ``x_T``, compare its noise prediction
    eps = (x - D(x, sigma)) / sigma with the data-local denoiser's at each candidate tau (cosine per
    seed), and return the tau with the highest mean over steps and seeds.
    """
    from .calibrate import similarity
    from .denoisers.datalocal import DataLocalDenoiser
    from .sampling import check_sigmas, sample

    cands = [_check_tau(t) for t in candidates]
    if not cands:
        raise ValueError("candidates must list at least one tau")
    sig = check_sigmas(sigmas)
    if trajectory is None:
        trajectory = sample(reference, x_T, sig, solver=solver, return_trajectory=True)
    steps = [float(s) for s in trajectory.sigmas[:-1] if float(s) > 0]
    g = _gaussian(train_images)
    machines = [DataLocalDenoiser(train_images, WienerMasks(g, t)) for t in cands]
    from tqdm.auto import tqdm

    per_step = torch.empty(len(steps), len(cands), dtype=torch.float64)
    for k in tqdm(range(len(steps)), disable=not progress, desc="calibrate tau"):
        s, x = steps[k], trajectory.x[k]
        eps_ref = (x - trajectory.denoised[k]) / s
        for j, D in enumerate(machines):
            per_step[k, j] = similarity(eps_ref, (x - D(x, s)) / s, "cosine").double().mean().cpu()
    scores = per_step.mean(0)
    return TauCalibration(cands[int(scores.argmax())], cands, scores, per_step)
