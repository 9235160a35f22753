"""One ELS sampling run of Chapter 5 at book scale, attention backend vs streaming path (same run).

Chapter 5's "ELS samples" cell at SCALE=book: boundary-broken ELS with the patch-size schedule
P(sigma) = 15 .. 3, N = 200 MNIST images, 6 samples, 20 Euler steps from sigma = 80 to 0.01. Prints
the wall time of ``sample`` with ``backend="auto"`` (fused attention) and ``backend="stream"``, their
ratio, and the max |difference| of the samples (float32 rounding, amplified along the trajectory).

Usage: COURSE_DATA_DIR=... python benchmarks/bench_els_sampling.py [--n 200] [--samples 6] [--threads 1]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from course_lib.calibrate import PatchSizeSchedule  # noqa: E402
from course_lib.data import load_dataset  # noqa: E402
from course_lib.denoisers import EquivariantLocalDenoiser  # noqa: E402
from course_lib.sampling import sample  # noqa: E402
from course_lib.schedules import karras_sigmas  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--samples", type=int, default=6)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    train = load_dataset("mnist", n=a.n)[0].to(dev)
    schedule = PatchSizeSchedule([20.0, 5.0, 2.0, 0.8, 0.3, 0.05], [15, 11, 9, 7, 5, 3])  # Chapter 5's
    sigmas = karras_sigmas(a.steps, 0.01, 80.0).to(dev)
    x_T = sigmas[0].item() * torch.randn(a.samples, 1, 28, 28, generator=torch.Generator().manual_seed(0)).to(dev)
    print(f"device={dev} threads={torch.get_num_threads()} N={a.n} samples={a.samples} steps={a.steps}")
    out = {}
    for backend in ("auto", "stream"):
        els = EquivariantLocalDenoiser(train, schedule, boundary="zeros", backend=backend)
        t = time.perf_counter()
        out[backend] = sample(els, x_T, sigmas, solver="euler")
        if dev.type == "cuda":
            torch.cuda.synchronize()
        out[backend + "_s"] = time.perf_counter() - t
        print(f"  backend={backend:7s} {out[backend + '_s']:8.1f} s", flush=True)
    diff = (out["auto"] - out["stream"]).abs().max().item()
    print(f"  stream / attention = {out['stream_s'] / out['auto_s']:.2f}x; max |sample difference| = {diff:.1e}")


if __name__ == "__main__":
    main()
