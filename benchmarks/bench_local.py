"""Benchmark of the ELS machines (Chapter 5): attention backend vs streaming path vs the authors' code.

For ELS (circular) and boundary-broken ELS (zeros) at P = 3, 7, 11, one denoiser call on B queries
against N training images (28 x 28, C = 1, sigma = 1), printed in the same run:

- ``attention``: the machine with its default backend (fused attention kernels, chunks merged
  through the log-sum-exp; :mod:`course_lib.denoisers.attention`);
- ``stream``: the same machine with ``backend="stream"`` (matmul logits + OnlineSoftmax, the reference);
- ``floor``: the bare fused-attention calls of the same shapes on random tensors, all keys in one
  call per pixel-group tensor (no patch extraction, no merging): what the machine cannot beat;
- ``K&G``: Kamb & Ganguli's public code, measured once on this machine class (140.7 s at P = 3 and
  98.6 s at P = 7 for N = 1000, B = 16, 28 x 28, sigma = 1, when a 2048^3 float32 matmul ran at
  217.4 GFLOP/s), rescaled to this run by a bare 2048^3 matmul measured here and by the number of
  (query pixel, training patch) pairs B N (H W)^2 (their code is a loop of dense products).

Targets (issue 15, 2-core CPU): ELS >= 20x K&G at P = 3 and >= 7x at P = 7, and <= 1.5x the floor.
The max |attention - stream| is printed too (float32 rounding).

Usage: python benchmarks/bench_local.py [--n 1000] [--batch 16] [--patches 3 7 11] [--threads 1]
       python benchmarks/bench_local.py --quick      # N = 60, B = 4: a smoke run of a few seconds
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from course_lib.denoisers import EquivariantLocalDenoiser  # noqa: E402
from course_lib.denoisers.attention import attention_lse, head_dim  # noqa: E402
from _timing import best_time  # noqa: E402

KG_SECONDS = {3: 140.7, 7: 98.6}   # Kamb & Ganguli's code, N = 1000, B = 16, 28 x 28, sigma = 1
KG_GFLOPS, KG_PAIRS = 217.4, 16 * 1000 * 784**2
TARGET_KG = {3: 20.0, 7: 7.0}
TARGET_FLOOR = 1.5


def matmul_gflops(dev) -> float:
    a = torch.randn(2048, 2048, device=dev)
    torch.matmul(a, a)
    return 2 * 2048**3 / best_time(lambda: torch.matmul(a, a), dev, 3, warmup=False) / 1e9


def floor_call(machine, B, N, P, dev):
    """The bare kernel calls of the machine's shapes: per group tensor (G, m), B m queries vs N m keys."""
    E = head_dim(machine.train.C * P * P)
    g = torch.Generator(device=dev).manual_seed(0)
    args = []
    for idx in machine.groups(P, dev):
        G, m = idx.shape
        args.append([torch.randn(1, G, n, E, device=dev, generator=g) for n in (B * m, N * m, N * m)])
    return lambda: [attention_lse(*a) for a in args]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000, help="training images")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--patches", type=int, nargs="+", default=[3, 7, 11])
    ap.add_argument("--boundaries", nargs="+", default=["circular", "zeros"])
    ap.add_argument("--repeat", type=int, default=1, help="best of this many calls (after a warm-up when > 1)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--no-stream", action="store_true", help="skip the (slow) streaming path")
    ap.add_argument("--quick", action="store_true", help="N = 60, B = 4, best of 2")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a = ap.parse_args()
    if a.quick:
        a.n, a.batch, a.repeat = 60, 4, 2
    if a.threads:
        torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    g = torch.Generator().manual_seed(0)
    Y = (torch.rand(a.n, 1, 28, 28, generator=g) * 2 - 1).to(dev)
    x = (Y[:a.batch] + torch.randn(a.batch, 1, 28, 28, generator=g).to(dev))
    gf = matmul_gflops(dev)
    pairs = a.batch * a.n * 784**2
    print(f"device={dev} torch={torch.__version__} threads={torch.get_num_threads()} N={a.n} B={a.batch} "
          f"28x28 sigma=1; bare 2048^3 matmul {gf:.1f} GFLOP/s (K&G measured at {KG_GFLOPS})")
    print(f"{'machine':<16}{'P':>3}{'attention s':>13}{'stream s':>10}{'floor s':>9}{'K&G s':>9}"
          f"{'x stream':>10}{'x K&G':>8}{'/ floor':>9}{'max|diff|':>11}  targets")
    for boundary in a.boundaries:
        for P in a.patches:
            m = EquivariantLocalDenoiser(Y, P, boundary=boundary)
            ms = EquivariantLocalDenoiser(Y, P, boundary=boundary, backend="stream")
            if a.repeat > 1:
                m(x, 1.0)
            out = {}
            t_att = best_time(lambda: out.__setitem__("att", m(x, 1.0)), dev, a.repeat, warmup=False)
            floor = floor_call(m, a.batch, a.n, P, dev)
            t_floor = best_time(floor, dev, a.repeat, warmup=False)
            t_st, diff = float("nan"), float("nan")
            if not a.no_stream:
                t_st = best_time(lambda: out.__setitem__("st", ms(x, 1.0)), dev, 1, warmup=False)
                diff = (out["att"] - out["st"]).abs().max().item()
            kg = KG_SECONDS.get(P) if boundary == "circular" else None
            t_kg = kg * (KG_GFLOPS / gf) * (pairs / KG_PAIRS) if kg else float("nan")
            notes = []
            if kg:
                notes.append(f"K&G >= {TARGET_KG[P]:.0f}x: {'met' if t_kg / t_att >= TARGET_KG[P] else 'NOT met'}")
            notes.append(f"floor <= {TARGET_FLOOR}x: {'met' if t_att / t_floor <= TARGET_FLOOR else 'NOT met'}")
            print(f"{'ELS ' + boundary:<16}{P:>3}{t_att:>13.3f}{t_st:>10.3f}{t_floor:>9.3f}{t_kg:>9.2f}"
                  f"{t_st / t_att:>10.2f}{t_kg / t_att:>8.1f}{t_att / t_floor:>9.2f}{diff:>11.1e}  "
                  + "; ".join(notes), flush=True)


if __name__ == "__main__":
    main()
