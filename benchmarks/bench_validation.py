"""Cost of the input checks added for robustness (issue 17), as ratios measured in one run.

For each machine: the time of a checked call ``D(x, sigma)`` (shape, dtype, finiteness of x, sigma and
sigma^2 underflow) over the bare computation ``D.denoise(x, sigma_B)`` on the same inputs, and of a
float16 query (cast to float32, computed, cast back) over a float32 one. For ``sample()``: the time of
its per-call NaN check (one ``isfinite().all()`` of the denoiser's output) over one denoiser call.

Usage: python benchmarks/bench_validation.py [--N 2000] [--B 32] [--device auto] [--repeats 5]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from course_lib.config import get_device  # noqa: E402
from course_lib.denoisers import EquivariantLocalDenoiser, GaussianDenoiser, IdealDenoiser  # noqa: E402
from _timing import best_time  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--N", type=int, default=2000)
    ap.add_argument("--B", type=int, default=32)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)
    dev = get_device(args.device)
    g = torch.Generator().manual_seed(0)
    Y = torch.randn(args.N, 1, 28, 28, generator=g).clamp(-1, 1).to(dev)
    x = (Y[:args.B] + 0.5 * torch.randn(args.B, 1, 28, 28, generator=g).to(dev))
    sig = torch.full((args.B,), 0.5, device=dev)
    machines = {"ideal": IdealDenoiser(Y), "els P=5": EquivariantLocalDenoiser(Y[: max(args.N // 200, 1)], 5),
                "gaussian": GaussianDenoiser.from_data(Y.double(), cache=False)}
    print(f"device {dev}, N={args.N}, B={args.B}, 28x28; best of {args.repeats}")
    print(f"{'machine':<10} {'checked / bare':>15} {'float16 / float32':>18}")
    for name, D in machines.items():
        bare = best_time(lambda: D.denoise(x, sig), dev, args.repeats)
        checked = best_time(lambda: D(x, 0.5), dev, args.repeats)
        half = best_time(lambda: D(x.half(), 0.5), dev, args.repeats)
        print(f"{name:<10} {checked / bare:>15.3f} {half / checked:>18.3f}")
    out = machines["ideal"](x, 0.5)
    check = best_time(lambda: bool(torch.isfinite(out).all()), dev, args.repeats)
    call = best_time(lambda: machines["ideal"](x, 0.5), dev, args.repeats)
    print(f"sample()'s per-call NaN check / one ideal-denoiser call: {check / call:.4f}")


if __name__ == "__main__":
    main()
