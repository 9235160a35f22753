"""Exact sharding of a training set across processes (``torch.distributed``).

Every softmax machine of the course is a streaming state per query: the running maximum ``m``, the
normaliser ``s = sum_i exp(l_i - m)`` and the weighted sum ``acc = sum_i exp(l_i - m) v_i``
(:class:`course_lib.softmax.OnlineSoftmax`). States over disjoint item sets merge exactly, so a
training set split across K ranks gives the exact denoiser of the union:

    M = max_k m_k  (one all-reduce MAX),   s = sum_k e^{m_k - M} s_k,   acc = sum_k e^{m_k - M} acc_k
    (one all-reduce SUM of the rescaled states, packed in one buffer).

A machine built with ``process_group=group`` holds only its rank's shard of the training set; every
rank passes the same queries and gets the full result. Launch one process per GPU with ``torchrun``
(see README.md); on CPUs the ``gloo`` backend works the same way (``tests/test_distributed.py``).
"""
from __future__ import annotations

import torch
import torch.distributed as dist

from .softmax import OnlineSoftmax

__all__ = ["all_reduce_softmax", "all_reduce_count", "shard_offset", "all_reduce_argmax", "shard"]


def _check_group(group):
    if not dist.is_available() or not dist.is_initialized():
        raise RuntimeError("process_group was given but torch.distributed is not initialised: call "
                           "torch.distributed.init_process_group first (torchrun does the rendezvous)")


def all_reduce_softmax(osm: OnlineSoftmax, group=None) -> OnlineSoftmax:
    """Merge ``osm`` in place with the states of every rank of ``group``: afterwards every rank holds
    the state of the union of all shards (same ``mean()``, ``logsumexp()``, ``entropy()``, ``m``)."""
    _check_group(group)
    if osm.m is None:
        raise RuntimeError("OnlineSoftmax.update was never called on this rank (empty shard?)")
    M = osm.m.clone()
    dist.all_reduce(M, op=dist.ReduceOp.MAX, group=group)
    shift = torch.where(torch.isfinite(M), M, torch.zeros_like(M))
    scale = osm._rescale(shift)
    parts = [osm.s * scale, osm.acc * scale.unsqueeze(-1)]
    if osm.track_entropy:
        parts.append(scale * (osm.wl + (osm._shift - shift) * osm.s))
    sizes = [p.numel() for p in parts]
    buf = torch.cat([p.reshape(-1) for p in parts])
    dist.all_reduce(buf, op=dist.ReduceOp.SUM, group=group)
    out = torch.split(buf, sizes)
    osm.s, osm.acc = out[0].reshape(osm.s.shape), out[1].reshape(osm.acc.shape)
    if osm.track_entropy:
        osm.wl = out[2].reshape(osm.s.shape)
    osm.m, osm._shift = M, shift
    return osm


def all_reduce_count(n, group=None, device=None) -> torch.Tensor:
    """sum over ranks of a count (an int or an integer tensor), as an int64 tensor."""
    _check_group(group)
    t = torch.as_tensor(n, dtype=torch.int64, device=device).clone()
    dist.all_reduce(t, op=dist.ReduceOp.SUM, group=group)
    return t


def shard_offset(n_local: int, group=None, device=None) -> int:
    """Global index of this rank's first item: the sum of the shard sizes of the lower ranks."""
    _check_group(group)
    sizes = [torch.zeros(1, dtype=torch.int64, device=device) for _ in range(dist.get_world_size(group))]
    dist.all_gather(sizes, torch.tensor([n_local], dtype=torch.int64, device=device), group=group)
    return int(sum(int(s) for s in sizes[:dist.get_rank(group)]))


def all_reduce_argmax(m_local: torch.Tensor, idx_global: torch.Tensor, m_all: torch.Tensor,
                      group=None) -> torch.Tensor:
    """The global index of the largest logit: the smallest index among ranks whose local maximum
    ``m_local`` equals the global one ``m_all`` (ties go to the lowest index, like a single process)."""
    big = torch.iinfo(torch.int64).max
    cand = torch.where(m_local == m_all, idx_global, torch.full_like(idx_global, big))
    dist.all_reduce(cand, op=dist.ReduceOp.MIN, group=group)
    return cand


def shard(items: torch.Tensor, group=None) -> torch.Tensor:
    """This rank's contiguous share of ``items`` (split along dim 0 as evenly as possible)."""
    _check_group(group)
    k, r = dist.get_world_size(group), dist.get_rank(group)
    n = items.shape[0]
    if n < k:
        raise ValueError(f"cannot shard {n} items over {k} ranks: every rank needs at least one")
    lo, hi = r * n // k, (r + 1) * n // k
    return items[lo:hi]
