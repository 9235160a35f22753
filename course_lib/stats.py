"""Dataset statistics: chunked mean, covariance and eigendecomposition, cached on disk (Chapter 2).

For images flattened to vectors ``x_i`` in R^d (d = C*H*W),

.. math:: \\mu = \\frac1N\\sum_i x_i,\\qquad
          \\Sigma = \\frac{1}{N - \\text{correction}}\\sum_i (x_i-\\mu)(x_i-\\mu)^\\top
          = U\\,\\mathrm{diag}(\\lambda)\\,U^\\top,

with ``lam`` descending and clamped at 0. The sums are streamed over chunks of images (memory
O(chunk_size * d + d^2), independent of N), accumulated in float64 around a shift (the first
chunk's mean) so that the one-pass formula does not lose precision. ``correction=1`` (default)
matches ``torch.cov`` / ``numpy.cov``; ``correction=0`` gives the covariance of the empirical
distribution itself.

Results are cached in ``<repo>/data/cache/`` (or ``cache_dir=`` / ``$COURSE_CACHE_DIR``) under a key
hashing the images' bytes, shape and dtype and every parameter that changes the result.
"""
from __future__ import annotations

import hashlib
import math
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from .validate import as_int

_CACHE_VERSION = "stats-v1"
ENV_CACHE_DIR = "COURSE_CACHE_DIR"
PADDINGS = ("circular", "zeros", "valid")


@dataclass
class Stats:
    """Mean ``mean`` (d,), covariance ``Sigma`` (d,d), eigenvalues ``lam`` (d,) descending,
    eigenvectors ``U`` (d,d) as columns, image ``shape`` (C,H,W) and the number ``n`` of samples."""
    mean: torch.Tensor
    Sigma: torch.Tensor
    lam: torch.Tensor
    U: torch.Tensor
    shape: tuple
    n: int

    @property
    def d(self) -> int:
        return self.mean.numel()

    def to(self, device=None, dtype=None) -> "Stats":
        f = (lambda t: t.to(device=device, dtype=dtype))
        return Stats(f(self.mean), f(self.Sigma), f(self.lam), f(self.U), self.shape, self.n)


def cache_dir(path=None) -> Path:
    """``path``, else ``$COURSE_CACHE_DIR``, else ``<repo>/data/cache`` (git-ignored)."""
    if path is not None:
        return Path(path).expanduser()
    if os.environ.get(ENV_CACHE_DIR):
        return Path(os.environ[ENV_CACHE_DIR]).expanduser()
    return Path(__file__).resolve().parents[1] / "data" / "cache"


def tensor_hash(t: torch.Tensor) -> str:
    """blake2b of a tensor's bytes, shape and dtype (a content key for the cache)."""
    t = t.detach().contiguous().cpu()
    h = hashlib.blake2b(digest_size=20)
    h.update(f"{tuple(t.shape)}|{t.dtype}".encode())
    h.update(t.reshape(-1).view(torch.uint8).numpy().data)
    return h.hexdigest()


def _check_images(images, name="images") -> torch.Tensor:
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (N, C, H, W), got {type(images)}")
    if images.ndim not in (2, 4):
        raise ValueError(f"{name} must have shape (N, C, H, W) or (N, d), got {tuple(images.shape)}")
    if not images.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {images.dtype}")
    if images.shape[0] == 0:
        raise ValueError(f"{name} is empty (shape {tuple(images.shape)}): statistics need at least 2 images")
    return images


class _Moments:
    """Streaming first and second moments around a fixed shift ``c`` (float64 by default)."""

    def __init__(self):
        self.n, self.c, self.s1, self.s2 = 0, None, None, None

    def update(self, x: torch.Tensor) -> None:
        if not torch.isfinite(x).all():
            raise ValueError("images contain NaN or inf values")
        if self.c is None:
            self.c = x.mean(0)
            self.s1 = torch.zeros_like(self.c)
            self.s2 = torch.zeros(x.shape[1], x.shape[1], dtype=x.dtype, device=x.device)
        y = x - self.c
        self.n += x.shape[0]
        self.s1 += y.sum(0)
        self.s2.addmm_(y.T, y)

    def finish(self, correction: int):
        if self.n - correction <= 0:
            raise ValueError(f"need more than correction={correction} samples, got n={self.n}")
        m = self.s1 / self.n
        Sigma = (self.s2 - self.n * torch.outer(m, m)) / (self.n - correction)
        return self.c + m, 0.5 * (Sigma + Sigma.T)


def _eig(Sigma: torch.Tensor):
    lam, U = torch.linalg.eigh(Sigma)
    return lam.flip(0).clamp(min=0.0), U.flip(1)


def _cached(key_parts: dict, label: str | None, cache: bool, cache_dir_, compute, device):
    if not cache:
        return compute()
    h = hashlib.blake2b(repr(sorted(key_parts.items())).encode(), digest_size=16).hexdigest()
    path = cache_dir(cache_dir_) / (f"{label}-{h}.pt" if label else f"stats-{h}.pt")
    if path.is_file():
        try:
            d = torch.load(path, weights_only=True, map_location=device)
            return Stats(d["mean"], d["Sigma"], d["lam"], d["U"], tuple(d["shape"]), int(d["n"]))
        except Exception as e:  # truncated / corrupt / foreign: discard it and recompute
            warnings.warn(f"stats cache file {path} is corrupt ({type(e).__name__}: {e}); discarding it and "
                          f"recomputing", stacklevel=3)
            path.unlink(missing_ok=True)
    stats = compute()
    atomic_torch_save({"mean": stats.mean.cpu(), "Sigma": stats.Sigma.cpu(), "lam": stats.lam.cpu(),
                       "U": stats.U.cpu(), "shape": list(stats.shape), "n": stats.n}, path)
    return stats


def atomic_torch_save(obj, path: Path) -> bool:
    """``torch.save`` to a temporary file in the same folder, then ``os.replace``: an interrupted write
    (error, Ctrl-C) never leaves a partial ``path`` nor a stray temporary file. False if not writable."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as f:
            tmp = f.name
        torch.save(obj, tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
        return True
    except OSError:
        return False  # a read-only cache directory only costs recomputation
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def stats_cache_key(images: torch.Tensor, **params) -> dict:
    """Everything the cached result depends on: the images' content hash plus ``params``."""
    return {"version": _CACHE_VERSION, "images": tensor_hash(images), **params}


def dataset_stats(images: torch.Tensor, *, chunk_size: int = 4096, dtype=torch.float64,
                  correction: int = 1, cache: bool = True, cache_key: str | None = None,
                  cache_dir=None) -> Stats:
    """Mean, covariance and eigendecomposition of ``images`` (N, C, H, W) or (N, d), streamed.

    ``cache_key`` is a readable label for the cache file (e.g. ``"mnist-train-5k"``); the file
    name also carries the hash of the images and all parameters, so a stale hit is impossible.
    Returns a :class:`Stats` on the images' device in ``dtype``.
    """
    images = _check_images(images)
    chunk_size = as_int(chunk_size, "chunk_size (images per chunk)", 1)
    shape = tuple(images.shape[1:])
    d = images[0].numel()
    params = dict(kind="dataset", dtype=str(dtype), correction=int(correction),
                  chunk_size=int(chunk_size))

    def compute():
        acc = _Moments()
        for i in range(0, images.shape[0], chunk_size):
            acc.update(images[i:i + chunk_size].reshape(-1, d).to(dtype))
        mean, Sigma = acc.finish(correction)
        lam, U = _eig(Sigma)
        return Stats(mean, Sigma, lam, U, shape, acc.n)

    key = stats_cache_key(images, **params) if cache else {}
    return _cached(key, cache_key, cache, cache_dir, compute, images.device)


def extract_patches(images: torch.Tensor, patch_size: int, padding: str = "circular",
                    stride: int = 1) -> torch.Tensor:
    """All ``patch_size x patch_size`` patches: (N * L, C * P * P), features ordered (C, P, P).

    ``"circular"`` / ``"zeros"`` pad by ``(P-1)//2`` before and ``P//2`` after each spatial axis,
    so there is one patch per pixel (L = H*W at stride 1; for odd P it is centred on the pixel).
    Note that ``"zeros"`` pads with 0, mid-grey in [-1, 1]. ``"valid"`` keeps only patches inside
    the image: L = (H-P+1)(W-P+1). Order: image, then patch row, then patch column.
    """
    images = _check_images(images)
    if images.ndim != 4:
        raise ValueError(f"images must have shape (N, C, H, W), got {tuple(images.shape)}")
    if padding not in PADDINGS:
        raise ValueError(f"padding must be one of {PADDINGS}, got {padding!r}")
    P = int(patch_size)
    H, W = images.shape[-2:]
    if P < 1 or (padding == "valid" and (P > H or P > W)):
        raise ValueError(f"patch_size must be in 1..min(H, W)={min(H, W)}, got {patch_size}")
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    x = images
    if padding != "valid":
        pads = ((P - 1) // 2, P // 2, (P - 1) // 2, P // 2)
        if padding == "circular" and (P // 2 > H or P // 2 > W):
            raise ValueError(f"circular padding needs patch_size <= 2*min(H, W), got {P}")
        x = F.pad(x, pads, mode="circular" if padding == "circular" else "constant")
    cols = F.unfold(x, P, stride=stride)  # (N, C*P*P, L)
    return cols.transpose(1, 2).reshape(-1, cols.shape[1])


def patch_stats(images: torch.Tensor, patch_size: int, padding: str = "circular", *,
                stride: int = 1, chunk_size: int = 64, dtype=torch.float64, correction: int = 1,
                cache: bool = True, cache_key: str | None = None, cache_dir=None) -> Stats:
    """:func:`dataset_stats` of all patches (see :func:`extract_patches`), streamed over chunks
    of ``chunk_size`` images; ``shape`` is (C, P, P) and ``n`` the number of patches."""
    images = _check_images(images)
    chunk_size = as_int(chunk_size, "chunk_size (images per chunk)", 1)
    extract_patches(images[:1], patch_size, padding, stride)  # validate arguments early
    C, P = images.shape[1], int(patch_size)
    params = dict(kind="patch", patch_size=P, padding=padding, stride=int(stride),
                  dtype=str(dtype), correction=int(correction), chunk_size=int(chunk_size))

    def compute():
        acc = _Moments()
        for i in range(0, images.shape[0], chunk_size):
            acc.update(extract_patches(images[i:i + chunk_size], P, padding, stride).to(dtype))
        mean, Sigma = acc.finish(correction)
        lam, U = _eig(Sigma)
        return Stats(mean, Sigma, lam, U, (C, P, P), acc.n)

    key = stats_cache_key(images, **params) if cache else {}
    return _cached(key, cache_key, cache, cache_dir, compute, images.device)


__all__ = ["Stats", "dataset_stats", "patch_stats", "extract_patches", "tensor_hash", "mean_difference_z",
           "stats_cache_key", "cache_dir", "PADDINGS", "atomic_torch_save"]


def mean_difference_z(a, b) -> tuple[float, float, float]:
    """Difference of the means of two samples, its standard error and z = diff / se (Welch):
    se^2 = var(a)/n_a + var(b)/n_b with unbiased variances (Chapter 3, the even/odd MNIST halves)."""
    a = torch.as_tensor(a, dtype=torch.float64).reshape(-1)
    b = torch.as_tensor(b, dtype=torch.float64).reshape(-1)
    if a.numel() < 2 or b.numel() < 2:
        raise ValueError(f"a and b need >= 2 values each, got {a.numel()} and {b.numel()}")
    diff = (a.mean() - b.mean()).item()
    se = math.sqrt(a.var().item() / a.numel() + b.var().item() / b.numel())
    return diff, se, diff / se if se > 0 else math.inf
