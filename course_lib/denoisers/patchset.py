"""Niedoba et al. (2025)'s patch-set posterior composite, square patches (PSPC-Square; Chapter 4,
Sec. "Other local models").

For a patch size P and every placement of a P x P window that fits inside the image (top-left corner
(a, b), 0 <= a <= H - P, 0 <= b <= W - P; no padding), the window of the noisy image x is denoised
by the ideal denoiser of the SAME window of every training image (the "patch set": co-located
patches only, no translation):

    m_{ab}(x, sigma) = sum_i softmax_i( -|x_{ab} - y_{i,ab}|^2 / (2 sigma^2) ) y_{i,ab},

and the output pixel is the average of the estimates of all windows that cover it (every pixel is
covered by at least one window). P = H = W is the ideal denoiser. The patch size shrinks with sigma
along a schedule; the authors' CIFAR-10 schedule (32 px, 18 EDM steps) is :data:`CIFAR_PATCH_SIZES`,
and :func:`niedoba_schedule` rescales it to other resolutions (our choice for 28 px MNIST, stated in
Chapter 4: sizes times H / 32, rounded, at least 3).

Their public code loops over the (H - P + 1)(W - P + 1) positions in Python; here all positions are
one batched matmul per chunk of training images (windows from ``unfold``), with the exact online
softmax over the training set and ``fold`` to sum the overlapping estimates.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

from ..softmax import OnlineSoftmax
from .base import Denoiser, check_images

__all__ = ["PatchSetDenoiser", "CIFAR_PATCH_SIZES", "edm_times", "niedoba_schedule"]

# plai-group/pspc, CIFAR_PATCH_SCHEDULE: patch size at each of the 18 EDM steps, sigma = 80 -> 0.002
CIFAR_PATCH_SIZES = (32, 32, 32, 32, 32, 32, 32, 23, 15, 11, 7, 5, 3, 3, 3, 3, 3, 3)
LOGITS_PER_CHUNK_CPU = 2**22
LOGITS_PER_CHUNK_GPU = 2**26


def edm_times(n_steps: int, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0) -> torch.Tensor:
    """The EDM grid (sigma_max^(1/rho) + k/(n-1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho, k = 0..n-1."""
    k = torch.arange(n_steps, dtype=torch.float64)
    return (sigma_max ** (1 / rho) + k / (n_steps - 1) * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho


def niedoba_schedule(resolution: int, sizes=CIFAR_PATCH_SIZES) -> Callable[[float], int]:
    """sigma -> P: the size at the EDM step (len(sizes) steps) nearest to sigma, as in their code, with
    the 32-px sizes scaled by resolution / 32, rounded, clamped to [3, resolution]."""
    times = edm_times(len(sizes))
    scaled = [min(int(resolution), max(3, round(P * int(resolution) / 32))) for P in sizes]

    def P(sigma: float) -> int:
        return scaled[int((times - float(sigma)).abs().argmin())]
    P.sizes, P.sigmas = scaled, times.tolist()
    return P


class PatchSetDenoiser(Denoiser):
    """PSPC-Square (module doc). ``patch_size``: an int or a function sigma -> int (e.g.
    :func:`niedoba_schedule`); ``chunk_size``: training images per chunk (None: a logit budget)."""

    def __init__(self, train_images: torch.Tensor, patch_size, chunk_size: int | None = None):
        check_images(train_images, "train_images")
        self.Y = train_images.contiguous()
        self.N, self.C, self.H, self.W = self.Y.shape
        self.patch_size = patch_size if callable(patch_size) else self._check_P(patch_size)
        if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1):
            raise ValueError(f"chunk_size must be an int >= 1 or None, got {chunk_size!r}")
        self.chunk_size = chunk_size
        self._cast = {}

    def _check_P(self, P) -> int:
        if isinstance(P, bool) or not isinstance(P, int) or not 1 <= P <= min(self.H, self.W):
            raise ValueError(f"patch_size must be an int in [1, {min(self.H, self.W)}], got {P!r}")
        return P

    def __repr__(self):
        return f"PatchSetDenoiser(N={self.N}, shape={(self.C, self.H, self.W)}, patch_size={self.patch_size!r})"

    def _train(self, like):
        key = (like.dtype, like.device)
        if key == (self.Y.dtype, self.Y.device):
            return self.Y
        if key not in self._cast:
            self._cast = {key: self.Y.to(device=like.device, dtype=like.dtype)}
        return self._cast[key]

    def denoise(self, x, sigma):
        if tuple(x.shape[1:]) != (self.C, self.H, self.W):
            raise ValueError(f"x must have image shape {(self.C, self.H, self.W)} like the training set, "
                             f"got {tuple(x.shape[1:])}")
        out = torch.empty_like(x)
        for s in torch.unique(sigma).tolist():
            sel = torch.nonzero(sigma == s).flatten()
            P = self._check_P(int(self.patch_size(s))) if callable(self.patch_size) else self.patch_size
            out[sel] = self._denoise_P(x[sel], s, P)
        return out

    def _denoise_P(self, x: torch.Tensor, s: float, P: int) -> torch.Tensor:
        Y = self._train(x)
        B = x.shape[0]
        xu = F.unfold(x, P).permute(2, 0, 1)                    # (L, B, p) windows of the query
        L, _, p = xu.shape
        x_sq = (xu * xu).sum(-1)                                 # (L, B)
        budget = LOGITS_PER_CHUNK_CPU if x.device.type == "cpu" else LOGITS_PER_CHUNK_GPU
        n = self.chunk_size or max(1, budget // (L * (p + 2 * B)))
        osm = OnlineSoftmax()
        for start in range(0, self.N, n):
            yu = F.unfold(Y[start:start + n], P).permute(2, 1, 0)   # (L, p, K)
            y_sq = (yu * yu).sum(1)                              # (L, K)
            dist = torch.baddbmm(x_sq.unsqueeze(-1) + y_sq.unsqueeze(1), xu, yu, alpha=-2.0)   # (L, B, K)
            logits = dist.clamp_min_(0.0).mul_(-0.5 / s**2).transpose(0, 1)                 # (B, L, K)
            osm.update(logits, weighted_sum=lambda w, v=yu: torch.einsum("blk,lpk->blp", w, v))
        means = osm.mean()                                       # (B, L, p): each window's posterior mean
        total = F.fold(means.permute(0, 2, 1), (self.H, self.W), P)
        cover = F.fold(torch.ones_like(means[:1]).permute(0, 2, 1), (self.H, self.W), P)
        return total / cover
