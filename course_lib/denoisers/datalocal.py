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
computed once (``torch.unique`` over the rows: U distinct supports), rows that are empty not at all
(the uniform posterior: output pixel q is the training mean). For a chunk of K images the masked
distances of all (support, query, image) triples are ONE product

    logits (U, B K) = coef * M (U, d) @ Delta (d, B K),   Delta[n, (b, k)] = (x_{b,n} - y_{k,n})^2,

with coef = -1 / (2 sigma^2) folded into the masks M. When the supports are sparse (``density`` =
nnz / (U d) below ``sparse_below``) M is a sparse CSR matrix and the product costs nnz * B * K
multiply-adds, i.e. it scales with the mask sizes; otherwise it is one dense GEMM (U d B K, which the
dense formulation below also pays). Squared differences, not the expansion |x|^2 - 2 x.y + |y|^2,
so nothing cancels at small sigma. The logits stay in (U, B, K) layout; each distinct row's pixels
(``slots``) take their weighted sums from the same weights in one batched product. What remains is
the softmax over the B d N logits themselves (a max, an exp, a sum and a weighted sum each), which no
exact method avoids: ``benchmarks/bench_locality.py`` times it alone (the "floor") beside both
formulations. On a CPU, fresh multi-megabyte temporaries per chunk cost page faults comparable to the
arithmetic, so the squared differences reuse one buffer and the softmax runs in place.
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
    # the non-empty distinct rows (an empty row is the uniform posterior: the training mean) and, per
    # row u, the pixels that use it: ``slots`` (U', c) long, padded by repeating the row's first pixel
    # (a padded slot computes that pixel again: the same value is written twice)
    live = rows.any(1)
    pix = torch.nonzero(live[inv]).flatten()
    rank = torch.cumsum(live.long(), 0) - 1
    r = rank[inv[pix]]                                                   # live row of each live pixel
    order = torch.argsort(r, stable=True)
    counts = torch.bincount(r, minlength=int(live.sum()))
    c = int(counts.max()) if counts.numel() else 0
    start = torch.cumsum(counts, 0) - counts
    j = torch.arange(pix.numel()) - start[r[order]]                      # slot of each pixel in its row
    slots = pix[order][start].unsqueeze(1).repeat(1, c)                  # (U', c), first pixel everywhere
    slots[r[order], j] = pix[order]
    plan.update(pixels=pix, live_rows=rows[live], slots=slots)
    return plan


class DataLocalDenoiser(Denoiser):
    """D(x, sigma)_q = softmax-weighted mean of the training images' pixel q, posterior on mask row q only.

    Parameters
    ----------
    train_images : (N, C, H, W) training set.
    masks : (d, d) bool tensor (row q = pixels compared for output pixel q, d = C*H*W), or a function
        ``sigma -> (d, d) bool tensor`` such as :class:`course_lib.locality.WienerMasks` (called once per
        distinct sigma in a batch; its plan is cached for the last ``cache_size`` sigmas).
    chunk_size : training images per streamed chunk (None: as many as fit a logit budget).
    sparse_below : use the sparse mask product when the distinct supports fill less than this fraction
        of their (U, d) matrix (module doc); 0 forces dense, 1 forces sparse.
    dense_above : at or above this density use the dense formulation (:func:`dense_masked_denoise`,
        exact streaming) instead; None (default) never does: the mask product was as fast or faster at
        every density ``benchmarks/bench_locality.py`` measures.
    """

    def __init__(self, train_images: torch.Tensor, masks, chunk_size: int | None = None,
                 sparse_below: float = 0.1, dense_above: float | None = None, cache_size: int = 64):
        check_images(train_images, "train_images")
        self.shape = tuple(train_images.shape[1:])
        self.YT = train_images.reshape(train_images.shape[0], -1).T.contiguous()   # (d, N): chunks are slices
        self.d, self.N = self.YT.shape
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

    @property
    def Y(self) -> torch.Tensor:
        """The training set, (N, d) (a view of the stored (d, N) transpose)."""
        return self.YT.T

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
            self._cast = {key: self.YT.to(device=like.device, dtype=like.dtype)}
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
        YT = self._train(q)
        pl = self.plan(s)
        if pl["density"] >= self.dense_above:
            m = _check_masks(self.masks_fn(s), self.d, "masks(sigma)").to(q.device)
            return dense_masked_denoise(YT.T, q.reshape(-1, *self.shape), s, m,
                                        chunk_size=self.chunk_size or 512).reshape(q.shape)
        out = YT.mean(1).expand_as(q).clone()                             # empty rows: the training mean
        pix = pl["pixels"].to(q.device)
        if pix.numel() == 0:
            return out
        slots = pl["slots"].to(q.device)                                 # (U, c) pixels of each row
        U, c, B = slots.shape[0], slots.shape[1], q.shape[0]
        rows = pl["live_rows"].to(device=q.device, dtype=q.dtype) * (-0.5 / s**2)   # coef on each support
        if pl["density"] < self.sparse_below:
            with warnings.catch_warnings():                              # "sparse CSR support is in beta"
                warnings.simplefilter("ignore", UserWarning)
                rows = rows.to_sparse_csr()
        per_image = B * (U + self.d)                                     # logits and squared differences
        # (128 images for MNIST at B = 16 on a CPU, the fastest of 128-1024 timed like bench_locality.py)
        n = self.chunk_size or max(1, _budget(q.device) // per_image)
        n = n if self.chunk_size or n < 64 else n // 64 * 64             # aligned: 397 took 1.3x 384
        flat, qT = slots.reshape(-1), q.T.contiguous().unsqueeze(-1)     # (d, B, 1)
        # two scratch buffers for all chunks: fresh multi-MB tensors per chunk cost page faults that
        # took as long as the arithmetic on a CPU (bench_locality.py)
        dbuf, lbuf = (None, None) if q.requires_grad else (q.new_empty(self.d, B, n), q.new_empty(U, B * n))
        osm = OnlineSoftmax()
        for start in range(0, self.N, n):
            YcT = YT[:, start:start + n]                                 # (d, K), rows contiguous
            K = YcT.shape[1]
            if q.requires_grad:                                          # autograd: no out= / in-place
                logits = rows @ (YcT.unsqueeze(1) - qT).square().reshape(self.d, B * K)
            else:
                delta = dbuf[..., :K] if K == n else q.new_empty(self.d, B, K)
                torch.sub(YcT.unsqueeze(1), qT, out=delta).square_()     # (d, B, K) squared differences
                logits = lbuf if K == n else q.new_empty(U, B * K)
                # coef * masked distances; addmm(beta=0) into the buffer (mm(out=) allocates a temporary)
                torch.addmm(logits, rows, delta.view(self.d, B * K), beta=0, out=logits)
            # weighted sums of each row's pixels (U, K, c): one batched product, no (U, B, K) temporary
            V = YcT[flat].view(U, c, -1).transpose(1, 2)
            osm.update(logits.view(U, B, K), weighted_sum=lambda w, V=V: torch.bmm(w, V), inplace=True)
        out[:, flat] = osm.mean().transpose(0, 1).reshape(B, U * c)
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
