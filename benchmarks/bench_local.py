"""Benchmark of the ELS machine (Chapter 5): time per denoiser call vs the FLOPs of its patch matmul.

For one reverse step the ELS machine compares the B*H*W query patches with
the patches of its dictionary in one matmul of inner dimension d = C P^2 + 1 ([q, -1/2] . [p, |p|^2]):
2 d FLOPs per (query, training patch) pair, i.e.
FLOPs = 2 d * sum_groups B G m (N m). This script prints, in the same run,

- the machine's time per call and its achieved GFLOP/s on that count,
- a bare ``torch.matmul`` of exactly the same shapes (the compute floor of the distance step),
- a straightforward implementation: ``F.unfold`` every training patch into one (N H W, d) matrix,
  ``torch.cdist`` to all of them at once, ``softmax`` and a matmul with the centre pixels
  (exact too, but memory O(B H W N H W) and no streaming).

Usage: python benchmarks/bench_local.py [--n 32] [--batch 4] [--size 28] [--patch 5] [--repeat 3]
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from course_lib.denoisers import EquivariantLocalDenoiser
from course_lib.patches import centre_feature


def best_time(fn, repeat: int) -> float:
    fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return min(times)


def naive_els(x, Y, P, sigma):
    """Circular ELS by unfolding ALL training patches and one cdist (no streaming, no groups)."""
    B, C, H, W = x.shape
    h = P // 2
    pad = lambda z: F.pad(z, (h, h, h, h), mode="circular")  # noqa: E731
    T = F.unfold(pad(Y), P).transpose(1, 2).reshape(-1, C * P * P)  # (N L, d)
    Q = F.unfold(pad(x), P).transpose(1, 2).reshape(-1, C * P * P)  # (B L, d)
    w = torch.softmax(-torch.cdist(Q, T).square() / (2 * sigma**2), dim=1)
    out = w @ T[:, centre_feature(C, P)]
    return out.reshape(B, H * W, C).transpose(1, 2).reshape(x.shape)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=32, help="training images")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--size", type=int, default=28)
    ap.add_argument("--channels", type=int, default=1)
    ap.add_argument("--patch", type=int, default=5)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    dev = torch.device(args.device)
    g = torch.Generator().manual_seed(0)
    N, B, S, C, P = args.n, args.batch, args.size, args.channels, args.patch
    Y = (torch.rand(N, C, S, S, generator=g) * 2 - 1).to(dev)
    x = torch.randn(B, C, S, S, generator=g).to(dev)
    sigma = 1.0
    d, L = C * P * P + 1, S * S  # +1: the |p|^2 column of the augmented matmul
    print(f"device={dev} torch={torch.__version__} threads={torch.get_num_threads()}  "
          f"N={N} B={B} image={C}x{S}x{S} P={P} (matmul inner dim C P^2 + 1 = {d})")
    print(f"{'machine':<26}{'ms/call':>10}{'GFLOP':>9}{'GFLOP/s':>10}{'bare matmul GFLOP/s':>22}"
          f"{'machine/matmul time':>21}")
    for boundary in ("circular", "zeros"):
        m = EquivariantLocalDenoiser(Y, P, boundary=boundary)
        groups = m.groups(P, dev)
        flops = 2 * d * sum(B * G * mm * N * mm for G, mm in (tuple(gr.shape) for gr in groups))
        t_m = best_time(lambda: m(x, sigma), args.repeat)
        per_image = B * sum(G * mm * mm for G, mm in (tuple(gr.shape) for gr in groups))
        n_chunk = max(1, (2**23) // per_image)
        Qs = [torch.randn(B, G, mm, d, device=dev) for G, mm in (tuple(gr.shape) for gr in groups)]
        Ts = [[torch.randn(G, n * mm, d, device=dev) for n in
               [min(n_chunk, N - s) for s in range(0, N, n_chunk)]]
              for G, mm in (tuple(gr.shape) for gr in groups)]

        def bare():
            for Q, Tl in zip(Qs, Ts):
                for T in Tl:
                    torch.matmul(Q, T.transpose(1, 2))

        t_b = best_time(bare, args.repeat)
        print(f"{'ELS ' + boundary:<26}{1e3 * t_m:>10.1f}{flops / 1e9:>9.3f}{flops / t_m / 1e9:>10.2f}"
              f"{flops / t_b / 1e9:>22.2f}{t_m / t_b:>21.1f}")
    m = EquivariantLocalDenoiser(Y, P, boundary="circular")
    err = (m(x, sigma) - naive_els(x, Y, P, sigma)).abs().max().item()
    t_n = best_time(lambda: naive_els(x, Y, P, sigma), args.repeat)
    t_m = best_time(lambda: m(x, sigma), args.repeat)
    mem = B * L * N * L * 4 / 2**20
    print(f"\nstraightforward unfold + cdist (circular): {1e3 * t_n:.1f} ms/call, "
          f"{mem:.0f} MiB distance matrix; streaming ELS {1e3 * t_m:.1f} ms/call "
          f"-> speed-up x{t_n / t_m:.2f}, max |difference| {err:.2e}")


if __name__ == "__main__":
    main()
