"""Exercise checks of Chapter 5 (creativity as locally consistent patch mosaics).

- :func:`check_locally_consistent`  ``fn(img) -> mask`` (H, W) bool: the two-image (black / white)
  local-consistency rule of Sec. 4.1 with a 3 x 3 circular window.
- :func:`check_els_pixel`           ``fn(patch, train, sigma) -> (C,)``: the ELS machine's output at
  one pixel whose P x P neighbourhood is ``patch`` (circular boundary).
- :func:`check_dictionary_size`     ``fn(r, c, H, W, P) -> int``: how many locations of ONE training
  image the boundary-broken (zero-padded) ELS machine compares pixel (r, c) with.

Each returns a :class:`~course_lib.exercises.base.CheckResult`.
"""
from __future__ import annotations

import torch

from ..patches import boundary_classes, centre_feature, extract_patches
from .base import CheckResult, compare, integer, run_check

__all__ = ["check_locally_consistent", "check_els_pixel", "check_dictionary_size",
           "reference_locally_consistent", "reference_els_pixel", "reference_dictionary_size"]


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------------------- references
def reference_locally_consistent(img: torch.Tensor) -> torch.Tensor:
    """True where the majority colour of the circular 3 x 3 neighbourhood equals the centre's."""
    s = sum(torch.roll(img, (i, j), (0, 1)) for i in (-1, 0, 1) for j in (-1, 0, 1))
    return torch.sign(s) == img


def reference_els_pixel(patch: torch.Tensor, train: torch.Tensor, sigma: float) -> torch.Tensor:
    """sum over all circular P x P training patches of softmax(-|patch - p|^2 / 2 sigma^2) p(0)."""
    C, P, _ = patch.shape
    T = extract_patches(train, P, "circular").reshape(-1, C * P * P)
    w = torch.softmax(-((T - patch.reshape(1, -1)) ** 2).sum(-1) / (2 * sigma**2), 0)
    return w @ T[:, centre_feature(C, P)]


def reference_dictionary_size(r: int, c: int, H: int, W: int, P: int) -> int:
    """(# rows with row r's boundary offsets) x (# columns with column c's boundary offsets)."""
    rows, cols = boundary_classes(H, P), boundary_classes(W, P)
    return int((rows == rows[r]).sum()) * int((cols == cols[c]).sum())


# ----------------------------------------------------------------------------- checks
def check_locally_consistent(fn) -> CheckResult:
    """``fn(img)`` with img (H, W) of -1 / +1 values must return the (H, W) boolean mask of locally
    consistent pixels (circular 3 x 3 majority rule)."""
    def body():
        g = _gen(5)
        for H, W in ((6, 6), (5, 8)):
            img = torch.where(torch.rand(H, W, generator=g) < 0.5, -1.0, 1.0)
            img[0, :3] = 1.0  # a white run on the top edge: its wrap-around neighbours matter
            got = fn(img.clone())
            if not isinstance(got, torch.Tensor) or got.dtype != torch.bool:
                return f"return a boolean tensor, got {type(got).__name__} {getattr(got, 'dtype', '')}"
            if (r := compare(got.double(), reference_locally_consistent(img).double(),
                             f"the mask of a {H}x{W} image")) is not None:
                return r + " (wrap around the borders: the window is circular)"
        return None
    return run_check("locally_consistent", body,
                     hint='Sum the 9 pixels of each circular 3 x 3 window: the sign of the sum is the majority colour.',
                     hint2='torch.roll(img, (i, j), (0, 1)) for i, j in {-1, 0, 1} wraps around the borders.')


def check_els_pixel(fn) -> CheckResult:
    """``fn(patch, train, sigma)`` with patch (C, P, P), train (N, C, H, W): the ELS output (C,)."""
    def body():
        g = _gen(6)
        train = torch.rand(3, 2, 5, 6, generator=g, dtype=torch.float64) * 2 - 1
        for P, sigma in ((3, 0.5), (5, 1.5)):
            patch = torch.randn(2, P, P, generator=g, dtype=torch.float64)
            got = fn(patch.clone(), train.clone(), sigma)
            if (r := compare(got, reference_els_pixel(patch, train, sigma),
                             f"the output for P={P}, sigma={sigma}", rtol=1e-6, atol=1e-9)) is not None:
                return r + (" (average the CENTRE pixels of all N*H*W circular patches, weighted by "
                            "softmax(-|patch - p|^2 / (2 sigma^2)))")
        return None
    return run_check("els_pixel", body,
                     hint='ELS compares the patch with every circular P x P patch of every training image, at every location.',
                     hint2='Extract all N*H*W circular patches, weight them by softmax(-|patch - p|^2 / (2 sigma^2)) and average their centre pixels.')


def check_dictionary_size(fn) -> CheckResult:
    """``fn(r, c, H, W, P)`` must return the number of locations (per training image) whose zero-
    padded P x P patch has the same boundary offsets as pixel (r, c)'s."""
    def body():
        cases = [(0, 0, 8, 8, 3), (0, 4, 8, 8, 3), (4, 4, 8, 8, 3), (1, 3, 8, 10, 5), (2, 9, 8, 10, 5),
                 (3, 3, 7, 7, 7), (0, 6, 7, 7, 7), (2, 2, 5, 5, 1), (2, 1, 4, 4, 9)]
        for r, c, H, W, P in cases:
            got = fn(r, c, H, W, P)
            exp = reference_dictionary_size(r, c, H, W, P)
            if integer(got, f"the dictionary size of pixel ({r}, {c})") != exp:
                return f"pixel ({r}, {c}) of a {H}x{W} image with P={P}: got {got}, expected {exp}"
        return None
    return run_check("dictionary_size", body,
                     hint='With zero padding a patch near the border is distinguishable by how far it reaches past the border.',
                     hint2='Rows (and columns) are equivalent when their patches cross the border by the same offset; count equivalent rows times equivalent columns.')
