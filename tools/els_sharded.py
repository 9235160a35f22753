"""Sample with the ELS machine from a training set sharded over K processes (one per GPU).

    torchrun --nproc-per-node K tools/els_sharded.py --dataset cifar10 --samples 16 --steps 20

Every rank loads the data set, keeps its contiguous 1/K share (:func:`course_lib.distributed.shard`),
and builds the boundary-broken ELS machine on it with ``process_group``: each denoiser call merges
the ranks' softmax states exactly (:func:`course_lib.distributed.all_reduce_softmax`), so every rank
follows the same trajectory as one process holding the whole training set. Rank 0 prints the time
per step and saves the samples. NCCL on GPUs, gloo on CPUs (``--nproc-per-node 2`` works on a laptop
with ``--dataset digits``).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from course_lib import distributed  # noqa: E402
from course_lib.data import load_dataset  # noqa: E402
from course_lib.denoisers import EquivariantLocalDenoiser  # noqa: E402
from course_lib.sampling import sample  # noqa: E402
from course_lib.schedules import karras_sigmas  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="cifar10")
    ap.add_argument("--n-train", type=int, default=None, help="training images (default: the whole set)")
    ap.add_argument("--patch", type=int, default=5)
    ap.add_argument("--boundary", default="zeros")
    ap.add_argument("--samples", type=int, default=16)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--out", default=None, help="save the samples here (rank 0, torch.save)")
    a = ap.parse_args(argv)
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group("nccl" if cuda else "gloo")
    try:
        rank, world = dist.get_rank(), dist.get_world_size()
        dev = torch.device("cuda") if cuda else torch.device("cpu")
        train = load_dataset(a.dataset, n=a.n_train)[0]
        mine = distributed.shard(train).to(dev, torch.float32)
        els = EquivariantLocalDenoiser(mine, a.patch, boundary=a.boundary, backend=a.backend,
                                       process_group=dist.group.WORLD)
        sigmas = karras_sigmas(a.steps, 0.01, 80.0)
        g = torch.Generator().manual_seed(0)  # the same noise on every rank
        x_T = sigmas[0].item() * torch.randn(a.samples, *train.shape[1:], generator=g).to(dev)
        dist.barrier()
        t = time.perf_counter()
        x = sample(els, x_T, sigmas, solver="euler")
        if cuda:
            torch.cuda.synchronize()
        dt = time.perf_counter() - t
        if rank == 0:
            print(f"{world} ranks, {a.dataset} N={train.shape[0]} ({mine.shape[0]} per rank), "
                  f"P={a.patch} {a.boundary}, {a.samples} samples x {a.steps} steps: {dt:.1f} s, "
                  f"{dt / a.steps:.2f} s per step")
            if a.out:
                torch.save(x.cpu(), a.out)
        return x
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
