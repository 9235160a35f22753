"""Benchmark of the streaming ideal denoiser (Chapter 1).

1. Time of ``IdealDenoiser(x, sigma)`` on (B x d) queries against N training images, as a ratio to a
   bare ``torch.matmul`` of the same (B x d) @ (d x N) shape, measured in the same run. The exact
   posterior mean needs TWO products of that size (distances x.Y^T, then weights @ Y), so ~2x is the
   floor for a full pass; chunks whose weights underflow to exactly 0 are skipped (small sigma).
   The attention backend (``backend="attention"``: one fused SDPA kernel per key chunk, merged through
   its log-sum-exp; :mod:`course_lib.denoisers.attention`) is timed against the same floor. Its
   precision floor is printed: ``auto`` streams where it exceeds 0.01 or where the head dimension is
   above the device's ceiling (on a CPU: d + 1 > 96, so not for MNIST-sized images).
2. Peak extra memory of one call at N and 4N training images (the training set itself excluded), for
   the streaming denoiser and for a one-shot softmax over a (B x N) logit matrix. On CUDA it uses
   the allocator's peak statistics; on CPU each measurement runs in a fresh subprocess that resets
   the resident-set high-water mark (Linux ``/proc/self/clear_refs``) and reads its growth (VmHWM).

Usage: python benchmarks/bench_ideal.py [--N 20000] [--B 64] [--d 784] [--device auto] [--quick]
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from course_lib.config import get_device  # noqa: E402
from course_lib.denoisers import IdealDenoiser  # noqa: E402
from course_lib.denoisers.attention import logit_floor  # noqa: E402
from course_lib.denoisers.ideal import auto_chunk_size  # noqa: E402
from _timing import best_time  # noqa: E402


def one_shot(x2d, Y, sigma):
    """Reference without streaming: a (B x N) logit matrix and a dense softmax."""
    d2 = (x2d * x2d).sum(-1, keepdim=True) - 2 * x2d @ Y.T + (Y * Y).sum(-1)
    return torch.softmax(-d2 / (2 * sigma**2), -1) @ Y


def make(N, B, d, dev, seed=0):
    g = torch.Generator(device=dev).manual_seed(seed)
    Y = torch.empty(N, d, device=dev).uniform_(-1, 1, generator=g)  # in place: no temporaries
    x = torch.empty(B, d, device=dev).normal_(0, 0.5, generator=g).add_(Y[:B])
    return Y, x


GOAL = 1.5   # Chapter 1's issue: at most 1.5x a bare matmul of the same shape


def timing(N, B, d, dev, repeats, chunk_size):
    Y, x = make(N, B, d, dev)
    D = IdealDenoiser(Y.reshape(N, 1, 1, d), chunk_size=chunk_size, backend="stream")
    Da = IdealDenoiser(Y.reshape(N, 1, 1, d), chunk_size=chunk_size, backend="attention")
    xi = x.reshape(B, 1, 1, d)
    t_mm = best_time(lambda: torch.matmul(x, Y.T), dev, repeats)
    t_2mm = best_time(lambda: torch.matmul(torch.matmul(x, Y.T), Y), dev, repeats)
    print(f"N={N} B={B} d={d} device={dev} chunk_size={chunk_size or auto_chunk_size(B, dev)} "
          f"threads={torch.get_num_threads()}")
    print(f"  bare matmul (B x d) @ (d x N): {1e3 * t_mm:8.2f} ms;  the two products an exact "
          f"posterior mean needs: {t_2mm / t_mm:5.2f}x")
    for sigma in (80.0, 5.0, 1.0, 0.05):
        t = best_time(lambda: D(xi, sigma), dev, repeats)
        t1 = best_time(lambda: one_shot(x, Y, sigma), dev, repeats)
        ta = best_time(lambda: Da(xi, sigma), dev, repeats)
        err = (Da(xi, sigma) - D(xi, sigma)).abs().max().item()
        fl = logit_floor(x.dtype, float(x.norm(dim=-1).max()), float(Y.norm(dim=-1).max()), sigma)
        print(f"  sigma={sigma:6g}: IdealDenoiser {1e3 * t:8.2f} ms  ratio to matmul {t / t_mm:5.2f}x "
              f"(goal {GOAL}x: {'met' if t / t_mm <= GOAL else 'not met'}), to the two products "
              f"{t / t_2mm:5.2f}x  (one-shot softmax {t1 / t_mm:5.2f}x)")
        print(f"  {'':14s}attention {1e3 * ta:8.2f} ms  ratio to matmul {ta / t_mm:5.2f}x, to the two "
              f"products {ta / t_2mm:5.2f}x, max|attention - stream| {err:.1e}, logit floor {fl:.1e}")
    print(f"  an exact full pass needs the two products ({t_2mm / t_mm:.2f}x one matmul in this run), so the "
          f"{GOAL}x goal needs that ratio below {GOAL} (BLAS-dependent) or skipped chunks (small sigma); "
          f"'to the two products' is the denoiser's own overhead")


def _peak_child(N, B, d, device, which, chunk_size):
    """Run in a subprocess: extra peak memory (bytes) of one call, training set excluded."""
    dev = torch.device(device)
    Y, x = make(N, B, d, dev)
    D = IdealDenoiser(Y.reshape(N, 1, 1, d), chunk_size=chunk_size)
    xi = x.reshape(B, 1, 1, d)
    call = (lambda: D(xi, 1.0)) if which == "stream" else (lambda: one_shot(x, Y, 1.0))
    if dev.type == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        call()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base
    try:  # Linux: reset the resident-set high-water mark, then read it back (VmHWM)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        base = _status_kib("VmRSS")
        call()
        return (_status_kib("VmHWM") - base) * 1024
    except OSError:  # elsewhere: growth of ru_maxrss (hides anything below the setup's own peak)
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        call()
        return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) * 1024


def _status_kib(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise OSError(f"{field} not in /proc/self/status")


def peak(N, B, d, dev, which, chunk_size):
    cmd = [sys.executable, __file__, "--_child", json.dumps([N, B, d, str(dev), which, chunk_size])]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1])


def memory(N, B, d, dev, chunk_size):
    print(f"peak extra memory of one call (B={B}, d={d}; training set excluded):")
    for which in ("stream", "one-shot"):
        m1, m4 = peak(N, B, d, dev, which, chunk_size), peak(4 * N, B, d, dev, which, chunk_size)
        ratio = m4 / max(m1, 1)
        print(f"  {which:9s} N={N}: {m1 / 2**20:8.1f} MiB   4N={4 * N}: {m4 / 2**20:8.1f} MiB   "
              f"ratio 4N/N = {ratio:5.2f}")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--N", type=int, default=20000)
    p.add_argument("--B", type=int, default=64)
    p.add_argument("--d", type=int, default=784)
    p.add_argument("--chunk-size", type=int, default=None, help="default: automatic (auto_chunk_size)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (on a shared, oversubscribed CPU use 1: spinning OpenMP "
                        "threads make every small op wait)")
    p.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    p.add_argument("--_child", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a._child:
        print(_peak_child(*json.loads(a._child)))
        return
    if a.quick:
        a.N, a.B, a.repeats = 4000, 32, 2
    if a.threads:
        torch.set_num_threads(a.threads)
    dev = get_device(a.device)
    timing(a.N, a.B, a.d, dev, a.repeats, a.chunk_size)
    memory(a.N, 4 * a.B, a.d, dev, a.chunk_size)


if __name__ == "__main__":
    main()
