"""Local and equivariant score machines (Chapter 5, "Creativity as locally consistent patch mosaics").

Kamb & Ganguli (2025) replace the ideal denoiser's one global posterior over training images by a
posterior *per pixel*, computed from the pixel's P x P neighbourhood only. In the EDM VE convention
(``x = x0 + sigma z``; the paper's VP form is the same up to the rescaling of Chapter 0) the machines'
denoisers are, for every pixel x of the query ``phi`` and channel c,

- LS (local score, Eqs. 7-8): co-located neighbourhoods of every training image,

      D(phi, sigma)(x) = sum_{i} softmax_i(-|phi_{Omega_x} - y_{i,Omega_x}|^2 / (2 sigma^2)) y_i(x);

- ELS (equivariant local score, Eqs. 9-10 / 39-40): every P x P patch of every training image at any
  location (the dictionary P_Omega(D)), the output being the patch's *centre* pixel,

      D(phi, sigma)(x) = sum_{varphi in P_Omega(D)} softmax(-|phi_{Omega_x} - varphi|^2 / (2 sigma^2)) varphi(0);

- boundary-broken ELS (Eq. 41): as ELS with zero padding, but each pixel's dictionary P^x_Omega(D)
  holds only the training patches with the same boundary offset (see :mod:`course_lib.patches`);
- ES (equivariant score, Eqs. 5-6): the ideal denoiser of all circular translations of all images.

Every machine is exact: it streams over training images in chunks through
:class:`course_lib.softmax.OnlineSoftmax`. Patch distances are matrix products
(ELS: ``|q|^2 - 2 <q, p> + |p|^2``; the ``|q|^2`` term is the same for every training patch of a
query, so it cancels in the softmax and is not computed), box-filter convolutions of squared
differences (LS) or FFT cross-correlations over all shifts (ES). ``patch_size`` is an odd int or a
function ``sigma -> odd int`` (the coarse-to-fine schedule of Sec. 5.1).

``backend``: ``"auto"`` (default) runs LS and ELS as fused attention kernels when they apply
(:mod:`course_lib.denoisers.attention`), ``"stream"`` the streaming path (the reference).
``process_group``: a ``torch.distributed`` group; each rank then holds only its shard of the training
set and every rank returns the denoiser of the union (:mod:`course_lib.distributed`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..patches import (boundary_groups, check_boundary, check_patch_size, describe_patch_size,
                       extract_patches, pad_images, patch_size_groups)
from ..distributed import all_reduce_softmax
from ..softmax import OnlineSoftmax
from ..validate import as_int, check_finite
from . import attention
from .base import Denoiser, check_images, check_query
from .ideal import underflow_gap

__all__ = ["LocalDenoiser", "EquivariantLocalDenoiser", "EquivariantDenoiser"]

_LOGIT_BUDGET = 2**23  # default number of logits held per chunk on a CPU (32 MB in float32)
# on a GPU: 2^26 logits (256 MB in float32, about 1 GB of temporaries per chunk), so that a chunk is
# many training images and kernel launches do not dominate (at 2^23 a boundary-broken ELS step with
# P = 3 and 16 queries streamed one training image per chunk)
_LOGIT_BUDGET_GPU = 2**26


def logit_budget(device) -> int:
    """Logits held per streamed chunk on ``device`` (bounds memory independently of N)."""
    return _LOGIT_BUDGET if torch.device(device).type == "cpu" else _LOGIT_BUDGET_GPU


class _TrainingSet:
    """Training images kept once, cast to a query's dtype/device on demand (cached)."""

    def __init__(self, train_images: torch.Tensor, chunk_size):
        check_finite(check_images(train_images, "train_images"), "train_images")
        self.Y = train_images.contiguous()
        self.N, self.C, self.H, self.W = self.Y.shape
        self.chunk_size = None if chunk_size is None else as_int(
            chunk_size, "chunk_size (training images per chunk, or None)", 1)
        self.amax = float(self.Y.abs().amax())  # bounds the patch norms (attention precision rule)
        self._cache = {}

    def check_query(self, x: torch.Tensor):
        if tuple(x.shape[1:]) != (self.C, self.H, self.W):
            raise ValueError(f"x must have image shape {(self.C, self.H, self.W)} like the training "
                             f"set, got {tuple(x.shape[1:])}")

    def cast(self, like: torch.Tensor) -> torch.Tensor:
        key = (like.dtype, like.device)
        if key == (self.Y.dtype, self.Y.device):
            return self.Y
        if key not in self._cache:
            self._cache = {key: self.Y.to(device=like.device, dtype=like.dtype)}
        return self._cache[key]

    def chunks(self, like: torch.Tensor, logits_per_image: int, n: int | None = None):
        """Yield (start, chunk) with chunk_size images, or ``n``, or as many as fit the logit budget."""
        Y = self.cast(like)
        n = n or self.chunk_size or max(1, logit_budget(like.device) // max(1, logits_per_image))
        for start in range(0, self.N, n):
            yield start, Y[start:start + n]


class _PatchMachine(Denoiser):
    """Shared driver: validate, split the batch by patch size P(sigma), stream, reassemble."""

    def __init__(self, train_images, patch_size, boundary, chunk_size, backend="auto",
                 process_group=None):
        self.train = _TrainingSet(train_images, chunk_size)
        self.backend = attention.check_backend(backend)
        self.process_group = process_group
        if not callable(patch_size):
            check_patch_size(patch_size)
        self.patch_size = patch_size
        self.boundary = check_boundary(boundary)
        t = self.train
        if boundary == "circular" and not callable(patch_size) and patch_size > min(t.H, t.W):
            raise ValueError(f"patch_size={patch_size} with boundary='circular' must be <= the image "
                             f"size min(H, W) = {min(t.H, t.W)} (a patch may not wrap onto itself)")

    def __repr__(self):
        t = self.train
        return (f"{type(self).__name__}(N={t.N}, shape={(t.C, t.H, t.W)}, "
                f"patch_size={describe_patch_size(self.patch_size)}, boundary={self.boundary!r})")

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        self.train.check_query(x)
        out = torch.empty_like(x)
        for P, idx in patch_size_groups(self.patch_size, sigma).items():
            out[idx] = self._denoise_P(x[idx], sigma[idx], P)
        return out

    def nearest(self, x: torch.Tensor, patch_size: int | None = None) -> dict:
        """The closest dictionary patch of every pixel's neighbourhood (Theorem 4.1's patch).

        Returns a dict of (B, H, W) tensors: ``image`` (training image index), ``location`` (flat
        index r * W + c of the patch centre in that image), ``sqdist`` (squared L2 distance) and
        ``centre`` (B, C, H, W), the centre pixel of that patch. ``patch_size`` defaults to the
        machine's (it must be an int then).
        """
        x = check_query(x)
        self.train.check_query(x)
        if self.process_group is not None:
            raise NotImplementedError("nearest() searches this rank's shard only: build the machine "
                                      "without process_group to search the whole training set")
        P = patch_size if patch_size is not None else self.patch_size
        if callable(P):
            raise ValueError("the machine has a patch-size schedule: pass patch_size=<odd int>")
        return self._nearest_P(x, check_patch_size(P))


class EquivariantLocalDenoiser(_PatchMachine):
    """ELS machine (Eqs. 9-10), or the boundary-broken ELS machine (Eq. 41) with ``boundary="zeros"``.

    Parameters
    ----------
    train_images : (N, C, H, W) training set.
    patch_size : odd int P, or a function sigma -> odd int (a schedule P(sigma)).
    boundary : ``"circular"`` (periodic: every pixel sees all N*H*W training patches) or
        ``"zeros"`` (zero padding: each pixel sees the patches of its boundary class only).
    chunk_size : training images per streamed chunk (default: as many as fit :func:`logit_budget`
        logits, 2^23 on a CPU and 2^26 on a GPU).
    backend : ``"auto"``, ``"attention"`` or ``"stream"`` (see the module docstring).
    process_group : ``torch.distributed`` group when ``train_images`` is this rank's shard.
    """

    def __init__(self, train_images: torch.Tensor, patch_size, boundary: str = "circular",
                 chunk_size: int | None = None, backend: str = "auto", process_group=None):
        super().__init__(train_images, patch_size, boundary, chunk_size, backend, process_group)
        self._groups = {}

    def groups(self, P: int, device) -> list[torch.Tensor]:
        key = (P, str(device))
        if key not in self._groups:
            self._groups[key] = boundary_groups(self.train.H, self.train.W, P, self.boundary, device)
        return self._groups[key]

    def _stream(self, x: torch.Tensor, coef: torch.Tensor | None, P: int):
        """Yield, per chunk and pixel group g, (g, start, logits (B, G, m, n*m), centres (G, n*m, C)).

        logits = coef * (<q, p> - |p|^2 / 2), i.e. -|q - p|^2 / (2 sigma^2) up to the per-query
        constant -coef |q|^2 / 2, with coef = 1 / sigma^2 per batch element (1 when ``coef`` is
        None). One matmul per group and chunk: [coef q, -coef / 2] . [p, |p|^2].
        """
        B, C, L = x.shape[0], self.train.C, self.train.H * self.train.W
        groups = self.groups(P, x.device)
        Q = extract_patches(x, P, self.boundary)  # (B, L, d)
        coef = x.new_ones(B) if coef is None else coef
        Q = torch.cat([Q * coef.view(B, 1, 1), (-0.5 * coef).view(B, 1, 1).expand(B, L, 1)], -1)
        Qg = [Q[:, idx] for idx in groups]  # (B, G, m, d + 1)
        # memory per training image: its logits, plus its patches (and their per-group copies)
        per_image = B * sum(idx.shape[0] * idx.shape[1] ** 2 for idx in groups) + 2 * L * Q.shape[-1]
        for start, Yc in self.train.chunks(x, per_image):
            n = Yc.shape[0]
            T = extract_patches(Yc, P, self.boundary)  # (n, L, d)
            T = torch.cat([T, (T * T).sum(-1, keepdim=True)], -1)  # (n, L, d + 1)
            V = Yc.reshape(n, C, L).transpose(1, 2)  # (n, L, C)
            for g, idx in enumerate(groups):
                G, m = idx.shape
                Tg = T[:, idx].permute(1, 0, 2, 3).reshape(G, n * m, -1)
                Vg = V[:, idx].permute(1, 0, 2, 3).reshape(G, n * m, C)
                yield g, start, torch.matmul(Qg[g], Tg.transpose(1, 2)), Vg

    def _denoise_P(self, x: torch.Tensor, sigma: torch.Tensor, P: int) -> torch.Tensor:
        B = x.shape[0]
        groups = self.groups(P, x.device)
        states = attention.kernel_or_none(attention.els_states, self, x, sigma, P)
        if states is None:
            states = self._stream_states(x, sigma, P)
        if self.process_group is not None:
            states = [all_reduce_softmax(osm, self.process_group) for osm in states]
        out = x.new_empty(B, self.train.H * self.train.W, self.train.C)
        for idx, osm in zip(groups, states):
            out[:, idx] = osm.mean()
        return out.transpose(1, 2).reshape(x.shape)

    def _stream_states(self, x: torch.Tensor, sigma: torch.Tensor, P: int) -> list:
        """The streaming reference: one OnlineSoftmax (B, G, m) + (C,) per pixel-group tensor."""
        gap = underflow_gap(x.dtype)
        states = [OnlineSoftmax() for _ in self.groups(P, x.device)]
        for g, _, logits, Vg in self._stream(x, 1.0 / sigma**2, P):
            osm = states[g]
            if osm.m is not None and bool((logits.amax(-1) - osm.m < -gap).all()):
                continue  # every weight of this chunk underflows to exactly 0
            osm.update(logits, weighted_sum=lambda w: torch.matmul(w, Vg), inplace=True)
        return states

    def _nearest_P(self, x: torch.Tensor, P: int) -> dict:
        B, C, H, W = x.shape
        groups = self.groups(P, x.device)
        best = [None] * len(groups)
        for g, start, scores, Vg in self._stream(x, None, P):
            m = groups[g].shape[1]
            s, k = scores.max(-1)  # (B, G, m)
            img = start + k // m
            loc = groups[g][torch.arange(groups[g].shape[0], device=x.device).view(1, -1, 1), k % m]
            cen = Vg[torch.arange(Vg.shape[0], device=x.device).view(1, -1, 1), k]  # (B, G, m, C)
            if best[g] is None:
                best[g] = [s, img, loc, cen]
            else:
                better = s > best[g][0]
                for j, new in enumerate((s, img, loc, cen)):
                    mask = better if new.ndim == 3 else better.unsqueeze(-1)
                    best[g][j] = torch.where(mask, new, best[g][j])
        Q = extract_patches(x, P, self.boundary)
        q_half = 0.5 * (Q * Q).sum(-1)  # (B, L)
        out = {"image": x.new_empty(B, H * W, dtype=torch.long),
               "location": x.new_empty(B, H * W, dtype=torch.long),
               "sqdist": x.new_empty(B, H * W), "centre": x.new_empty(B, H * W, C)}
        for idx, (s, img, loc, cen) in zip(groups, best):
            out["image"][:, idx], out["location"][:, idx] = img, loc
            out["sqdist"][:, idx] = (2 * (q_half[:, idx] - s)).clamp_min(0.0)
            out["centre"][:, idx] = cen
        res = {k: v.reshape(B, H, W) for k, v in out.items() if k != "centre"}
        res["centre"] = out["centre"].transpose(1, 2).reshape(B, C, H, W)
        return res


class LocalDenoiser(_PatchMachine):
    """LS machine (Eqs. 7-8): every pixel compares its P x P neighbourhood with the co-located
    neighbourhood of every training image (no equivariance: the pixel knows where it is).

    The squared distances of all co-located neighbourhoods are one box filter (a P x P sum, as two
    separable convolutions) of the squared difference images (phi - y_i)^2, summed over channels.
    ``boundary="zeros"`` (default) truncates neighbourhoods at the image edge; ``"circular"`` wraps.
    With P >= 2 max(H, W) - 1 (zeros) or P = H = W (circular) every neighbourhood is the whole
    image and LS is the ideal denoiser.
    """

    def __init__(self, train_images: torch.Tensor, patch_size, boundary: str = "zeros",
                 chunk_size: int | None = None, backend: str = "auto", process_group=None):
        super().__init__(train_images, patch_size, boundary, chunk_size, backend, process_group)

    def _sqdist(self, x: torch.Tensor, Yc: torch.Tensor, P: int) -> torch.Tensor:
        """|phi_{Omega_x} - y_{i,Omega_x}|^2 for every pixel and chunk image: (B, H*W, n)."""
        B, C, H, W = x.shape
        n = Yc.shape[0]
        diff2 = (x.unsqueeze(1) - Yc.unsqueeze(0)).square_().reshape(B * n, C, H, W)
        padded = pad_images(diff2, P, self.boundary)
        ones_r = x.new_ones(1, C, P, 1)
        ones_c = x.new_ones(1, 1, 1, P)
        d2 = F.conv2d(F.conv2d(padded, ones_r), ones_c)  # (B*n, 1, H, W)
        return d2.reshape(B, n, H * W).transpose(1, 2)

    def _denoise_P(self, x: torch.Tensor, sigma: torch.Tensor, P: int) -> torch.Tensor:
        osm = attention.kernel_or_none(attention.ls_states, self, x, sigma, P)
        if osm is None:
            osm = self._stream_state(x, sigma, P)
        if self.process_group is not None:
            osm = all_reduce_softmax(osm, self.process_group)
        return osm.mean().transpose(1, 2).reshape(x.shape)

    def _stream_state(self, x: torch.Tensor, sigma: torch.Tensor, P: int) -> OnlineSoftmax:
        """The streaming reference: box-filtered distances, one OnlineSoftmax (B, H*W) + (C,)."""
        B, C, H, W = x.shape
        coef = (-0.5 / sigma**2).reshape(B, 1, 1)
        gap = underflow_gap(x.dtype)
        osm = OnlineSoftmax()
        for _, Yc in self.train.chunks(x, B * C * (H + P) * (W + P)):
            logits = self._sqdist(x, Yc, P).mul_(coef)
            if osm.m is not None and bool((logits.amax(-1) - osm.m < -gap).all()):
                continue
            V = Yc.reshape(Yc.shape[0], C, H * W)
            osm.update(logits, weighted_sum=lambda w: torch.einsum("bln,ncl->blc", w, V), inplace=True)
        return osm

    def _nearest_P(self, x: torch.Tensor, P: int) -> dict:
        B, C, H, W = x.shape
        best_d = best_i = None
        for start, Yc in self.train.chunks(x, B * C * (H + P) * (W + P)):
            d, i = self._sqdist(x, Yc, P).min(-1)
            i = i + start
            if best_d is None:
                best_d, best_i = d, i
            else:
                better = d < best_d
                best_d, best_i = torch.where(better, d, best_d), torch.where(better, i, best_i)
        Y = self.train.cast(x).reshape(self.train.N, C, H * W)
        loc = torch.arange(H * W, device=x.device).expand(B, -1)
        centre = Y[best_i, :, loc]  # (B, L, C)
        return {"image": best_i.reshape(B, H, W), "location": loc.reshape(B, H, W),
                "sqdist": best_d.reshape(B, H, W), "centre": centre.transpose(1, 2).reshape(B, C, H, W)}


class EquivariantDenoiser(Denoiser):
    """ES machine (Eqs. 5-6): the ideal denoiser of the orbit of the training set under all circular
    translations T_s (N*H*W images),

        D(phi, sigma) = sum_{i, s} softmax_{i,s}(-|phi - T_s y_i|^2 / (2 sigma^2)) T_s y_i.

    With (T_s y)(q) = y(q - s), <phi, T_s y_i> is a circular cross-correlation and the weighted sum of
    translates a circular convolution: both are FFTs, so one chunk costs O(B n HW log HW).
    """

    def __init__(self, train_images: torch.Tensor, chunk_size: int | None = None):
        self.train = _TrainingSet(train_images, chunk_size)

    def __repr__(self):
        t = self.train
        return f"EquivariantDenoiser(N={t.N}, shape={(t.C, t.H, t.W)})"

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        self.train.check_query(x)
        B, C, H, W = x.shape
        coef = (1.0 / sigma**2).reshape(B, 1, 1, 1)
        xf = torch.fft.rfft2(x)  # (B, C, H, W//2+1)
        osm = OnlineSoftmax()
        for _, Yc in self.train.chunks(x, 4 * B * C * H * W):
            n = Yc.shape[0]
            Yf = torch.fft.rfft2(Yc)
            corr = torch.fft.irfft2((xf.unsqueeze(1) * Yf.conj().unsqueeze(0)).sum(2), s=(H, W))
            half_sq = 0.5 * Yc.reshape(n, -1).square().sum(-1)
            logits = (corr - half_sq.view(1, n, 1, 1)).mul_(coef).reshape(B, n * H * W)

            def weighted_sum(w, Yf=Yf, n=n):
                wf = torch.fft.rfft2(w.reshape(B, n, 1, H, W))
                return torch.fft.irfft2((wf * Yf.unsqueeze(0)).sum(1), s=(H, W)).reshape(B, -1)

            osm.update(logits, weighted_sum=weighted_sum, inplace=True)
        return osm.mean().reshape(x.shape)
