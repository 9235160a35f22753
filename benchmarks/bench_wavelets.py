"""Benchmark of the wavelet score machine (Chapter 6) against the Wiener filter on the same data.

For N training images of size H x W (MNIST-like random digits by default, or real MNIST with --mnist):

1. Fitting. ``WaveletDenoiser(...)`` (clean moments, streamed once) and ``fit(sigma)`` (one noise level:
   sparse noisy-moment transform, Gram assembly, batched ridge solves) for each family, against
   ``GaussianDenoiser.from_data`` (mean, covariance and eigendecomposition), measured in the same run.
2. Denoising. One call ``D(x, sigma)`` on B queries at an already fitted sigma, as a ratio to the
   Wiener filter's call on the same queries.
3. The DWT itself: ``dwt2_packed`` + ``idwt2_packed`` on the B queries, against a bare (B, d) @ (d, d)
   matmul with the dense transform matrix (what a naive implementation would do).

Usage: python benchmarks/bench_wavelets.py [--N 2000] [--B 256] [--device auto] [--mnist] [--quick]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from course_lib.config import get_device  # noqa: E402
from course_lib.denoisers import GaussianDenoiser, WaveletDenoiser  # noqa: E402
from course_lib.wavelets import dwt2_packed, dwt_matrix, idwt2_packed  # noqa: E402


def _sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, dev, repeats=3):
    """Best wall time of ``repeats`` calls (after one warm-up call) and the last result."""
    out = fn()
    _sync(dev)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        _sync(dev)
        best = min(best, time.perf_counter() - t0)
    return best, out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--N", type=int, default=2000)
    ap.add_argument("--B", type=int, default=256)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--mnist", action="store_true", help="real MNIST (needs COURSE_DATA_DIR)")
    ap.add_argument("--quick", action="store_true", help="N=300, B=64, families up to degree 2")
    args = ap.parse_args(argv)
    if args.quick:
        args.N, args.B = 300, 64
    dev = get_device(args.device)
    g = torch.Generator().manual_seed(0)
    if args.mnist:
        from course_lib.data import load_dataset
        train = load_dataset("mnist", n=args.N)[0].double()
    else:  # sparse blobs on a dark background, 28 x 28
        train = (torch.rand(args.N, 1, 28, 28, generator=g, dtype=torch.float64) > 0.8).double()
        train = torch.nn.functional.avg_pool2d(train, 3, 1, 1) * 2 - 1
    train = train.to(dev)
    x = (train[: args.B] + 0.5 * torch.randn(args.B, *train.shape[1:], generator=g, dtype=torch.float64).to(dev))
    sigma = 0.5
    print(f"device={dev}  N={args.N}  B={args.B}  images {tuple(train.shape[1:])}  float64  threads={torch.get_num_threads()}")

    t_wiener_fit, G = timed(lambda: GaussianDenoiser.from_data(train, correction=0, cache=False), dev, 1)
    t_wiener_call, _ = timed(lambda: G(x, sigma), dev)
    print(f"Wiener filter: fit {t_wiener_fit:.3f} s, denoise {t_wiener_call * 1e3:.1f} ms")

    configs = [("independent", 2), ("independent", 4), ("band_tied", 2), ("band_tied", 3), ("local_coupled", 1),
               ("local_coupled", 2)]
    if args.quick:
        configs = [c for c in configs if c[1] <= 2]
    print(f"{'family':<14} {'K':>2} {'features':>8} {'init s':>8} {'x Wiener':>9} {'fit(sigma) s':>12} "
          f"{'denoise ms':>10} {'x Wiener':>9}")
    for fam, K in configs:
        t_init, D = timed(lambda: WaveletDenoiser(train, fam, K, level=2), dev, 1)

        def fit_fresh():
            D._fits.clear()
            return D.fit(sigma)

        t_fit, _ = timed(fit_fresh, dev)
        t_call, _ = timed(lambda: D(x, sigma), dev)
        print(f"{fam:<14} {K:>2} {max(D.n_features):>8} {t_init:>8.3f} {t_init / t_wiener_fit:>9.2f} {t_fit:>12.4f} "
              f"{t_call * 1e3:>10.1f} {t_call / t_wiener_call:>9.2f}")

    Wm = dwt_matrix(28, 28, "haar", 2).to(dev)
    xf = x.reshape(args.B, -1)
    t_dwt, _ = timed(lambda: idwt2_packed(dwt2_packed(x, "haar", 2), "haar", 2), dev)
    t_mm, _ = timed(lambda: (xf @ Wm.T) @ Wm, dev)
    print(f"DWT + inverse (haar, J=2) on {args.B} images: {t_dwt * 1e3:.2f} ms; dense-matrix version "
          f"{t_mm * 1e3:.2f} ms (ratio {t_dwt / t_mm:.2f})")


if __name__ == "__main__":
    main()
