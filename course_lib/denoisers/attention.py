"""Every softmax machine is attention: a fused-kernel backend for the ideal, LS and ELS machines.

The machines average values with weights softmax_k(-|q - k|^2 / (2 sigma^2)). With

    q' = [q / sigma^2, -1 / (2 sigma^2)],      k' = [k, |k|^2],

the logit equals q' . k' - |q|^2 / (2 sigma^2), and the last term is the same for every key of a
query, so it cancels in the softmax: sum_k softmax(q' . k') v_k is exactly scaled-dot-product
attention (scale 1) with the query's patches as queries, the training patches as keys and their
centre pixels (ELS), co-located pixels (LS) or whole images (ideal) as values. Fused kernels never
write the B x N logits: ``torch.nn.functional.scaled_dot_product_attention``'s flash kernel on a CPU
and its memory-efficient (cutlass) kernel on CUDA. We call their log-sum-exp returning forms, so
training sets larger than one kernel call are chained exactly through
:meth:`course_lib.softmax.OnlineSoftmax.merge` (memory flat in N), and the per-query states can be
all-reduced across processes (:mod:`course_lib.distributed`). q', k' and v are zero-padded to a head
dimension E, a multiple of 8 (the kernels want equal, aligned head dims; zeros change no product).

``backend="auto"`` (the machines' default) uses the kernel when it exists for the device and dtype
(CPU: float32/float64; CUDA: float32/float16/bfloat16), has not rejected this head dimension before,
the head dimension is at most ``AUTO_MAX_HEAD_DIM`` for the device (CPU 96: measured on 2 cores with
``benchmarks/bench_local.py``, circular ELS, B = 16, sigma = 1, the flash kernel beat the in-place
streaming path 4.6x at E = 16 (P = 3), 2.1x at E = 56 (P = 7), 1.5x at E = 88 (P = 9, N = 250) and
lost at E = 128 (P = 11: 0.92x; boundary-broken 0.98x), and it takes 2x the streaming time for the
ideal denoiser at E = 792; CUDA 256, the largest head dim of the tuned kernels; LS, whose streaming
path is a box filter, only up to E = 32 on a CPU), and
the logits are representable: the rounding floor of a logit in the kernel's dtype,
u |q'| |k'| <= u (|q| K + K^2 / 2) / sigma^2 with K = sqrt(d) max|pixel|, must stay below
``LOGIT_TOL`` (0.01). Otherwise, or with ``backend="stream"``, the machine runs its streaming path
(the reference). ``backend="attention"`` forces the kernel and raises if it is unavailable. Choice
made here (the sources are silent): the precision rule is the magnitude of the logits the kernel must
represent, not a sigma constant, so it adapts to P, C and the data range; the streaming path rounds
the same terms, and at such small sigma it also skips chunks whose weights underflow.
"""
from __future__ import annotations

import math

import torch

from ..patches import extract_patches
from ..softmax import OnlineSoftmax

__all__ = ["BACKENDS", "LOGIT_TOL", "AUTO_MAX_HEAD_DIM", "check_backend", "kernel_dtypes", "head_dim", "attention_lse",
           "kernel_or_none", "use_attention", "KernelRejected", "ideal_states", "els_states", "ls_states"]

BACKENDS = ("auto", "attention", "stream")
LOGIT_TOL = 1e-2
AUTO_MAX_HEAD_DIM = {"cpu": 96, "cuda": 256}
# LS streams through box filters, O(P) per pair against the kernel's O(P^2): on a CPU (N = 200, B = 6,
# one thread) the kernel was 3.1x faster at P = 3 (E = 16), 0.93x at P = 7 and 0.74x at P = 11
LS_AUTO_MAX_HEAD_DIM = {"cpu": 32, "cuda": 256}
# keys (and values) held per kernel call, in elements: 64 MiB of float32 keys on a CPU, 1 GiB on a GPU
KEY_BUDGET_CPU, KEY_BUDGET_GPU = 2**24, 2**28
_REJECTED: set = set()   # (device type, dtype, E) whose kernel call raised: streamed from then on


class KernelRejected(RuntimeError):
    """The fused kernel refused these inputs (recorded; ``auto`` streams from then on)."""


def check_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    return backend


def kernel_dtypes(device) -> tuple:
    """Dtypes a log-sum-exp returning fused attention kernel accepts on ``device`` (empty: none)."""
    kind = torch.device(device).type
    if kind == "cpu" and hasattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu"):
        return (torch.float32, torch.float64)
    if kind == "cuda" and hasattr(torch.ops.aten, "_scaled_dot_product_efficient_attention"):
        return (torch.float32, torch.float16, torch.bfloat16)
    return ()


def head_dim(d: int) -> int:
    """Padded head dimension for d features plus the |k|^2 column: a multiple of 8."""
    return -(-(d + 1) // 8) * 8


def key_budget(device) -> int:
    return KEY_BUDGET_CPU if torch.device(device).type == "cpu" else KEY_BUDGET_GPU


def kernel_or_none(states_fn, *args):
    """``states_fn(*args)`` (one of the ``*_states`` below), or None, meaning "stream", when the kernel
    rejected these inputs (recorded: ``auto`` streams for them from then on)."""
    try:
        return states_fn(*args)
    except KernelRejected:
        return None


def attention_lse(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor):
    """softmax(q k^T) v and logsumexp(q k^T) (scale 1) for (Z, H, L, E) tensors, never forming q k^T.

    Returns (out (Z, H, Lq, E), lse (Z, H, Lq) in q's dtype). Raises :class:`KernelRejected`.
    """
    try:
        if q.device.type == "cpu":
            out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
                q, k, v, 0.0, False, scale=1.0)
        elif q.device.type == "cuda":
            out, lse = torch.ops.aten._scaled_dot_product_efficient_attention(
                q, k, v, None, True, 0.0, False, scale=1.0)[:2]
            lse = lse[..., :q.shape[-2]]  # the kernel pads the log-sum-exp to a multiple of 32
        else:
            raise RuntimeError(f"no fused attention kernel with log-sum-exp on {q.device.type}")
    except RuntimeError as err:
        _REJECTED.add((q.device.type, q.dtype, q.shape[-1]))
        raise KernelRejected(str(err)) from err
    return out, lse.to(q.dtype)


def logit_floor(dtype, q_norm: float, k_norm: float, sigma_min: float) -> float:
    """Rounding floor of the kernel's logits q'.k': u (|q| K + K^2 / 2) / sigma_min^2."""
    u = torch.finfo(dtype).eps / 2
    return u * (q_norm * k_norm + 0.5 * k_norm**2) / sigma_min**2


def use_attention(backend: str, device, dtype, E: int, q_norm: float, k_norm: float,
                  sigma_min: float, ceiling: dict | None = None) -> bool:
    """The automatic choice (see the module docstring); ``backend="attention"`` raises if impossible."""
    if check_backend(backend) == "stream":
        return False
    kind = torch.device(device).type
    why = None
    if dtype not in kernel_dtypes(device):
        why = f"no fused attention kernel for {dtype} on {kind} (has {kernel_dtypes(device)})"
    elif (kind, dtype, E) in _REJECTED:
        why = f"the kernel rejected head dimension {E} for {dtype} on {kind} earlier"
    if why is not None:
        if backend == "attention":
            raise ValueError(f"backend='attention' is impossible here: {why}; use 'auto' or 'stream'")
        return False
    if backend == "attention":
        return True
    return (E <= (ceiling or AUTO_MAX_HEAD_DIM).get(kind, 0)
            and logit_floor(dtype, q_norm, k_norm, sigma_min) <= LOGIT_TOL)


def _augment(Z: torch.Tensor, E: int, coef: torch.Tensor | None = None) -> torch.Tensor:
    """Keys [k, |k|^2, 0...] (coef None) or queries [coef q, -coef / 2, 0...], padded to E."""
    extra = (Z * Z).sum(-1, keepdim=True) if coef is None else (-0.5 * coef).expand(*Z.shape[:-1], 1)
    head = Z if coef is None else Z * coef
    pad = Z.new_zeros(*Z.shape[:-1], E - Z.shape[-1] - 1)
    return torch.cat([head, extra, pad], -1)


def _pad(V: torch.Tensor, E: int) -> torch.Tensor:
    return torch.cat([V, V.new_zeros(*V.shape[:-1], E - V.shape[-1])], -1)


def _run(q, chunks, dv) -> OnlineSoftmax:
    """Chain the kernel over (k, v) chunks: one merged state of shape (Z, H, Lq) + (dv,)."""
    osm = OnlineSoftmax()
    for k, v in chunks:
        out, lse = attention_lse(q, k, v)
        osm.merge(OnlineSoftmax.from_mean(out[..., :dv], lse))
    return osm


def _norm_max(Q: torch.Tensor) -> float:
    return float(Q.norm(dim=-1).amax())


def ideal_states(q: torch.Tensor, sigma: torch.Tensor, Y: torch.Tensor, backend: str,
                 chunk_size: int | None = None) -> OnlineSoftmax | None:
    """Ideal denoiser (Chapter 1) as attention: state (B,) + (d,), or None when streaming is chosen."""
    B, d = q.shape
    E = head_dim(d)
    k_norm = float(Y.norm(dim=-1).amax())
    if not use_attention(backend, q.device, q.dtype, E, _norm_max(q), k_norm, float(sigma.min())):
        return None
    qa = _augment(q, E, (1.0 / sigma**2).unsqueeze(-1)).view(1, 1, B, E)
    n = chunk_size or max(1, key_budget(q.device) // (2 * E))

    def chunks():
        for s in range(0, Y.shape[0], n):
            Yc = Y[s:s + n]
            yield _augment(Yc, E).view(1, 1, -1, E), _pad(Yc, E).view(1, 1, -1, E)

    osm = _run(qa, chunks(), d)
    return OnlineSoftmax.from_mean(osm.mean().view(B, d), osm.logsumexp().view(B))


def _patch_queries(machine, x: torch.Tensor, sigma: torch.Tensor, P: int, ceiling: dict | None = None):
    """(query patches (B, L, C P^2), padded head dim E) of a patch machine at patch size P, or None when
    :func:`use_attention` chooses the streaming path for them."""
    t = machine.train
    d = t.C * P * P
    E = head_dim(d)
    Q = extract_patches(x, P, machine.boundary)  # (B, L, d)
    if not use_attention(machine.backend, x.device, x.dtype, E, _norm_max(Q), math.sqrt(d) * t.amax,
                         float(sigma.min()), ceiling):
        return None
    return Q, E


def els_states(machine, x: torch.Tensor, sigma: torch.Tensor, P: int) -> list | None:
    """ELS / boundary-broken ELS (Chapter 5, Eqs. 9-10 and 41) as attention, one head per pixel group.

    For a group tensor (G, m) the B*m query patches of each group are the queries of head g and the
    n*m training patches at the same locations its keys. Returns one state (B, G, m) + (C,) per
    group tensor (the streaming path's layout), or None when streaming is chosen.
    """
    t = machine.train
    B, C, L = x.shape[0], t.C, t.H * t.W
    if (pq := _patch_queries(machine, x, sigma, P)) is None:
        return None
    Q, E = pq
    Q = _augment(Q, E, (1.0 / sigma**2).view(B, 1, 1))
    groups = machine.groups(P, x.device)
    qs = [Q[:, idx].permute(1, 0, 2, 3).reshape(1, idx.shape[0], B * idx.shape[1], E) for idx in groups]
    states = [OnlineSoftmax() for _ in groups]
    n_max = machine.train.chunk_size or max(1, key_budget(x.device) // (3 * L * E))
    for _, Yc in t.chunks(x, 0, n_max):
        n = Yc.shape[0]
        T = _augment(extract_patches(Yc, P, machine.boundary), E)  # (n, L, E)
        V = _pad(Yc.reshape(n, C, L).transpose(1, 2), E)  # (n, L, E)
        for g, idx in enumerate(groups):
            G, m = idx.shape
            k = T[:, idx].permute(1, 0, 2, 3).reshape(1, G, n * m, E)
            v = V[:, idx].permute(1, 0, 2, 3).reshape(1, G, n * m, E)
            out, lse = attention_lse(qs[g], k, v)
            states[g].merge(OnlineSoftmax.from_mean(
                out[0, ..., :C].reshape(G, B, m, C).transpose(0, 1), lse[0].reshape(G, B, m).transpose(0, 1)))
    return states


def ls_states(machine, x: torch.Tensor, sigma: torch.Tensor, P: int) -> OnlineSoftmax | None:
    """LS (Chapter 5, Eqs. 7-8) as attention: one head per pixel, B queries, the N co-located training
    neighbourhoods as keys. State (B, L) + (C,), or None when streaming is chosen."""
    t = machine.train
    B, C, L = x.shape[0], t.C, t.H * t.W
    if (pq := _patch_queries(machine, x, sigma, P, LS_AUTO_MAX_HEAD_DIM)) is None:
        return None
    Q, E = pq
    q = _augment(Q, E, (1.0 / sigma**2).view(B, 1, 1)).transpose(0, 1).unsqueeze(0)  # (1, L, B, E)
    n_max = machine.train.chunk_size or max(1, key_budget(x.device) // (3 * L * E))

    def chunks():
        for _, Yc in t.chunks(x, 0, n_max):
            n = Yc.shape[0]
            k = _augment(extract_patches(Yc, P, machine.boundary), E).transpose(0, 1).unsqueeze(0)
            v = _pad(Yc.reshape(n, C, L).permute(2, 0, 1), E).unsqueeze(0)  # (1, L, n, E)
            yield k, v

    osm = _run(q, chunks(), C)
    return OnlineSoftmax.from_mean(osm.mean()[0].transpose(0, 1), osm.logsumexp()[0].transpose(0, 1))
