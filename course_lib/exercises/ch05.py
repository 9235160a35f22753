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
           "reference_locally_consistent", "reference_els_pixel", "reference_dictionary_size",
           "check_ls_threshold", "check_predict_els_ls_gap", "check_explain_scatter", "SCATTER_OPTIONS"]


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


# ------------------------------------------------------------------ derive, predict then run, explain the figure
# (issue 18; numeric answers are validated by :func:`course_lib.exercises.kinds.as_number`)
def check_ls_threshold(fn) -> CheckResult:
    """Derive: ``fn(H)`` returns the smallest odd P at which, under zero padding, every pixel of an H x H
    image is its own boundary class (so the boundary-broken ELS machine is the LS machine)."""
    from ..patches import ls_equivalence_patch_size
    from .kinds import as_number

    def body():
        for H in (28, 8, 7, 32, 5):
            v, reason = as_number(fn(H), f"P for H={H}")
            if reason:
                return reason
            ref = ls_equivalence_patch_size(H)
            if v != ref:
                if v == 2 * H - 1:
                    return (f"got 2H - 1 = {int(v)} for H={H}: that is enough, but not the smallest; count the rows "
                            f"with no padding on either side")
                return f"got {v:g} for H={H}: rows h <= r <= H-1-h (h = P//2) share a class; when is there at most one?"
        return None
    return run_check("ls_threshold", body,
                     hint="Under zero padding a pixel's boundary class is how far its patch reaches past each border; pixels whose patch reaches past no border share one class.",
                     hint2='With h = P // 2, the rows h <= r <= H - 1 - h share a class: find the smallest odd P that leaves at most one such row.')


def check_predict_els_ls_gap(fn) -> CheckResult:
    """Predict, then run: ``fn()`` returns your prediction of max |ELS(zeros, P=9) - LS(P=9)| over a batch of
    noisy 8 x 8 images (5 random training images, sigma = 0.7). The run computes both machines; a
    prediction within 1e-6 of the run is right."""
    from ..denoisers import EquivariantLocalDenoiser, LocalDenoiser
    from .kinds import check_number

    def run():
        g = torch.Generator().manual_seed(5)
        Y = torch.rand(5, 1, 8, 8, generator=g, dtype=torch.float64) * 2 - 1
        x = 2.0 * torch.randn(3, 1, 8, 8, generator=g, dtype=torch.float64)
        return (EquivariantLocalDenoiser(Y, 9, "zeros")(x, 0.7) - LocalDenoiser(Y, 9)(x, 0.7)).abs().max().item()
    return check_number("predict_els_ls_gap", fn, run, rtol=0.0, atol=1e-6, what="your prediction",
                        note="at P = 9 > 8, how many locations share a class?", inline_hint=False,
                        hint='Use the previous exercise: at P = 9 on 8 x 8 images, how many locations share a boundary class?',
                        hint2='When every pixel is its own class, the ELS machine compares a patch only with patches at the same location: which machine of this chapter does exactly that?')


SCATTER_OPTIONS = {
    "a": "for that seed, the local machine's sample is closer to the network's sample than the ideal machine's is",
    "b": "the local machine's sample is closer to a training image",
    "c": "the network memorised that seed's training image",
    "d": "the local machine needed fewer sampling steps",
}


def check_explain_scatter(fn) -> CheckResult:
    """Explain the figure (per-seed (E)LS r^2 against IS r^2): what does a point above the diagonal mean?
    ``fn()`` returns a key of :data:`SCATTER_OPTIONS`."""
    from .kinds import check_choice
    return check_choice("explain_scatter", fn, SCATTER_OPTIONS, "a", {
        "b": "both axes are r^2 against the network's sample, not distances to training images",
        "c": "a memorising network would favour IS: points below the diagonal",
        "d": "all machines use the same grid and number of steps"},
        hint='Both axes measure agreement (r^2) with the same reference image: which one?',
        hint2="Read the axis labels: each coordinate is one machine's r^2 for that seed against the network's sample. Compare the two coordinates of a point above y = x.")
