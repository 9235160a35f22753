"""The wavelet score machine (Chapter 6; Finn, Wang, Keller and Ba, "Where the score lives").

In the orthonormal wavelet basis c = W x (:mod:`course_lib.wavelets`) the noise stays white,
c_sigma = c + sigma z', so the score in coefficient space is s(c_sigma) = W grad_x log p_sigma and
Tweedie's formula reads E[c | c_sigma] = c_sigma + sigma^2 s(c_sigma). Each coefficient's score is
modelled as linear in polynomial features of a few coefficients,

    s_k(c_sigma) ~ theta_k^T phi_k(c_sigma),

and fitted by least squares, min E[(theta^T phi - s_k)^2]. Its normal equations need E[phi s_k],
which Stein's identity (integration by parts against the noisy density p_sigma) turns into a moment:

    E[phi s_k] = -E[d phi / d c_k],   so   (E[phi phi^T] + lambda I) theta_k = -E[d phi / d c_k].

Every expectation is a moment of the *noisy* data, computed exactly from the clean moments of the
training set and Gaussian noise moments (:mod:`course_lib.wavelet_moments`); no sampling, no
training. The fit equals denoising score matching with infinitely many noise draws.

Families (which coefficients phi_k may use; every family includes the independent one):

- ``"independent"``: c_k alone, phi = (1, c_k, .., c_k^K); the Gram matrix is Hankel.
- ``"band_tied"``: the three orientations (h, v, d) at the same scale, position and channel; one
  Gram matrix per triple, three right-hand sides.
- ``"local_coupled"``: the (2r+1)^2 coefficients around c_k in its own band (periodic wrap, like the
  periodized transform), r = ``radius``.
- ``"full"``: all coefficients (degree 1 only in practice; it is then the Wiener filter).

Choices where the paper is silent (Chapter 6, "What we chose"): the approximation band is treated
like any other band (in ``band_tied`` it has no partners, so it is fitted independently); weights
are per coefficient (no sharing across positions: digits are not stationary, and the identities
with the Wiener filter need it); the features are monomials of the coefficients divided by their
noisy RMS, so ``ridge`` is relative (lambda times an O(1) Gram matrix) and ridge 0 is exact least
squares; fits are solved in float64 by default.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch

from ..wavelet_moments import monomial_basis, noisy_moments, poly_features
from ..wavelets import WAVELETS, coeff_layout, dwt2_packed, idwt2_packed, max_level
from .base import Denoiser, check_images

__all__ = ["WaveletDenoiser", "FAMILIES", "family_groups", "Group", "GroupFit"]

FAMILIES = ("independent", "band_tied", "local_coupled", "full")


@dataclass
class Group:
    """G sets of m coupled coefficients: ``vars`` (G, m) flat coefficient indices; the coefficients
    whose score the group predicts are ``vars[:, targets]`` (targets: (T,) positions in 0..m-1)."""
    vars: torch.Tensor
    targets: torch.Tensor


@dataclass
class GroupFit:
    """One group's fit at one sigma: ``theta`` (G, p, T), the feature scales ``scale`` (G, m) and the
    score-matching objective ``J`` (G, T) = E[s_hat^2] + 2 E[d s_hat / d c_k] = E[(s_hat - s)^2] - E[s^2]."""
    theta: torch.Tensor
    scale: torch.Tensor
    J: torch.Tensor


def family_groups(family: str, C: int, H: int, W: int, level: int, radius: int = 1) -> list[Group]:
    """The coupling pattern of ``family`` on C channels of (H, W) packed coefficients (module doc)."""
    lay = coeff_layout(H, W, level)
    d = H * W
    off = (torch.arange(C) * d)[:, None]                                    # channel offsets
    if family == "independent":
        return [Group(torch.arange(C * d)[:, None], torch.tensor([0]))]
    if family == "full":
        return [Group(torch.arange(C * d)[None, :], torch.arange(C * d))]
    if family == "band_tied":
        a = torch.nonzero(lay.band == 0).flatten()
        groups = [Group((off + a).reshape(-1, 1), torch.tensor([0]))]
        h = torch.nonzero(lay.band == 1).flatten()                          # one triple per h coefficient
        tri = torch.stack([h, lay.index("v", lay.scale[h], lay.row[h], lay.col[h]),
                           lay.index("d", lay.scale[h], lay.row[h], lay.col[h])], -1)
        groups.append(Group((off[:, :, None] + tri).reshape(-1, 3), torch.tensor([0, 1, 2])))
        return groups
    if family == "local_coupled":
        if isinstance(radius, bool) or not isinstance(radius, int) or radius < 1:
            raise ValueError(f"radius must be an int >= 1, got {radius!r}")
        side = min(H, W) >> level
        if 2 * radius + 1 > side:
            raise ValueError(f"radius={radius} gives {2 * radius + 1}x{2 * radius + 1} neighbourhoods, larger than "
                             f"the coarsest band ({side} coefficients wide); use radius <= {(side - 1) // 2}")
        dr, dc = torch.meshgrid(torch.arange(-radius, radius + 1), torch.arange(-radius, radius + 1), indexing="ij")
        k = torch.arange(d)
        bands = [("a", "h", "v", "d")[b] for b in lay.band.tolist()]
        nb = torch.empty(d, dr.numel(), dtype=torch.long)
        for b in range(4):                                                   # 4 band types, vectorised inside
            sel = k[lay.band == b]
            if sel.numel() == 0:
                continue
            name = bands[int(sel[0])]
            s, r, c = lay.scale[sel][:, None], lay.row[sel][:, None], lay.col[sel][:, None]
            nb[sel] = lay.index(name, s, r + dr.flatten(), c + dc.flatten())
        m = dr.numel()
        return [Group((off[:, :, None] + nb[None]).reshape(-1, m), torch.tensor([m // 2]))]
    raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")


class WaveletDenoiser(Denoiser):
    """Wavelet score machine ``D(x, sigma)`` fitted by Stein ridge regression (module doc).

    Parameters
    ----------
    train_images : (N, C, H, W) training set (H, W divisible by 2^level).
    family : one of :data:`FAMILIES`.  degree : polynomial degree K >= 1.
    ridge : lambda >= 0, relative to the RMS-normalised Gram matrix.
    wavelet : "haar" or "db1".."db20".  level : J (default: as many as H, W allow, at most 3).
    radius : neighbourhood radius of ``"local_coupled"``.
    solve_dtype : dtype of the moments and solves (float64 by default).
    chunk_size : training images per chunk when accumulating moments (memory is O(chunk), not O(N)).
    cache_size : number of sigma values whose fits are kept.
    """

    def __init__(self, train_images, family: str = "independent", degree: int = 2, ridge: float = 1e-6,
                 wavelet: str = "haar", level: int | None = None, radius: int = 1,
                 solve_dtype=torch.float64, chunk_size: int = 512, cache_size: int = 256):
        check_images(train_images, "train_images")
        if family not in FAMILIES:
            raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")
        if isinstance(degree, bool) or not isinstance(degree, int) or degree < 1:
            raise ValueError(f"degree must be an int >= 1, got {degree!r}")
        if not (isinstance(ridge, (int, float)) and ridge >= 0 and ridge < float("inf")):
            raise ValueError(f"ridge must be a finite float >= 0, got {ridge!r}")
        if wavelet not in WAVELETS:
            raise ValueError(f"wavelet must be one of 'haar', 'db1'..'db20', got {wavelet!r}")
        if solve_dtype not in (torch.float32, torch.float64):
            raise ValueError(f"solve_dtype must be torch.float32 or torch.float64, got {solve_dtype!r}")
        for name, v in (("chunk_size", chunk_size), ("cache_size", cache_size)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an int >= 1, got {v!r}")
        N, C, H, W = train_images.shape
        if level is None:
            level = min(max_level(H, W), 3)
            if level == 0:
                raise ValueError(f"images of {H} x {W} cannot be transformed: H and W must be even")
        self.family, self.degree, self.ridge, self.wavelet, self.level = family, degree, float(ridge), wavelet, level
        self.radius, self.solve_dtype, self.shape, self.n_train = radius, solve_dtype, (C, H, W), N
        self.groups = family_groups(family, C, H, W, level, radius)
        self.bases = [monomial_basis(g.vars.shape[1], degree) for g in self.groups]
        dev = train_images.device
        self.groups = [Group(g.vars.to(dev), g.targets.to(dev)) for g in self.groups]
        self.clean = self._clean_moments(train_images, chunk_size)
        self._fits: OrderedDict = OrderedDict()
        self.cache_size = cache_size

    # ------------------------------------------------------------------------------- coefficients
    def coefficients(self, x: torch.Tensor) -> torch.Tensor:
        """Flat packed wavelet coefficients (B, C*H*W) of images (B, C, H, W)."""
        return dwt2_packed(x, self.wavelet, self.level).reshape(x.shape[0], -1)

    def images(self, c: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`coefficients`."""
        return idwt2_packed(c.reshape(-1, *self.shape), self.wavelet, self.level)

    def _clean_moments(self, train, chunk_size):
        """Clean moments E[c^alpha], (G, M) per group, from the streamed Gram of clean features."""
        grams = [None] * len(self.groups)
        for i in range(0, train.shape[0], chunk_size):
            c = self.coefficients(train[i:i + chunk_size].to(self.solve_dtype))
            for j, (g, basis) in enumerate(zip(self.groups, self.bases)):
                phi = poly_features(c[:, g.vars], basis, features_first=True)   # (p, n, G)
                phi = phi.permute(2, 0, 1).contiguous()                         # (G, p, n)
                gram = phi @ phi.transpose(1, 2)                                # (G, p, p), batched matmul
                grams[j] = gram if grams[j] is None else grams[j] + gram
        return [gr[:, b.split[:, 0].to(gr.device), b.split[:, 1].to(gr.device)] / train.shape[0]
                for gr, b in zip(grams, self.bases)]

    # ------------------------------------------------------------------------------------- fitting
    def fit(self, sigma: float) -> list[GroupFit]:
        """Solve the Stein ridge regression of every coefficient at noise level ``sigma`` (cached)."""
        sigma = float(sigma)
        if not sigma > 0 or sigma == float("inf"):
            raise ValueError(f"sigma must be finite and > 0, got {sigma!r}")
        if sigma in self._fits:
            self._fits.move_to_end(sigma)
            return self._fits[sigma]
        fits = []
        for g, basis, clean in zip(self.groups, self.bases, self.clean):
            dev = clean.device
            mom = noisy_moments(clean, basis, sigma)                         # (G, M) raw noisy moments
            scale = mom[:, basis.sq.to(dev)].clamp_min(1e-300).sqrt()         # (G, m) noisy RMS per variable
            mom = mom * torch.exp(-basis.mom.to(dev, mom.dtype) @ scale.log().T).T   # moments of v = c/scale
            gram = mom[:, basis.pair.to(dev)]                                 # (G, p, p)
            gram = gram + self.ridge * torch.eye(basis.p, dtype=gram.dtype, device=dev)
            t = g.targets
            dcoef = basis.deriv_coef.to(dev, mom.dtype)[t]                    # (T, p)
            rhs = -dcoef * mom[:, basis.deriv.to(dev)[t]]                     # (G, T, p)
            rhs = rhs / scale[:, t, None]                                     # d/dc = (1/scale) d/dv
            theta = torch.linalg.solve(gram, rhs.transpose(1, 2))             # (G, p, T), batched
            gram0 = gram - self.ridge * torch.eye(basis.p, dtype=gram.dtype, device=dev)
            # Hyvarinen objective J = E[s_hat^2] + 2 E[d s_hat / d c_k] = theta^T Gram theta - 2 theta^T b
            J = (theta * (gram0 @ theta)).sum(1) - 2 * (theta * rhs.transpose(1, 2)).sum(1)   # (G, T)
            fits.append(GroupFit(theta, scale, J))
        self._fits[sigma] = fits
        if len(self._fits) > self.cache_size:
            self._fits.popitem(last=False)
        return fits

    def expected_mse(self, sigma: float, per_coefficient: bool = False) -> torch.Tensor | float:
        """The exact denoising MSE per pixel on the (noised) training set, with no sampling.

        Stein again: E[(c_sigma,k + sigma^2 s_hat_k - c_k)^2] = sigma^2 + 2 sigma^4 E[d s_hat_k/d c_k]
        + sigma^4 E[s_hat_k^2] = sigma^2 + sigma^4 J_k, summed over the orthonormal coefficients.
        ``per_coefficient=True`` returns the (C*H*W,) packed vector of the per-coefficient terms.
        """
        out = torch.zeros(self.n_coefficients, dtype=self.solve_dtype,
                          device=self.clean[0].device)
        for g, f in zip(self.groups, self.fit(sigma)):
            out[g.vars[:, g.targets].flatten()] = sigma ** 2 + sigma ** 4 * f.J.flatten()
        return out if per_coefficient else float(out.mean())

    @property
    def n_coefficients(self) -> int:
        return self.shape[0] * self.shape[1] * self.shape[2]

    def coef_score(self, c: torch.Tensor, sigma: float) -> torch.Tensor:
        """The fitted score in coefficient space, s(c_sigma) (B, C*H*W), at one ``sigma``."""
        out = torch.zeros_like(c)
        for g, basis, f in zip(self.groups, self.bases, self.fit(sigma)):
            theta, scale = f.theta.to(c.device, c.dtype), f.scale.to(c.device, c.dtype)
            phi = poly_features(c[:, g.vars] / scale, basis, features_first=True)   # (p, B, G)
            if theta.shape[2] <= 4:   # few targets per group: contract p in place, no transposed copy
                s = torch.stack([(phi * theta[:, :, t].T[:, None, :]).sum(0) for t in range(theta.shape[2])], -1)
            else:
                s = torch.einsum("pbg,gpt->bgt", phi, theta)
            out[:, g.vars[:, g.targets].flatten()] = s.flatten(1)
        return out

    def denoise(self, x, sigma):
        if tuple(x.shape[1:]) != self.shape:
            raise ValueError(f"x must have shape (B, {', '.join(map(str, self.shape))}) like the training images, "
                             f"got {tuple(x.shape)}")
        c = self.coefficients(x)
        out = torch.empty_like(c)
        for s in torch.unique(sigma).tolist():                               # one fit per distinct sigma
            sel = sigma == s
            out[sel] = c[sel] + s ** 2 * self.coef_score(c[sel], s)          # Tweedie in coefficient space
        return self.images(out).reshape(x.shape)

    @property
    def n_features(self) -> list[int]:
        return [b.p for b in self.bases]

    def __repr__(self):
        extra = f", radius={self.radius}" if self.family == "local_coupled" else ""
        return (f"WaveletDenoiser(family={self.family!r}, degree={self.degree}, ridge={self.ridge:g}, "
                f"wavelet={self.wavelet!r}, level={self.level}{extra}, N={self.n_train})")
