"""The one timing helper of the benchmark scripts: best wall time of repeated calls, synchronising CUDA."""
from __future__ import annotations

import time

import torch


def sync(device=None) -> None:
    """Wait for queued CUDA work (no-op on a CPU): a kernel launch returns before the kernel ends."""
    if device is None or torch.device(device).type == "cuda":
        if torch.cuda.is_available():
            torch.cuda.synchronize()


def best_time(fn, device=None, repeats: int = 3, warmup: bool = True) -> float:
    """Best of ``repeats`` wall times of ``fn()`` in seconds, after one untimed warm-up call unless
    ``warmup=False`` (for calls that take minutes)."""
    if warmup:
        fn()
        sync(device)
    best = float("inf")
    for _ in range(repeats):
        sync(device)
        t = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - t)
    return best
