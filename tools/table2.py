"""Kamb & Ganguli's Table 2 for the committed networks at full scale (meant for a GPU).

For each network: the calibrated ELS and LS machines (data/calibration/<net>.json) and the ideal score
machine on the network's whole training set, sampled with the network from the same seeds (20 Euler
steps of the EDM grid, as in Chapter 5), compared by per-seed pixelwise r^2 with the network as target.
Prints the table beside the paper's rows and writes it to --out (Markdown). Usage:

    python tools/table2.py [--nets mnist_resnet_book ...] [--n-train all] [--seeds 100] [--device cuda]
                           [--machines ELS LS IS] [--threads 1]

The LS and IS machines alone are cheap enough for a CPU on all 5000 images (``--machines LS IS
--device cpu``, Chapter 5's rows "LS and IS on all 5000").
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from course_lib.creativity import (load_calibration, network_training_images, table_vs_paper,  # noqa: E402
                                   theory_machines, theory_vs_network)
from course_lib.nets import load_pretrained  # noqa: E402
from course_lib.schedules import karras_sigmas  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nets", nargs="+", default=["mnist_resnet_book", "mnist_unet_book",
                                                   "fashion_mnist_resnet_book", "fashion_mnist_unet_book"])
    p.add_argument("--n-train", default="all", help="'all' (the network's whole training set) or a number")
    p.add_argument("--seeds", type=int, default=100)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--device", default="cuda")
    p.add_argument("--out", default=None, help="write the Markdown table here")
    p.add_argument("--machines", nargs="+", default=["ELS", "LS", "IS"], choices=["ELS", "LS", "IS"])
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU runs)")
    a = p.parse_args(argv)
    if a.threads:
        import torch
        torch.set_num_threads(a.threads)
    n_train = None if a.n_train == "all" else int(a.n_train)
    sigmas = karras_sigmas(a.steps, 0.01, 80.0)
    comparisons = {}
    for name in a.nets:
        t0 = time.perf_counter()
        net = load_pretrained(name, device=a.device)
        train = network_training_images(net, n_train).to(a.device)
        machines = theory_machines(train, load_calibration(name), include=a.machines)
        comparisons[name] = theory_vs_network(net, machines, range(a.seeds), sigmas, tuple(train.shape[1:]),
                                              reference_name=name, device=a.device, cache=False)
        print(f"{name}: N = {len(train)} training images, {a.seeds} seeds, {time.perf_counter() - t0:.1f} s",
              flush=True)
        print(comparisons[name], flush=True)
    table = table_vs_paper(comparisons)
    print(table)
    if a.out:
        Path(a.out).write_text(table + "\n")


if __name__ == "__main__":
    main()
