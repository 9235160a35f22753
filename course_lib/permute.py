"""A fixed pixel permutation of a data set: locality follows the data, not the architecture (Chapter 4,
Sec. "Scrambling the pixels").

A permutation pi of the H*W pixel positions (the same for every channel) moves the data statistics:
the permuted images x'_p = x_{pi(p)} have covariance Sigma' = P Sigma P^T (P the permutation matrix),
so the Wiener field of output pixel q' in the permuted images is the permuted Wiener field of pixel
pi(q') in the original ones. A network trained on permuted images whose sensitivity fields follow
the data should therefore have fields that are scattered over the image in permuted coordinates and
local again once un-permuted. ``permute_pixels`` and ``unpermute_pixels`` are inverse to each other.
"""
from __future__ import annotations

import torch

__all__ = ["pixel_permutation", "permute_pixels", "unpermute_pixels"]


def pixel_permutation(height: int, width: int, seed: int = 0) -> torch.Tensor:
    """The fixed permutation pi of the H*W positions: ``torch.randperm(H*W, generator=manual_seed(seed))``.

    Permuted image: ``x'.flatten(-2)[..., p] = x.flatten(-2)[..., pi[p]]``.
    """
    if int(height) < 1 or int(width) < 1:
        raise ValueError(f"height and width must be >= 1, got {height} x {width}")
    return torch.randperm(int(height) * int(width), generator=torch.Generator().manual_seed(int(seed)))


def _check(images: torch.Tensor, perm: torch.Tensor, name: str) -> None:
    if not isinstance(images, torch.Tensor) or images.ndim < 2:
        raise ValueError(f"{name} must be a tensor (..., H, W), got {type(images).__name__} "
                         f"{tuple(getattr(images, 'shape', ()))}")
    hw = images.shape[-1] * images.shape[-2]
    if perm.shape != (hw,):
        raise ValueError(f"perm must have shape ({hw},) for images of size {tuple(images.shape[-2:])}, "
                         f"got {tuple(perm.shape)}")


def permute_pixels(images: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    """x' with x'[..., p] = x[..., perm[p]] over the flattened (H, W) positions; shape unchanged."""
    _check(images, perm, "images")
    flat = images.flatten(-2)
    return flat[..., perm.to(images.device)].reshape(images.shape)


def unpermute_pixels(images: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`permute_pixels`: x[..., perm[p]] = x'[..., p]."""
    _check(images, perm, "images")
    flat = images.flatten(-2)
    out = torch.empty_like(flat)
    out[..., perm.to(images.device)] = flat
    return out.reshape(images.shape)
