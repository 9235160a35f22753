"""The data-local denoiser of Lukoianov et al. (2025): the ideal denoiser, one mask per output pixel
(Chapter 4, Sec. "The data-local denoiser").

For a training set y_1..y_N (flattened to R^d) and a (d, d) boolean matrix ``masks`` whose ROW q is
the set S_q of pixels that output pixel q compares,

    D(x, sigma)_q = sum_i softmax_i( -sum_{n in S_q} (x_n - y_{i,n})^2 / (2 sigma^2) ) y_{i,q}.

All-ones masks give the ideal denoiser of Chapter 1 for every pixel; identity masks (S_q = {q}) a
per-pixel posterior; an empty mask the training mean of pixel q. In the paper the masks are the
binarised Wiener fields, :func:`course_lib.locality.wiener_masks` (VP form there: x_t = sqrt(ab) x,
1 - ab = ab sigma^2, the same logits).

**Computation.** Every output pixel has its own posterior over the N images, so d logits per image
and query are unavoidable; the distances need not cost d^2 each. Rows with the same support are
computed once (``torch.unique`` over the rows: U distinct supports). With the expansion

    sum_{n in S} (x_n - y_n)^2 = sum_{n in S} x_n^2 + sum_{n in S} y_n^2 - 2 sum_{n in S} x_n y_n,

the first two terms are (B, d) x (d, U) and (K, d) x (d, U) products, and the cross term of a chunk
of K images is ONE product W Y_chunk^T, where W is the (B U, d) matrix whose row (b, u) holds x_b on
the support u and zeros elsewhere. When the supports are sparse (``density`` = nnz / (U d) below
``sparse_below``) W is a sparse CSR matrix and the product costs nnz * B * K multiply-adds, i.e. it
scales with the mask sizes; otherwise W is dense (one GEMM). Pixels with an empty mask get the
training mean (uniform posterior) without any logits, and when no two pixels share a support the
weighted sums run in the supports' order (no (B, d, K) gather of the logits). Costs that remain: the
B d N logits themselves (one exp, max, sum and weighted sum each), so the gain over the dense
formulation is bounded by its d^2 / (nnz + logit passes) ratio; ``benchmarks/bench_locality.py``
measures both and the softmax floor.
:func:`dense_masked_denoise` is the authors' formulation ((B, K, d) squared differences times the
(d, d) mask, d^2 * B * K per chunk) and is what ``benchmarks/bench_locality.py`` compares against.
The softmax streams over the training set through :class:`course_lib.softmax.OnlineSoftmax` (exact
online log-sum-exp: the result is the softmax over all N images, whatever the chunking; the
authors' public code normalises inside every chunk, ``per_chunk=True`` below reproduces it).
Memory per chunk is bounded by a logit budget, independent of N.
"""
from __future__ import annotations

import math
import warnings

import torch

from ..softmax import OnlineSoftmax
from .base import Denoiser, check_images

__all__ = ["DataLocalDenoiser", "dense_masked_denoise", "mask_plan"]

LOGITS_PER_CHUNK_CPU = 2**22
LOGITS_PER_CHUNK_GPU = 2**26


def _budget(device) -> int:
    return LOGITS_PER_CHUNK_CPU if torch.device(device).type == "cpu" else LOGITS_PER_CHUNK_GPU


def _check_masks(m, d: int, name: str = "masks") -> torch.Tensor:
    if not isinstance(m, torch.Tensor):
        raise TypeError(f"{name} must be a (d, d) bool tensor (or a function sigma -> one), got {type(m).__name__}")
    if m.shape != (d, d):
        raise ValueError(f"{name} must have shape ({d}, {d}) for images of {d} pixels, got {tuple(m.shape)}")
    if m.dtype != torch.bool:
        raise TypeError(f"{name} must be a bool tensor (row q = the pixels output pixel q compares), got {m.dtype}")
    return m


def mask_plan(masks: torch.Tensor) -> dict:
    """The distinct rows of a (d, d) bool ``masks`` (module doc): ``rows`` (U, d) bool, ``inverse`` (d,)
    long (output pixel q uses ``rows[inverse[q]]``) and ``density`` = nnz(rows) / (U d)."""
    rows, inv = torch.unique(masks, dim=0, return_inverse=True)
    plan = {"rows": rows, "inverse": inv, "density": float(rows.sum()) / max(rows.numel(), 1)}
    # the pixels with a non-empty row (an empty one is the uniform posterior: the training mean) and
    # their rows among the non-empty distinct rows; `owner[u]` = the one pixel using row u when no
    # two pixels share a row (then the weighted sums need no (B, d, K) gather of the logits)
    live = rows.any(1)
    pix = torch.nonzero(live[inv]).flatten()
    rank = torch.cumsum(live.long(), 0) - 1
    plan.update(pixels=pix, live_rows=rows[live], live_inverse=rank[inv[pix]])
    counts = torch.bincount(plan["live_inverse"], minlength=int(live.sum()))
    plan["owner"] = (torch.empty_like(pix).scatter_(0, plan["live_inverse"], pix)
                     if bool((counts == 1).all()) else None)
    return plan


def _block_csr(rows_csr: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The (B U, d) CSR matrix whose block b is rows_csr with its entries (u, n) set to x[b, n]."""
    crow, col = rows_csr.crow_indices(), rows_csr.col_indices()
    U, d = rows_csr.shape
    B, nnz = x.shape[0], col.numel()
    offs = torch.arange(B, device=x.device, dtype=crow.dtype).unsqueeze(1) * nnz
    crow_all = torch.cat([(crow[:-1].unsqueeze(0) + offs).reshape(-1), crow.new_tensor([B * nnz])])
    return torch.sparse_csr_tensor(crow_all, col.repeat(B), x[:, col].reshape(-1), size=(B * U, d),
                                   check_invariants=False)


class DataLocalDenoiser(Denoiser):
    """D(x, sigma)_q = softmax-weighted mean of the training images' pixel q, posterior on mask row q only.

    Parameters
    ----------
    train_images : (N, C, H, W) training set.
    masks : (d, d) bool tensor (row q = pixels compared for output pixel q, d = C*H*W), or a function
        ``sigma -> (d, d) bool tensor`` such as :class:`course_lib.locality.WienerMasks` (called once per
        distinct sigma in a batch; its plan is cached for the last ``cache_size`` sigmas).
    chunk_size : training images per streamed chunk (None: as many as fit a logit budget).
    sparse_below : use the sparse cross term when the distinct supports fill less than this fraction
        of their (U, d) matrix (module doc); 0 forces dense, 1 forces sparse.
    dense_above : at or above this density use the dense formulation (:func:`dense_masked_denoise`,
        exact streaming) instead; None (default) never does: the support-shared product is at least as
        fast at every density measured by ``benchmarks/bench_locality.py`` (1.3x at density 0.49).
    """

    def __init__(self, train_images: torch.Tensor, masks, chunk_size: int | None = None,
                 sparse_below: float = 0.1, dense_above: float | None = None, cache_size: int = 64):
        check_images(train_images, "train_images")
        self.shape = tuple(train_images.shape[1:])
        self.Y = train_images.reshape(train_images.shape[0], -1).contiguous()
        self.N, self.d = self.Y.shape
        if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1):
            raise ValueError(f"chunk_size must be an int >= 1 or None, got {chunk_size!r}")
        if not 0 <= float(sparse_below) <= 1:
            raise ValueError(f"sparse_below must lie in [0, 1], got {sparse_below!r}")
        self.chunk_size, self.sparse_below, self.cache_size = chunk_size, float(sparse_below), int(cache_size)
        self.dense_above = math.inf if dense_above is None else float(dense_above)
        if callable(masks) and not isinstance(masks, torch.Tensor):
            self.masks_fn = masks
        else:
            fixed = _check_masks(masks, self.d)
            self.masks_fn = lambda s: fixed
        self._plans, self._cast = {}, {}

    def __repr__(self):
        return f"DataLocalDenoiser(N={self.N}, shape={self.shape}, masks={self.masks_fn!r})"

    def plan(self, sigma: float) -> dict:
        """:func:`mask_plan` of the masks at ``sigma`` (cached)."""
        key = round(float(sigma), 12)
        if key not in self._plans:
            if len(self._plans) >= self.cache_size:
                self._plans.pop(next(iter(self._plans)))
            m = _check_masks(self.masks_fn(float(sigma)), self.d, "masks(sigma)")
            self._plans[key] = mask_plan(m.cpu())
        return self._plans[key]

    def _train(self, like):
        key = (like.dtype, like.device)
        if key not in self._cast:
            Y = self.Y.to(device=like.device, dtype=like.dtype)
            self._cast = {key: (Y, Y * Y)}
        return self._cast[key]

    def denoise(self, x, sigma):
        if tuple(x.shape[1:]) != self.shape:
            raise ValueError(f"x must have image shape {self.shape} like the training set, got {tuple(x.shape[1:])}")
        q = x.reshape(x.shape[0], -1)
        out = torch.empty_like(q)
        for s in torch.unique(sigma).tolist():
            sel = torch.nonzero(sigma == s).flatten()
            out[sel] = self._denoise_one(q[sel], float(s))
        return out.reshape(x.shape)

    def _denoise_one(self, q: torch.Tensor, s: float) -> torch.Tensor:
        Y, Y2 = self._train(q)
        pl = self.plan(s)
        if pl["density"] >= self.dense_above:
            m = _check_masks(self.masks_fn(s), self.d, "masks(sigma)").to(q.device)
            return dense_masked_denoise(Y, q.reshape(-1, *self.shape), s, m,
                                        chunk_size=self.chunk_size or 512).reshape(q.shape)
        out = Y.mean(0).expand_as(q).clone()                             # empty rows: the training mean
        pix = pl["pixels"].to(q.device)
        if pix.numel() == 0:
            return out
        rows = pl["live_rows"].to(device=q.device, dtype=q.dtype)      # (U, d), non-empty
        inv = pl["live_inverse"].to(q.device)                            # (d',) row of each live pixel
        owner = None if pl["owner"] is None else pl["owner"].to(q.device)
        U, B = rows.shape[0], q.shape[0]
        if pl["density"] < self.sparse_below:
            with warnings.catch_warnings():                              # "sparse CSR support is in beta"
                warnings.simplefilter("ignore", UserWarning)
                R = rows.to_sparse_csr()
                W = _block_csr(R, q)                                     # (B U, d), nnz(rows) * B entries
        else:
            R = rows
            W = (rows.unsqueeze(0) * q.unsqueeze(1)).reshape(B * U, self.d)
        x_sq = (q * q) @ rows.T                                          # (B, U)
        per_image = B * pix.numel()                                      # logits (~400 images on a CPU:
        # the measured optimum of benchmarks/bench_locality.py, 256-512 images, keeps a chunk in cache)
        n = self.chunk_size or max(1, _budget(q.device) // per_image)
        coef = -0.5 / s**2
        vals = Y[:, pix if owner is None else owner]                     # (N, d') values, logits' order
        osm = OnlineSoftmax()
        for start in range(0, self.N, n):
            Yc, Y2c = Y[start:start + n], Y2[start:start + n]
            cross = (W @ Yc.T).reshape(B, U, -1)                         # (B, U, K)
            dist = (x_sq.unsqueeze(-1) + (R @ Y2c.T).unsqueeze(0)).sub_(cross, alpha=2.0)   # (B, U, K)
            logits = dist.clamp_min_(0.0).mul_(coef)
            logits = logits if owner is not None else logits[:, inv]     # (B, d', K)
            osm.update(logits, weighted_sum=lambda w, v=vals[start:start + n].T: torch.einsum(
                "bdk,dk->bd", w, v).unsqueeze(-1))
        out[:, pix if owner is None else owner] = osm.mean()[..., 0]
        return out


def dense_masked_denoise(train_images: torch.Tensor, x: torch.Tensor, sigma: float, masks: torch.Tensor,
                         chunk_size: int = 512, per_chunk: bool = False) -> torch.Tensor:
    """The dense formulation of the authors' code, for benchmarks and the chapter's bug demonstration.

    Per chunk of K images: delta = (x - y)^2 of shape (B, K, d), distances ``einsum("bkn,qn->bkq", delta,
    masks)`` (d^2 multiply-adds per image and query), then the softmax over images per output pixel:
    exact online log-sum-exp (``per_chunk=False``), or, as the public code does, a softmax inside each
    chunk whose normalised averages are summed and divided by the summed weights, i.e. the MEAN OF
    PER-CHUNK POSTERIOR MEANS (``per_chunk=True``; wrong unless there is one chunk).
    """
    x = check_images(x)
    B, d = x.shape[0], x[0].numel()
    masks = _check_masks(masks, d).to(device=x.device, dtype=x.dtype)
    Y = train_images.reshape(train_images.shape[0], -1).to(device=x.device, dtype=x.dtype)
    q = x.reshape(B, d)
    osm, acc, wsum = OnlineSoftmax(), 0.0, 0.0
    for start in range(0, Y.shape[0], chunk_size):
        Yc = Y[start:start + chunk_size]
        delta = (q[:, None, :] - Yc[None]) ** 2                 # (B, K, d)
        logits = torch.einsum("bkn,qn->bqk", delta, masks) * (-0.5 / float(sigma) ** 2)   # (B, d, K)
        if per_chunk:
            w = torch.softmax(logits, -1)
            acc = acc + (w * Yc.T[None]).sum(-1)
            wsum = wsum + w.sum(-1)
        else:
            osm.update(logits, weighted_sum=lambda w, v=Yc.T: (w * v).sum(-1, keepdim=True))
    out = acc / wsum if per_chunk else osm.mean()[..., 0]
    return out.reshape(x.shape)
