"""Patches, boundaries and patch-size schedules for the local machines (Chapter 5, Sec. "Locality").

A pixel ``x`` of an image ``phi`` (C, H, W) sees the P x P neighbourhood ``phi_{Omega_x}`` centred on
it (P odd, h = P // 2). Near the border the neighbourhood leaves the image; two conventions
(Kamb & Ganguli Sec. 3 and App. B.2):

- ``"circular"``: it wraps around to the opposite side (periodic boundary, circular padding);
- ``"zeros"``: it is extended by zeros (zero padding, what CNNs do in practice).

With zero padding a patch "knows" its boundary offset: the number of rows of zeros above and below,
and of columns to the left and right. Two locations with the same offsets form one *boundary
class*; the boundary-broken ELS machine compares a pixel's patch only with training patches of the
same class (App. B.2, Fig. 9): interior pixels with every interior location, edge pixels with the
locations on the same edge at the same distance from it, corner pixels with their own location.
Row and column classes are independent, so a pixel's class is (row class, column class).

Patch features follow ``torch.nn.functional.unfold``'s layout: index ``c * P * P + i * P + j``.
"""
from __future__ import annotations

import numbers
from typing import Callable

import torch
import torch.nn.functional as F

__all__ = ["BOUNDARIES", "check_patch_size", "check_boundary", "pad_images", "extract_patches",
           "centre_feature", "boundary_classes", "boundary_groups", "patch_size_groups",
           "ls_equivalence_patch_size", "count_majority_mosaics"]

BOUNDARIES = ("circular", "zeros")


def check_boundary(boundary: str) -> str:
    if boundary not in BOUNDARIES:
        raise ValueError(f"boundary must be one of {BOUNDARIES}, got {boundary!r}")
    return boundary


def check_patch_size(P, name: str = "patch_size") -> int:
    """An odd int >= 1 (the side of the square P x P neighbourhood)."""
    if isinstance(P, bool) or not isinstance(P, numbers.Integral) or P < 1 or P % 2 == 0:
        raise ValueError(f"{name} must be an odd int >= 1 (or a function sigma -> odd int), got {P!r}")
    return int(P)


def pad_images(x: torch.Tensor, P: int, boundary: str) -> torch.Tensor:
    """Pad (B, C, H, W) by h = P // 2 on every side, circularly or with zeros."""
    h = P // 2
    if h == 0:
        return x
    if boundary == "circular":
        H, W = x.shape[-2:]
        if P > min(H, W):
            raise ValueError(f"patch_size={P} with boundary='circular' must be <= the image size "
                             f"min(H, W) = {min(H, W)} (a patch may not wrap onto itself)")
        return F.pad(x, (h, h, h, h), mode="circular")
    return F.pad(x, (h, h, h, h))


def extract_patches(x: torch.Tensor, P: int, boundary: str) -> torch.Tensor:
    """All H*W patches of a batch: (B, C, H, W) -> (B, H*W, C*P*P), row-major pixel order.

    Same layout as ``F.unfold`` (a strided view of the padded batch, copied once).
    """
    B, C, H, W = x.shape
    v = pad_images(x, P, boundary).unfold(2, P, 1).unfold(3, P, 1)  # (B, C, H, W, P, P)
    return v.permute(0, 2, 3, 1, 4, 5).reshape(B, H * W, C * P * P)


def centre_feature(C: int, P: int) -> torch.Tensor:
    """Indices of the centre pixel's C channels inside a flattened (C*P*P) patch."""
    h = P // 2
    return torch.arange(C) * P * P + h * P + h


def boundary_classes(n: int, P: int) -> torch.Tensor:
    """Boundary class of each of ``n`` rows (or columns) under zero padding, as an int per row.

    Row r overflows the image by t = max(0, h - r) rows at the top and b = max(0, r + h - (n - 1))
    at the bottom; rows with the same (t, b) share a class. Interior rows (t = b = 0) form one
    class; every other row is a class of its own. Returned labels are 0..(n_classes - 1).
    """
    h = P // 2
    r = torch.arange(n)
    t = (h - r).clamp_min(0)
    b = (r + h - (n - 1)).clamp_min(0)
    key = t * (n + P) + b
    return torch.unique(key, return_inverse=True)[1]


def boundary_groups(H: int, W: int, P: int, boundary: str, device=None) -> list[torch.Tensor]:
    """Pixel groups sharing one patch dictionary, batched by size: a list of (G, m) index tensors.

    Every row of a (G, m) tensor lists the m flat pixel indices (r * W + c) of one group; the
    patches of those pixels are compared with the training patches at exactly those m locations.
    ``"circular"``: one group of all H*W pixels (full equivariance, ELS Eq. 9-10).
    ``"zeros"``: one group per (row class, column class) pair (boundary-broken ELS, Eq. 41),
    stacked by group size, so there are at most 4 tensors (interior, two edge kinds, corners).
    """
    check_boundary(boundary)
    if boundary == "circular":
        return [torch.arange(H * W, device=device).unsqueeze(0)]
    rows, cols = boundary_classes(H, P), boundary_classes(W, P)
    row_sets = [torch.nonzero(rows == k).flatten() for k in range(int(rows.max()) + 1)]
    col_sets = [torch.nonzero(cols == k).flatten() for k in range(int(cols.max()) + 1)]
    by_size: dict[tuple[int, int], list[torch.Tensor]] = {}
    for R in row_sets:
        for Cs in col_sets:
            idx = (R.unsqueeze(1) * W + Cs.unsqueeze(0)).flatten()
            by_size.setdefault((len(R), len(Cs)), []).append(idx)
    return [torch.stack(v).to(device) for _, v in sorted(by_size.items(), reverse=True)]


def patch_size_groups(patch_size, sigma: torch.Tensor) -> dict[int, torch.Tensor]:
    """Group a batch by patch size: {P: indices into the batch}.

    ``patch_size`` is an odd int or a function ``sigma (float) -> odd int`` (a schedule P(sigma),
    e.g. a calibrated :class:`course_lib.calibrate.PatchSizeSchedule`).
    """
    if not callable(patch_size):
        return {check_patch_size(patch_size): torch.arange(len(sigma), device=sigma.device)}
    values, inverse = torch.unique(sigma, return_inverse=True)
    sizes = torch.tensor([check_patch_size(patch_size(float(s)), "patch_size(sigma)")
                          for s in values.tolist()], device=sigma.device)
    per_item = sizes[inverse]
    return {int(P): torch.nonzero(per_item == P).flatten() for P in torch.unique(per_item).tolist()}


def describe_patch_size(patch_size: int | Callable) -> str:
    return str(patch_size) if not callable(patch_size) else getattr(patch_size, "__name__", repr(patch_size))


def ls_equivalence_patch_size(H: int, W: int | None = None) -> int:
    """The smallest odd P at which zero padding makes every pixel its own boundary class, so that the
    boundary-broken ELS machine is the LS machine (Chapter 5, Sec. "Limits that connect the machines").

    Along one axis of n pixels, h = P // 2, the rows with no padding on either side (h <= r <= n - 1 - h)
    share one class and every other row is alone; so all n rows are distinct exactly when at most one
    row is unpadded, n - 2h <= 1, i.e. P >= n. For odd P that is P = n (n odd) or n + 1 (n even):
    29 for 28 x 28, not 2 * 28 - 1.
    """
    W = H if W is None else W
    for name, v in (("H", H), ("W", W)):
        if not isinstance(v, numbers.Integral) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    n = max(int(H), int(W))
    return n if n % 2 else n + 1


def count_majority_mosaics(H: int, W: int, chunk: int = 1 << 16) -> int:
    """Number of H x W black/white (+-1) images in which every pixel has the majority colour of its circular
    3 x 3 neighbourhood (centre included): the converged samples of the two-image LS / ELS machines with
    P = 3 (Chapter 5, Theorem 4.1). Exhaustive over all 2^(H W) images, in chunks; H, W >= 3, H W <= 24."""
    for name, v in (("H", H), ("W", W)):
        if not isinstance(v, numbers.Integral) or v < 3:
            raise ValueError(f"{name} must be an integer >= 3, got {v!r}")
    n = H * W
    if n > 24:
        raise ValueError(f"H * W must be <= 24 for an exhaustive count (2^(H W) images), got {n}")
    bits = 2 ** torch.arange(n, dtype=torch.int64)
    total = 0
    for start in range(0, 2**n, chunk):
        codes = torch.arange(start, min(start + chunk, 2**n), dtype=torch.int64)
        img = (((codes[:, None] & bits) > 0).to(torch.int8) * 2 - 1).reshape(-1, H, W)
        votes = sum(torch.roll(img.to(torch.int16), (i, j), (1, 2)) for i in (-1, 0, 1) for j in (-1, 0, 1))
        total += int((torch.sign(votes) == img).flatten(1).all(1).sum())
    return total
