"""The ideal (empirical-optimal) denoiser of a finite training set (Chapter 1, Sec. "The optimal denoiser").

For training images ``x_1..x_N`` (flattened to R^d) the noised empirical distribution is the
delta mixture convolved with N(0, sigma^2 I),

    p_sigma(x) = 1/N sum_i N(x; x_i, sigma^2 I),

and its Bayes-optimal (MMSE) denoiser is the posterior mean

    D(x, sigma) = sum_i w_i(x) x_i,      w_i(x) = softmax_i(-|x - x_i|^2 / (2 sigma^2)),

(Kamb & Ganguli Sec. 2, Eqs. 3-4 in VE form). ``w_i`` is the posterior belief of the "Bayesian
guessing game": which training image did ``x`` come from? The sum streams over the training set in
chunks through :class:`course_lib.softmax.OnlineSoftmax` (exact online log-sum-exp), with the
distances computed as |x|^2 - 2 x.y + |y|^2 (one matmul per chunk), so memory is O(B * chunk_size)
whatever N is. A chunk whose every logit lies so far below the running maximum that its weights
underflow to exactly 0 is skipped (bit-identical result), which makes small-sigma calls cheap.

Also here: a class-conditional mode (weights restricted to images of label y), a top-k
approximation (softmax over the k nearest images only) with its measured error, and posterior
summaries (entropy, effective number of images, max weight, argmax) used by
:mod:`course_lib.diagnostics`. The smoothed variants live in :mod:`course_lib.denoisers.smoothing`.
"""
from __future__ import annotations

import math

import torch

from .. import distributed
from ..softmax import OnlineSoftmax, squared_distances
from ..validate import as_int, check_finite, check_float_dtype
from . import attention
from .base import Denoiser, check_images, check_query, sigma_batch

__all__ = ["IdealDenoiser", "ClassConditionalDenoiser", "underflow_gap"]


def underflow_gap(dtype: torch.dtype) -> float:
    """A gap g such that exp(-g) rounds to exactly 0 in ``dtype`` (below the smallest subnormal)."""
    fi = torch.finfo(dtype)
    return -math.log(fi.tiny) - math.log(fi.eps) + 1.0


def _check_chunk_size(chunk_size):
    if chunk_size is None:
        return None
    return as_int(chunk_size, "chunk_size (training images per chunk, or None for automatic)", 1)


# automatic chunks: 1024 images on a CPU (cache-sized; measured fastest there), and on a GPU as many
# as keep one chunk's (B, n) logits at 2^24 entries (64 MiB in float32), so that kernel launches do not
# dominate (fixed 1024-image chunks ran at 40x a bare matmul on an H200 for N = 60000, B = 256)
GPU_LOGITS_PER_CHUNK = 2**24


def auto_chunk_size(B: int, device) -> int:
    """Training images per streamed chunk for B queries on ``device`` (memory bounded, not O(N))."""
    if torch.device(device).type == "cpu":
        return 1024
    return max(1024, GPU_LOGITS_PER_CHUNK // max(int(B), 1))


class IdealDenoiser(Denoiser):
    """Exact posterior mean of the empirical distribution of ``train_images`` (Chapter 1).

    Parameters
    ----------
    train_images : (N, C, H, W) floating tensor, the training set (kept as one (N, d) matrix).
    chunk_size : number of training images per streamed chunk (memory O(B * chunk_size)); None
        (default) picks it per call with :func:`auto_chunk_size`.
    labels : optional (N,) integer labels, enabling :meth:`conditional` (class-conditional mode).
    topk : if set, ``D`` uses only the ``topk`` nearest training images (an approximation; its
        error is measured by :meth:`topk_error`).
    dtype : optional storage dtype (e.g. ``torch.float64`` for tests); queries are computed in the
        query's dtype, training chunks are cast to it on the fly.
    backend : ``"auto"`` (default: :meth:`denoise` runs as a fused attention kernel where
        :mod:`course_lib.denoisers.attention` allows), ``"attention"`` or ``"stream"`` (the reference).
    process_group : a ``torch.distributed`` group: ``train_images`` (and ``labels``) are this rank's
        shard, and :meth:`denoise`, :meth:`stream`, :meth:`log_density` and :meth:`posterior_stats`
        return the result for the union of all shards on every rank (:mod:`course_lib.distributed`).
    """

    def __init__(self, train_images: torch.Tensor, chunk_size: int | None = None, labels=None,
                 topk: int | None = None, dtype: torch.dtype | None = None, backend: str = "auto",
                 process_group=None):
        check_images(train_images, "train_images")
        check_finite(train_images, "train_images")
        self.shape = tuple(train_images.shape[1:])
        Y = train_images.reshape(train_images.shape[0], -1)
        if check_float_dtype(dtype) is not None:
            Y = Y.to(dtype)
        self.Y = Y.contiguous()
        self.Y_sq = (self.Y * self.Y).sum(-1)
        self.N, self.d = self.Y.shape
        self.chunk_size = _check_chunk_size(chunk_size)
        if labels is not None:
            labels = torch.as_tensor(labels, device=self.Y.device)
            if labels.shape != (self.N,) or labels.is_floating_point():
                raise ValueError(f"labels must be an integer tensor of shape ({self.N},), got "
                                 f"{tuple(labels.shape)} {labels.dtype}")
        self.labels = labels
        self._label_set = None if labels is None else set(labels.unique().tolist())
        if topk is not None:
            topk = as_int(topk, f"topk (N={self.N} training images)", 1, self.N)
        self.topk = topk
        self.backend = attention.check_backend(backend)
        self.process_group = process_group
        self._cache = {}

    def __repr__(self):
        return (f"IdealDenoiser(N={self.N}, shape={self.shape}, chunk_size={self.chunk_size}"
                + (f", topk={self.topk}" if self.topk else "") + ")")

    # ------------------------------------------------------------------ streaming core
    def _train(self, like: torch.Tensor):
        """(Y, |Y|^2) in ``like``'s dtype and device (cast once, then cached)."""
        key = (like.dtype, like.device)
        if key == (self.Y.dtype, self.Y.device):
            return self.Y, self.Y_sq
        if key not in self._cache:
            Y = self.Y.to(device=like.device, dtype=like.dtype)
            self._cache = {key: (Y, (Y * Y).sum(-1))}
        return self._cache[key]

    def _local_only(self, what: str):
        if self.process_group is not None:
            raise NotImplementedError(f"{what} (and top-k) use this rank's shard only: build the "
                                      "IdealDenoiser without process_group for it")

    def _flat(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[1:]) != self.shape:
            raise ValueError(f"x must have image shape {self.shape} like the training set, got "
                             f"{tuple(x.shape[1:])}")
        return x.reshape(x.shape[0], -1)

    def _class_mask(self, y, B, device):
        if y is None:
            return None
        if self.labels is None:
            raise ValueError("class-conditional call needs labels=... in the IdealDenoiser constructor")
        y = torch.as_tensor(y, device=device)
        if y.ndim == 0:
            y = y.expand(B)
        if y.shape != (B,):
            raise ValueError(f"y must be an int or a ({B},) tensor of labels, got shape {tuple(y.shape)}")
        missing = set(y.unique().tolist()) - self._label_set
        if missing and self.process_group is None:  # a shard may lack a label: checked after the merge
            raise ValueError(f"y contains labels {sorted(missing)} that no training image has")
        return y

    def stream(self, x: torch.Tensor, sigma: torch.Tensor, y=None, values: bool = True,
               track_entropy: bool = False, skip: bool = True) -> OnlineSoftmax:
        """Run the online softmax over the training set for queries ``x`` (B, C, H, W).

        ``sigma`` is a (B,) tensor; ``y`` optional class labels (B,). Returns the
        :class:`OnlineSoftmax` state (``.mean()``, ``.logsumexp()``, ``.entropy()``); also tracks
        the argmax ``.argmax`` (B,) and, when ``values=False``, skips the weighted sum
        (``.mean()`` is then unavailable).
        """
        q = self._flat(x)
        Y, Y_sq = self._train(q)
        labels = None if y is None else self.labels.to(q.device)
        coef = (-0.5 / sigma**2).unsqueeze(-1)
        gap = underflow_gap(q.dtype)
        osm = OnlineSoftmax(track_entropy=track_entropy)
        argmax = torch.zeros(q.shape[0], dtype=torch.long, device=q.device)
        zero = lambda w: w.new_zeros(w.shape[0], 1)  # noqa: E731
        cs = self.chunk_size or auto_chunk_size(q.shape[0], q.device)
        for start in range(0, self.N, cs):
            Yc, Yc_sq = Y[start:start + cs], Y_sq[start:start + cs]
            logits = squared_distances(q, Yc, Yc_sq).mul_(coef)
            if y is not None:
                logits.masked_fill_(labels[start:start + cs].unsqueeze(0) != y.unsqueeze(1),
                                    -math.inf)
            m_chunk, i_chunk = logits.max(-1)
            if osm.m is not None:
                if skip and bool((m_chunk - osm.m < -gap).all()):
                    continue
                argmax = torch.where(m_chunk > osm.m, i_chunk + start, argmax)
            else:
                argmax = i_chunk + start
            if values:
                osm.update(logits, values=Yc, inplace=True)
            else:
                osm.update(logits, weighted_sum=zero, inplace=True)
        if self.process_group is not None:  # merge the shards' states; argmax as a global index
            g = self.process_group
            m_local = osm.m
            argmax = argmax + distributed.shard_offset(self.N, g, q.device)
            distributed.all_reduce_softmax(osm, g)
            argmax = distributed.all_reduce_argmax(m_local, argmax, osm.m, g)
        osm.argmax = argmax
        return osm

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor, y=None) -> torch.Tensor:
        """D(x, sigma) = sum_i softmax_i(-|x - x_i|^2 / (2 sigma^2)) x_i (exact, or top-k)."""
        y = self._class_mask(y, x.shape[0], x.device)
        if self.topk is not None:
            return self.topk_denoise(x, sigma, self.topk, y=y)
        osm = None
        if y is None:
            q = self._flat(x)
            osm = attention.kernel_or_none(attention.ideal_states, q, sigma, self._train(q)[0], self.backend,
                                           self.chunk_size)
            if osm is not None and self.process_group is not None:
                osm = distributed.all_reduce_softmax(osm, self.process_group)
        if osm is None:
            osm = self.stream(x, sigma, y=y)
        return osm.mean().reshape(x.shape)

    def conditional(self, y) -> "ClassConditionalDenoiser":
        """The class-conditional ideal denoiser: posterior mean over training images with label y."""
        return ClassConditionalDenoiser(self, y)

    # ------------------------------------------------------------------ posterior summaries
    def log_density(self, x: torch.Tensor, sigma, y=None) -> torch.Tensor:
        """log p_sigma(x) = logsumexp_i(-|x - x_i|^2 / (2 sigma^2)) - log N - d/2 log(2 pi sigma^2)."""
        x = check_query(x)
        s = sigma_batch(sigma, x)
        y = self._class_mask(y, x.shape[0], x.device)
        lse = self.stream(x, s, y=y, values=False).logsumexp()
        n = self.N if y is None else (self.labels.to(x.device).unsqueeze(0) == y.unsqueeze(1)).sum(-1)
        if self.process_group is not None:
            n = distributed.all_reduce_count(n, self.process_group, x.device)
        return lse - torch.log(torch.as_tensor(n, dtype=x.dtype, device=x.device)) \
            - 0.5 * self.d * torch.log(2 * math.pi * s**2)

    def posterior_stats(self, x: torch.Tensor, sigma, y=None) -> dict:
        """Streaming summaries of the posterior weights w(x) at noise level sigma, each (B,):

        ``entropy`` H = -sum w log w (nats), ``n_eff`` = exp(H) (effective number of images),
        ``max_weight`` = max_i w_i, ``argmax`` = index of the most likely training image.
        """
        x = check_query(x)
        s = sigma_batch(sigma, x)
        y = self._class_mask(y, x.shape[0], x.device)
        osm = self.stream(x, s, y=y, values=False, track_entropy=True)
        H = osm.entropy().clamp_min(0.0)
        return {"entropy": H, "n_eff": torch.exp(H),
                "max_weight": torch.exp(osm.m - osm.logsumexp()), "argmax": osm.argmax}

    def posterior_weights(self, x: torch.Tensor, sigma, y=None) -> torch.Tensor:
        """All N posterior weights w_i(x), shape (B, N) (memory B*N: for diagnostics and small N)."""
        x = check_query(x)
        self._local_only("posterior_weights")
        s = sigma_batch(sigma, x)
        y = self._class_mask(y, x.shape[0], x.device)
        q = self._flat(x)
        Y, Y_sq = self._train(q)
        logits = squared_distances(q, Y, Y_sq).mul_((-0.5 / s**2).unsqueeze(-1))
        if y is not None:
            logits.masked_fill_(self.labels.to(q.device).unsqueeze(0) != y.unsqueeze(1), -math.inf)
        return torch.softmax(logits, dim=-1)

    def nearest(self, x: torch.Tensor, k: int = 1):
        """The k nearest training images of each query: (squared distances (B, k), indices (B, k)),
        ascending, streamed over chunks (memory O(B * (k + chunk_size)))."""
        x = check_query(x)
        self._local_only("nearest")
        k = as_int(k, f"k (N={self.N} training images)", 1, self.N)
        q = self._flat(x)
        Y, Y_sq = self._train(q)
        best_d = best_i = None
        cs = self.chunk_size or auto_chunk_size(q.shape[0], q.device)
        for start in range(0, self.N, cs):
            d2 = squared_distances(q, Y[start:start + cs], Y_sq[start:start + cs])
            idx = torch.arange(start, start + d2.shape[1], device=q.device).expand_as(d2)
            if best_d is not None:
                d2, idx = torch.cat([best_d, d2], 1), torch.cat([best_i, idx], 1)
            kk = min(k, d2.shape[1])
            best_d, pos = torch.topk(d2, kk, dim=1, largest=False, sorted=True)
            best_i = torch.gather(idx, 1, pos)
        return best_d, best_i

    # ------------------------------------------------------------------ top-k approximation
    def topk_denoise(self, x: torch.Tensor, sigma: torch.Tensor, k: int, y=None) -> torch.Tensor:
        """Top-k approximation: the softmax restricted to the k nearest training images.

        The dropped posterior mass m = 1 - sum_{i in top-k} w_i bounds the error,
        |D_k - D| = m |D_out - D_k| <= m * max_{i,j} |x_i - x_j|.
        """
        if y is not None:
            raise NotImplementedError("top-k is not combined with the class-conditional mode")
        d2, idx = self.nearest(x, k)
        q = self._flat(x)
        Y, _ = self._train(q)
        w = torch.softmax(d2 * (-0.5 / sigma**2).unsqueeze(-1), dim=-1)
        return torch.einsum("bk,bkd->bd", w, Y[idx]).reshape(x.shape)

    def topk_error(self, x: torch.Tensor, sigma, k: int) -> dict:
        """Measured error of the top-k approximation against the exact streaming result, per query:
        ``abs`` = |D_k - D|, ``rel`` = |D_k - D| / |D|, ``dropped_mass`` = 1 - sum_{top-k} w_i."""
        x = check_query(x)
        s = sigma_batch(sigma, x)
        exact = self.stream(x, s).mean()
        approx = self.topk_denoise(x, s, k).reshape(x.shape[0], -1)
        d2, _ = self.nearest(x, k)
        lse_k = torch.logsumexp(d2 * (-0.5 / s**2).unsqueeze(-1), dim=-1)
        lse = self.stream(x, s, values=False).logsumexp()
        err = (approx - exact).norm(dim=-1)
        return {"abs": err, "rel": err / exact.norm(dim=-1).clamp_min(torch.finfo(x.dtype).tiny),
                "dropped_mass": (-torch.expm1(lse_k - lse)).clamp_min(0.0)}


class ClassConditionalDenoiser(Denoiser):
    """D(x, sigma | y): the ideal denoiser over the training images of label ``y`` only."""

    def __init__(self, ideal: IdealDenoiser, y):
        if ideal.labels is None:
            raise ValueError("the IdealDenoiser has no labels: construct it with labels=...")
        self.ideal, self.y = ideal, y

    def denoise(self, x, sigma):
        return self.ideal.denoise(x, sigma, y=self.y)

    def __repr__(self):
        return f"ClassConditionalDenoiser({self.ideal!r}, y={self.y!r})"
