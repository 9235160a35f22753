"""Streaming (OnlineSoftmax over chunks) vs one-shot softmax-weighted average over a training set.

Computes out = softmax(-|q - k_i|^2 / (2 sigma^2)) @ V for B queries against N items of dimension
d, both ways, checks they agree, and prints wall-clock time and peak extra memory as ratios
against the one-shot version and against a bare (B, d) x (d, N) matmul timed in the same run.

Peak memory: on CUDA, ``torch.cuda.max_memory_allocated``; on CPU, each variant runs in a fresh
subprocess and reports the growth of its peak resident set (VmHWM) over a baseline taken after
the inputs are allocated.

    python benchmarks/bench_softmax.py [--B 256] [--N 20000] [--d 784] [--chunk 2048] [--device auto]
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch

from course_lib.config import get_device
from course_lib.softmax import OnlineSoftmax, squared_distances


def make_inputs(B, N, d, device, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, d, generator=g, dtype=dtype).to(device)
    k = torch.randn(N, d, generator=g, dtype=dtype).to(device)
    return q, k, torch.linalg.vector_norm(k, dim=-1) ** 2  # no N x d temporary (keeps the RSS baseline low)


def one_shot(q, k, k_sq, sigma):
    logits = squared_distances(q, k, k_sq).mul_(-0.5 / sigma**2)
    return torch.softmax(logits, -1) @ k


def streaming(q, k, k_sq, sigma, chunk):
    osm = OnlineSoftmax()
    for s in range(0, k.shape[0], chunk):
        logits = squared_distances(q, k[s:s + chunk], k_sq[s:s + chunk]).mul_(-0.5 / sigma**2)
        osm.update(logits, values=k[s:s + chunk])
    return osm.mean()


def bare_matmul(q, k, k_sq, sigma):
    return q @ k.T


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, args, device, repeats):
    fn(*args)  # warm-up
    _sync(device)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn(*args)
        _sync(device)
        best = min(best, time.perf_counter() - t)
    return best


def _maxrss_bytes():
    """Peak resident set of this process. VmHWM (per address space, reset by exec) rather than
    ru_maxrss, which a child inherits from the forking parent."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def peak_memory(variant, a, device):
    """Peak extra memory (bytes) of one call of ``variant``."""
    if device.type == "cuda":
        q, k, k_sq = make_inputs(a.B, a.N, a.d, device, torch.float32)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        run_variant(variant, q, k, k_sq, a)
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base
    cmd = [sys.executable, __file__, "--_child", variant, "--B", str(a.B), "--N", str(a.N), "--d", str(a.d),
           "--chunk", str(a.chunk), "--sigma", str(a.sigma), "--device", "cpu"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["peak"]


def run_variant(variant, q, k, k_sq, a):
    if variant == "one_shot":
        return one_shot(q, k, k_sq, a.sigma)
    if variant == "streaming":
        return streaming(q, k, k_sq, a.sigma, a.chunk)
    return bare_matmul(q, k, k_sq, a.sigma)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--B", type=int, default=256)
    p.add_argument("--N", type=int, default=20000)
    p.add_argument("--d", type=int, default=784)
    p.add_argument("--chunk", type=int, default=4096)
    p.add_argument("--sweep", type=int, nargs="*", default=[1024, 16384],
                   help="extra chunk sizes whose streaming time is also reported")
    p.add_argument("--sigma", type=float, default=10.0)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="auto")
    p.add_argument("--_child", default=None, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    device = get_device(a.device)

    if a._child:  # subprocess for CPU peak memory
        q, k, k_sq = make_inputs(a.B, a.N, a.d, device, torch.float32)
        # warm up kernels and thread pools on a tiny problem before taking the baseline
        run_variant(a._child, q[:2], k[:min(a.chunk, 64)], k_sq[:min(a.chunk, 64)], a)
        base = _maxrss_bytes()
        run_variant(a._child, q, k, k_sq, a)
        print(json.dumps({"peak": _maxrss_bytes() - base}))
        return

    q, k, k_sq = make_inputs(a.B, a.N, a.d, device, torch.float32)
    ref = one_shot(q.double(), k.double(), k_sq.double(), a.sigma)
    err = (streaming(q, k, k_sq, a.sigma, a.chunk).double() - ref).abs().max().item()
    err1 = (one_shot(q, k, k_sq, a.sigma).double() - ref).abs().max().item()
    print(f"device={device}  B={a.B} N={a.N} d={a.d} chunk={a.chunk} sigma={a.sigma}  float32")
    print(f"max |error| vs float64 one-shot: streaming {err:.2e}, one-shot float32 {err1:.2e}")
    times = {v: timed(lambda *x, v=v: run_variant(v, *x, a), (q, k, k_sq), device, a.repeats)
             for v in ("bare_matmul", "one_shot", "streaming")}
    mems = {v: peak_memory(v, a, device) for v in ("one_shot", "streaming")}
    print(f"{'variant':<12}{'time (s)':>10}{'x matmul':>10}{'x one-shot':>12}{'peak extra MB':>15}")
    for v in ("bare_matmul", "one_shot", "streaming"):
        mem = f"{mems[v] / 2**20:15.1f}" if v in mems else f"{'':>15}"
        print(f"{v:<12}{times[v]:10.4f}{times[v] / times['bare_matmul']:10.2f}"
              f"{times[v] / times['one_shot']:12.2f}{mem}")
    logits_mb = a.B * a.N * 4 / 2**20
    for c in a.sweep:
        t = timed(lambda *x, c=c: streaming(*x, a.sigma, c), (q, k, k_sq), device, a.repeats)
        print(f"{'chunk=' + str(c):<12}{t:10.4f}{t / times['bare_matmul']:10.2f}{t / times['one_shot']:12.2f}")
    print(f"(one-shot holds B x N float32 logits = {logits_mb:.1f} MB and grows with N; streaming holds "
          f"O(chunk x (B + d)) = {a.chunk * (a.B + a.d) * 4 / 2**20:.1f} MB whatever N)")
    print(f"streaming / one-shot: time {times['streaming'] / times['one_shot']:.2f}x, "
          f"peak memory {mems['streaming'] / max(mems['one_shot'], 1):.3f}x")


if __name__ == "__main__":
    main()
