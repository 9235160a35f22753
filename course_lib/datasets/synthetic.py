"""Datasets that need no data directory: synthetic sets and data bundled with installed packages.

- ``gaussian_field``: a stationary (periodic) Gaussian random field with a power-law spectrum,
  an exact-distribution dataset whose true covariance is known in closed form (Chapters 2-3).
- ``two_tone``: the two-image all-black / all-white set of Kamb & Ganguli, Fig. 3.
- ``digits``: scikit-learn's bundled 8x8 handwritten digits (1797 images, values 0..16).
- ``natural_patches``: grayscale crops of the photographs bundled with PyWavelets.

``n=k`` is always the first k images of the full (deterministic) sequence.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ._common import check_n, check_split

_BLOCK = 256  # gaussian_field draws images in fixed blocks so that n=k is a prefix of n=k+1


def _check_size(size, name="size") -> int:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"{name} must be a positive int, got {size!r}")
    return int(size)


def gaussian_field_spectrum(size: int = 32, exponent: float = 2.0, std: float = 1.0 / 3.0,
                            dtype=torch.float64) -> torch.Tensor:
    """The field's power spectrum ``P(k)`` on the (size, size) DFT grid.

    .. math:: P(k) = c\\,\\max(|k|, 1)^{-\\text{exponent}}, \\qquad
              \\frac{1}{d}\\sum_k P(k) = \\text{std}^2,

    with ``|k|`` in cycles per image and ``d = size**2``. ``P`` is, exactly, the set of
    eigenvalues of the field's (circulant) pixel covariance, with Fourier-mode eigenvectors; the
    marginal variance of every pixel is ``std**2`` (Chapter 2, "A Gaussian with known spectrum").
    """
    size = _check_size(size)
    if not math.isfinite(exponent):
        raise ValueError(f"exponent must be finite, got {exponent!r}")
    if not std > 0:
        raise ValueError(f"std must be > 0, got {std!r}")
    f = torch.fft.fftfreq(size, d=1.0 / size, dtype=torch.float64)
    k = torch.sqrt(f[:, None] ** 2 + f[None, :] ** 2).clamp(min=1.0)
    s = k ** (-float(exponent))
    return (s * (std ** 2) / s.mean()).to(dtype)


def gaussian_field_covariance(size: int = 32, exponent: float = 2.0, std: float = 1.0 / 3.0,
                              dtype=torch.float64) -> torch.Tensor:
    """The exact (d, d) pixel covariance ``Sigma[i, j] = c(i - j mod size)``, ``c = IDFT(P)``."""
    P = gaussian_field_spectrum(size, exponent, std, torch.float64)
    c = torch.fft.ifft2(P).real
    r = torch.arange(size)
    dy = (r[:, None, None, None] - r[None, None, :, None]) % size
    dx = (r[None, :, None, None] - r[None, None, None, :]) % size
    return c[dy, dx].reshape(size * size, size * size).to(dtype)


def gaussian_field_eigenvalues(size: int = 32, exponent: float = 2.0, std: float = 1.0 / 3.0,
                               dtype=torch.float64) -> torch.Tensor:
    """The true covariance spectrum, descending (to compare with ``dataset_stats(...).lam``)."""
    return gaussian_field_spectrum(size, exponent, std, dtype).flatten().sort(descending=True).values


def gaussian_field(n: int, size: int = 32, exponent: float = 2.0, std: float = 1.0 / 3.0,
                   seed: int = 0, split: str = "train") -> torch.Tensor:
    """``n`` fields ``x = IDFT(sqrt(P) * DFT(w))``, ``w`` white N(0, I); shape (n, 1, size, size).

    Exact zero-mean Gaussian with covariance :func:`gaussian_field_covariance` (not clipped: with
    the default ``std = 1/3`` pixels lie in [-1, 1] with probability 0.997). The train split uses
    the torch seed ``2 * seed``, the test split ``2 * seed + 1``.
    """
    check_split("gaussian_field", split, ("train", "test"))
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    n = check_n(n, 10 ** 12, "gaussian_field", split)
    P = gaussian_field_spectrum(size, exponent, std)
    check_memory(n * P.numel() * 4, f"gaussian_field(n={n}, size={P.shape[0]})")
    gen = torch.Generator().manual_seed(2 * int(seed) + (split == "test"))
    out = torch.empty(n, 1, P.shape[0], P.shape[1])  # filled block by block: peak memory = result + 1 block
    for b in range(math.ceil(n / _BLOCK)):
        w = torch.randn(_BLOCK, P.shape[0], P.shape[1], generator=gen, dtype=torch.float64)
        block = torch.fft.ifft2(P.sqrt() * torch.fft.fft2(w)).real.to(torch.float32)
        out[b * _BLOCK:(b + 1) * _BLOCK, 0] = block[:n - b * _BLOCK]
    return out


def available_memory() -> int | None:
    """Bytes of memory available to this process (Linux ``MemAvailable``; None where unknown)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        import os
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(nbytes: int, what: str, fraction: float = 0.5) -> None:
    """Raise ``MemoryError`` (before allocating) when ``nbytes`` exceeds ``fraction`` of the available memory."""
    avail = available_memory()
    if avail is not None and nbytes > fraction * avail:
        raise MemoryError(f"{what} needs {nbytes / 2**30:.3g} GiB, more than {fraction:.0%} of the "
                          f"{avail / 2**30:.3g} GiB of memory available: ask for a smaller n (draw the fields "
                          f"in several calls with different seeds) or a smaller size")


def two_tone(size: int = 32, channels: int = 1) -> torch.Tensor:
    """Kamb & Ganguli Fig. 3: image 0 all black (-1), image 1 all white (+1); (2, C, size, size)."""
    size, channels = _check_size(size), _check_size(channels, "channels")
    return torch.stack([-torch.ones(channels, size, size), torch.ones(channels, size, size)])


def digits():
    """scikit-learn's 8x8 digits (values 0..16 mapped by ``x / 8 - 1``) and their labels."""
    from sklearn.datasets import load_digits
    d = load_digits()
    x = torch.from_numpy(d.images.astype(np.float32) / 8.0 - 1.0)[:, None]
    return x.contiguous(), torch.from_numpy(d.target.astype(np.int64))


PATCH_SOURCES = ("camera", "ascent", "aero")


def natural_patches(size: int = 32, source="all", stride: int | None = None, downsample: int = 1):
    """Crops of PyWavelets' bundled 512x512 grayscale photographs on a deterministic grid.

    Each photograph (``source``: one of ``PATCH_SOURCES``, a list of them, or ``"all"``) is first
    block-averaged by ``downsample``, then cut row-major into ``size x size`` crops at ``stride``
    (default ``size``: non-overlapping). Order: photograph, then crop row, then crop column.
    Labels are the photograph's position in ``PATCH_SOURCES``.
    """
    import pywt.data

    size, downsample = _check_size(size), _check_size(downsample, "downsample")
    stride = size if stride is None else _check_size(stride, "stride")
    names = list(PATCH_SOURCES) if source == "all" else (
        [source] if isinstance(source, str) else list(source))
    bad = [s for s in names if s not in PATCH_SOURCES]
    if bad or not names:
        raise ValueError(f"source must be 'all' or among {PATCH_SOURCES}, got {source!r}")
    crops, labels = [], []
    for s in names:
        img = torch.from_numpy(getattr(pywt.data, s)().astype(np.float32) / 127.5 - 1.0)
        if downsample > 1:
            img = torch.nn.functional.avg_pool2d(img[None, None], downsample)[0, 0]
        if img.shape[0] < size or img.shape[1] < size:
            raise ValueError(f"size={size} exceeds the {tuple(img.shape)} image {s!r} "
                             f"(after downsample={downsample})")
        c = img.unfold(0, size, stride).unfold(1, size, stride).reshape(-1, 1, size, size)
        crops.append(c)
        labels.append(torch.full((len(c),), PATCH_SOURCES.index(s), dtype=torch.int64))
    return torch.cat(crops).contiguous(), torch.cat(labels)
