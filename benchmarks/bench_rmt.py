"""Chapter 3 performance: the vectorised Silverstein solver and the batched Monte Carlo eigensolver.

Prints ratios against naive implementations run in the same process:
- ``rmt.silverstein_kappa`` on L ridges vs a Python loop of scipy ``brentq`` calls (one per ridge);
- ``rmt_mc.batched_eigh`` (one thread, batched) vs ``torch.linalg.eigh`` with the default thread pool
  and vs a Python loop over data sets.
Usage: python benchmarks/bench_rmt.py
"""

import numpy as np
import torch
from scipy import optimize

from course_lib import rmt, rmt_mc
from _timing import best_time  # noqa: E402


def main():
    s = rmt_mc.power_law_spectrum(784, 1.0)
    lam = torch.logspace(-6, 3, 2000, dtype=torch.float64)
    n = 300
    sn, ln = s.numpy(), lam.numpy()

    def loop():
        return [optimize.brentq(lambda k: k * (1 - (sn / (sn + k)).sum() / n) - l, l, l + sn.sum() / n + 1,
                                xtol=1e-300, rtol=4 * np.finfo(float).eps) for l in ln]

    t_vec, t_loop = best_time(lambda: rmt.silverstein_kappa(lam, s, n), warmup=False), best_time(loop, repeats=1, warmup=False)
    err = np.max(np.abs(rmt.silverstein_kappa(lam, s, n).numpy() - np.array(loop())) / np.array(loop()))
    print(f"silverstein_kappa, d=784, 2000 ridges: vectorised {t_vec * 1e3:.1f} ms, brentq loop {t_loop * 1e3:.1f} ms, "
          f"speed-up x{t_loop / t_vec:.1f} (max rel. difference {err:.1e})")

    g = torch.Generator().manual_seed(0)
    z = torch.randn(250, 50, 60, generator=g, dtype=torch.float64)
    S = z.transpose(1, 2) @ z / 50
    t_b = best_time(lambda: rmt_mc.batched_eigh(S), warmup=False)
    t_d = best_time(lambda: torch.linalg.eigh(S), warmup=False)
    t_l = best_time(lambda: [torch.linalg.eigh(m) for m in S], warmup=False)
    print(f"eigh of 250 matrices 60x60: batched 1-thread {t_b * 1e3:.1f} ms, default threads ({torch.get_num_threads()}) "
          f"{t_d * 1e3:.1f} ms (x{t_d / t_b:.1f}), Python loop {t_l * 1e3:.1f} ms (x{t_l / t_b:.1f})")


if __name__ == "__main__":
    main()
