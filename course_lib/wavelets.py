"""Orthogonal 2-D wavelet transforms in torch (Chapter 6, Sec. "Why a wavelet basis").

One level of the periodized discrete wavelet transform along an axis of even length N is an N x N
orthogonal matrix A_N whose first N/2 rows are the low-pass (scaling) filter and the last N/2 the
high-pass (wavelet) filter, shifted by two and wrapped around:

    (A_N)[n, (2n + L/2 - k) mod N]         += dec_lo[k],    n = 0 .. N/2 - 1,
    (A_N)[N/2 + n, (2n + L/2 - k) mod N]   += dec_hi[k],    k = 0 .. L - 1,

with PyWavelets' filter banks (``pywt.Wavelet(name).dec_lo``/``dec_hi``, length L). This is exactly
``pywt.dwt(..., mode="periodization")`` (the offset L/2 was read off PyWavelets and is checked in
``tests/test_wavelets.py``). A level of the separable 2-D transform is ``A_H X A_W^T``; the level-J
transform repeats it on the top-left (approximation) block, which gives the *packed* ("Mallat")
layout of ``pywt.coeffs_to_array``: the coarsest approximation in the top-left corner, and at scale
j the three detail bands of size (H/2^j, W/2^j)

    "h" (high-pass along rows H, low-pass along columns W; pywt's cH) bottom-left,
    "v" (low-pass along H, high-pass along W; pywt's cV)              top-right,
    "d" (high-pass along both; pywt's cD)                              bottom-right.

Because every A_N is orthogonal, the whole transform W is orthonormal: W W^T = I, so white noise
x = x0 + sigma z stays white, c = W x = W x0 + sigma z' with z' ~ N(0, I) (the property the
wavelet score machine relies on). Periodization needs H and W divisible by 2^J.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch

__all__ = ["WAVELETS", "analysis_matrix", "dwt2", "idwt2", "WaveletCoeffs", "dwt2_packed", "idwt2_packed",
           "CoeffLayout", "coeff_layout", "flatten_coeffs", "unflatten_coeffs", "dwt_matrix", "max_level"]

WAVELETS = ("haar",) + tuple(f"db{k}" for k in range(1, 21))
BANDS = ("a", "h", "v", "d")


def _check_wavelet(wavelet) -> str:
    if wavelet not in WAVELETS:
        raise ValueError(f"wavelet must be one of 'haar', 'db1' .. 'db20' (orthogonal, from PyWavelets), "
                         f"got {wavelet!r}")
    return wavelet


def max_level(H: int, W: int) -> int:
    """The largest J with H and W divisible by 2^J (periodization halves each side exactly)."""
    J = 0
    while H % 2 ** (J + 1) == 0 and W % 2 ** (J + 1) == 0:
        J += 1
    return J


def _check_level(level, H: int, W: int) -> int:
    if isinstance(level, bool) or not isinstance(level, int) or level < 1:
        raise ValueError(f"level must be an int >= 1, got {level!r}")
    if level > max_level(H, W):
        raise ValueError(f"level={level} needs H and W divisible by 2^{level} = {2 ** level}; the image is "
                         f"{H} x {W}, so level must be <= {max_level(H, W)}")
    return level


@lru_cache(maxsize=64)
def _analysis_matrix_f64(wavelet: str, N: int) -> torch.Tensor:
    import pywt

    w = pywt.Wavelet(wavelet)
    lo = torch.tensor(w.dec_lo, dtype=torch.float64)
    hi = torch.tensor(w.dec_hi, dtype=torch.float64)
    L, h = len(lo), N // 2
    n = torch.arange(h)[:, None]
    k = torch.arange(L)[None, :]
    cols = (2 * n + L // 2 - k) % N                        # (N/2, L) wrapped filter taps
    A = torch.zeros(N, N, dtype=torch.float64)
    A[:h].index_put_((n.expand(h, L), cols), lo.expand(h, L), accumulate=True)
    A[h:].index_put_((n.expand(h, L), cols), hi.expand(h, L), accumulate=True)
    return A


def analysis_matrix(wavelet: str, N: int, dtype=torch.float64, device=None) -> torch.Tensor:
    """The N x N orthogonal one-level periodized DWT matrix A_N (module doc); N must be even."""
    _check_wavelet(wavelet)
    if isinstance(N, bool) or not isinstance(N, int) or N < 2 or N % 2:
        raise ValueError(f"N must be an even int >= 2, got {N!r}")
    return _analysis_matrix_f64(wavelet, N).to(device=device, dtype=dtype)


def _check_x(x, name="x"):
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (..., H, W), got {type(x).__name__}")
    if x.ndim < 2 or not x.is_floating_point():
        raise ValueError(f"{name} must be a floating tensor of shape (..., H, W), got shape "
                         f"{tuple(x.shape)} and dtype {x.dtype}")
    return x


def dwt2_packed(x: torch.Tensor, wavelet: str = "haar", level: int = 1) -> torch.Tensor:
    """Level-J orthonormal DWT of ``x`` (..., H, W) in the packed layout (same shape as ``x``)."""
    _check_x(x)
    _check_wavelet(wavelet)
    H, W = x.shape[-2:]
    _check_level(level, H, W)
    c = x.clone()
    for j in range(level):
        h, w = H >> j, W >> j
        Ah = analysis_matrix(wavelet, h, x.dtype, x.device)
        Aw = analysis_matrix(wavelet, w, x.dtype, x.device)
        c[..., :h, :w] = Ah @ c[..., :h, :w] @ Aw.T
    return c


def idwt2_packed(c: torch.Tensor, wavelet: str = "haar", level: int = 1) -> torch.Tensor:
    """Inverse of :func:`dwt2_packed` (the transpose, since every level is orthogonal)."""
    _check_x(c, "c")
    _check_wavelet(wavelet)
    H, W = c.shape[-2:]
    _check_level(level, H, W)
    x = c.clone()
    for j in reversed(range(level)):
        h, w = H >> j, W >> j
        Ah = analysis_matrix(wavelet, h, c.dtype, c.device)
        Aw = analysis_matrix(wavelet, w, c.dtype, c.device)
        x[..., :h, :w] = Ah.T @ x[..., :h, :w] @ Aw
    return x


@dataclass
class WaveletCoeffs:
    """Coefficients of :func:`dwt2`: ``approx`` (..., H/2^J, W/2^J) and ``details[j-1] = (h, v, d)`` at
    scale j = 1 (finest) .. J, each (..., H/2^j, W/2^j). ``to_pywt()`` gives pywt.wavedec2's list order."""
    approx: torch.Tensor
    details: list
    wavelet: str

    @property
    def level(self) -> int:
        return len(self.details)

    def to_pywt(self) -> list:
        return [self.approx] + [tuple(self.details[j]) for j in reversed(range(self.level))]


def dwt2(x: torch.Tensor, wavelet: str = "haar", level: int = 1) -> WaveletCoeffs:
    """Multi-level orthonormal 2-D DWT of ``x`` (..., H, W), periodic boundary; equal to
    ``pywt.wavedec2(x, wavelet, mode="periodization", level=level)`` (see :class:`WaveletCoeffs`)."""
    c = dwt2_packed(x, wavelet, level)
    H, W = x.shape[-2:]
    details = []
    for j in range(1, level + 1):
        h, w = H >> j, W >> j
        details.append((c[..., h:2 * h, :w], c[..., :h, w:2 * w], c[..., h:2 * h, w:2 * w]))
    return WaveletCoeffs(c[..., :H >> level, :W >> level], details, wavelet)


def idwt2(coeffs, wavelet: str | None = None) -> torch.Tensor:
    """Inverse of :func:`dwt2`: ``coeffs`` is a :class:`WaveletCoeffs` or pywt's list
    ``[cA_J, (cH_J, cV_J, cD_J), ..., (cH_1, cV_1, cD_1)]`` (then ``wavelet`` is required)."""
    if isinstance(coeffs, WaveletCoeffs):
        wavelet = wavelet or coeffs.wavelet
        lst = coeffs.to_pywt()
    elif isinstance(coeffs, (list, tuple)) and len(coeffs) >= 2:
        if wavelet is None:
            raise ValueError("idwt2 of a plain list needs wavelet=..., e.g. idwt2(coeffs, 'haar')")
        lst = list(coeffs)
    else:
        raise TypeError(f"coeffs must be a WaveletCoeffs or a pywt-style list, got {type(coeffs).__name__}")
    level = len(lst) - 1
    a = _check_x(lst[0], "coeffs[0]")
    H, W = a.shape[-2] << level, a.shape[-1] << level
    c = a.new_zeros(*a.shape[:-2], H, W)
    c[..., :a.shape[-2], :a.shape[-1]] = a
    for j in range(1, level + 1):
        h, w = H >> j, W >> j
        band = lst[level + 1 - j]
        for t, (r0, c0) in zip(band, ((h, 0), (0, w), (h, w))):
            if t.shape[-2:] != (h, w):
                raise ValueError(f"detail band at scale {j} must be {h} x {w}, got {tuple(t.shape[-2:])}")
            c[..., r0:r0 + h, c0:c0 + w] = t
    return idwt2_packed(c, wavelet, level)


# ------------------------------------------------------------------------------------------ labels
@dataclass
class CoeffLayout:
    """Labels of the flattened packed coefficients of an (H, W) image at level J, each a (H*W,) tensor:
    ``band`` (0 = "a", 1 = "h", 2 = "v", 3 = "d"), ``scale`` (j = 1 .. J; J for the approximation),
    ``row``, ``col`` (position inside the band) and ``size`` (the band's side lengths, (H*W, 2))."""
    H: int
    W: int
    level: int
    band: torch.Tensor
    scale: torch.Tensor
    row: torch.Tensor
    col: torch.Tensor
    size: torch.Tensor

    def index(self, band: str, scale: int, row, col) -> torch.Tensor:
        """Flat index of coefficient (band, scale, row, col); ``row``/``col`` wrap periodically."""
        b = BANDS.index(band)
        h, w = self.H >> scale, self.W >> scale
        r0 = h if b in (1, 3) else 0
        c0 = w if b in (2, 3) else 0
        row, col = torch.as_tensor(row) % h, torch.as_tensor(col) % w
        return (r0 + row) * self.W + c0 + col

    def mask(self, band: str, scale: int | None = None) -> torch.Tensor:
        m = self.band == BANDS.index(band)
        return m if scale is None else m & (self.scale == scale)


@lru_cache(maxsize=32)
def coeff_layout(H: int, W: int, level: int) -> CoeffLayout:
    """Band/scale/position labels of each entry of the packed (H, W) array (see :class:`CoeffLayout`)."""
    _check_level(level, H, W)
    band = torch.zeros(H, W, dtype=torch.long)
    scale = torch.full((H, W), level, dtype=torch.long)
    rr, cc = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    row, col = rr.clone(), cc.clone()
    size = torch.stack([torch.full((H, W), H >> level), torch.full((H, W), W >> level)], -1)
    for j in range(level, 0, -1):
        h, w = H >> j, W >> j
        for b, (r0, c0) in zip((1, 2, 3), ((h, 0), (0, w), (h, w))):
            sl = (slice(r0, r0 + h), slice(c0, c0 + w))
            band[sl], scale[sl] = b, j
            row[sl], col[sl] = rr[sl] - r0, cc[sl] - c0
            size[sl] = torch.tensor([h, w])
    return CoeffLayout(H, W, level, band.flatten(), scale.flatten(), row.flatten(), col.flatten(),
                       size.reshape(-1, 2))


def flatten_coeffs(coeffs: WaveletCoeffs) -> tuple[torch.Tensor, CoeffLayout]:
    """One vector (..., H*W) per image in the packed order, and its :class:`CoeffLayout` labels."""
    a = coeffs.approx
    H, W = a.shape[-2] << coeffs.level, a.shape[-1] << coeffs.level
    lay = coeff_layout(H, W, coeffs.level)
    packed = a.new_zeros(*a.shape[:-2], H, W)
    packed[..., :a.shape[-2], :a.shape[-1]] = a
    for j, (h_, v_, d_) in enumerate(coeffs.details, start=1):
        h, w = H >> j, W >> j
        packed[..., h:2 * h, :w], packed[..., :h, w:2 * w], packed[..., h:2 * h, w:2 * w] = h_, v_, d_
    return packed.reshape(*packed.shape[:-2], H * W), lay


def unflatten_coeffs(vec: torch.Tensor, layout: CoeffLayout, wavelet: str) -> WaveletCoeffs:
    """Inverse of :func:`flatten_coeffs`."""
    if vec.shape[-1] != layout.H * layout.W:
        raise ValueError(f"vec must end in {layout.H * layout.W} = H*W entries, got shape {tuple(vec.shape)}")
    packed = vec.reshape(*vec.shape[:-1], layout.H, layout.W)
    H, W, J = layout.H, layout.W, layout.level
    details = [(packed[..., H >> j:2 * (H >> j), :W >> j], packed[..., :H >> j, W >> j:2 * (W >> j)],
                packed[..., H >> j:2 * (H >> j), W >> j:2 * (W >> j)]) for j in range(1, J + 1)]
    return WaveletCoeffs(packed[..., :H >> J, :W >> J], details, wavelet)


def dwt_matrix(H: int, W: int, wavelet: str = "haar", level: int = 1, dtype=torch.float64) -> torch.Tensor:
    """The dense (H*W, H*W) matrix of :func:`dwt2_packed` on flattened images (small images only)."""
    eye = torch.eye(H * W, dtype=dtype).reshape(H * W, H, W)
    return dwt2_packed(eye, wavelet, level).reshape(H * W, H * W).T
