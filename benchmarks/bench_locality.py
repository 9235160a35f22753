"""Benchmark of the data-local denoiser (Chapter 4) against the dense formulation of the authors' code.

Both compute, for every output pixel q, the softmax over N training images of the masked distance
sum_{n in S_q} (x_n - y_n)^2 / (2 sigma^2), exactly (online log-sum-exp). The dense formulation
(:func:`course_lib.denoisers.datalocal.dense_masked_denoise`) forms the (B, K, d) squared differences
of a chunk and multiplies them by the (d, d) mask: d^2 multiply-adds per image and query.
:class:`DataLocalDenoiser` shares the distances of equal supports and uses a sparse cross term when
the masks are small. Masks: the Wiener masks of the training set (tau = 0.005, Chapter 4) at each
sigma. Printed per sigma: the mask density (distinct supports' share of the dense work), both times
and their ratio, the softmax floor (the online softmax average over the B x d' x N logits alone, d'
the pixels with a non-empty mask: any exact method in torch ops pays it) and the ceiling it puts on
the ratio (dense / floor), the largest output difference; then the peak traced memory (Python allocations by
torch on the CPU are not traced: we report ``torch.cuda.max_memory_allocated`` on a GPU and the
chunk budget on a CPU) at N and 4N, to show that memory does not grow with N.

Usage: python benchmarks/bench_locality.py [--n 5000] [--batch 16] [--sigmas 0.05 0.3 1 3 10]
       [--data mnist|synthetic] [--device cpu]
"""
from __future__ import annotations

import argparse

import torch

from course_lib.denoisers.datalocal import DataLocalDenoiser, dense_masked_denoise, mask_plan
from course_lib.locality import WienerMasks
from _timing import best_time  # noqa: E402


def training_images(kind: str, n: int) -> torch.Tensor:
    if kind == "mnist":
        from course_lib.data import load_dataset
        return load_dataset("mnist", split="train_5k" if n <= 5000 else "train", n=n)[0]
    g = torch.Generator().manual_seed(0)   # smooth random images with MNIST's size
    z = torch.randn(n, 1, 28, 28, generator=g)
    k = torch.ones(1, 1, 5, 5) / 25
    return torch.tanh(3 * torch.nn.functional.conv2d(z, k, padding=2))


def softmax_floor(Y: torch.Tensor, B: int, n_pixels: int, chunk: int) -> float:
    """Time of the part every exact method must do in torch ops: for B queries and n_pixels output
    pixels, write the B x n_pixels x N logits once (a fill of a reused buffer, no distances at all)
    and take their online softmax average (in place, weighted sums as one batched product)."""
    from course_lib.softmax import OnlineSoftmax
    V = Y.reshape(len(Y), -1)[:, :n_pixels].T.contiguous()            # (d', N)
    buf = torch.empty(n_pixels, B, chunk, device=Y.device)

    def run():
        osm = OnlineSoftmax()
        for start in range(0, V.shape[1], chunk):
            v = V[:, start:start + chunk].unsqueeze(-1)                   # (d', K, 1)
            logits = buf[..., :v.shape[1]].fill_(-1.0)
            osm.update(logits, weighted_sum=lambda w, v=v: torch.bmm(w, v), inplace=True)
        return osm.mean()
    return best_time(run, None, 3, warmup=False)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--sigmas", type=float, nargs="*", default=[0.05, 0.3, 1.0, 3.0, 10.0])
    ap.add_argument("--data", default="mnist", choices=["mnist", "synthetic"])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    Y = training_images(args.data, args.n).to(dev)
    wm = WienerMasks(Y, 0.005)
    x = Y[:args.batch] + 0.5 * torch.randn(Y[:args.batch].shape, generator=torch.Generator().manual_seed(1)).to(dev)
    D = DataLocalDenoiser(Y, wm)
    print(f"N = {len(Y)}, B = {args.batch}, d = {Y[0].numel()}, device = {dev}, torch threads = {torch.get_num_threads()}")
    print(f"{'sigma':>7} {'density':>8} {'dense (s)':>10} {'data-local (s)':>15} {'ratio':>7} {'floor (s)':>10} "
          f"{'ceiling':>8} {'max |diff|':>11}")
    tot_dense = tot_ours = 0.0
    for s in args.sigmas:
        D.plan(s)
        m = wm(s).to(dev)
        out = {}
        t_ours = best_time(lambda: out.__setitem__("ours", D(x, s)), None, args.repeat, warmup=False)
        t_dense = best_time(lambda: out.__setitem__("dense", dense_masked_denoise(Y, x, s, m, chunk_size=512)), None, args.repeat,
                            warmup=False)
        tot_dense, tot_ours = tot_dense + t_dense, tot_ours + t_ours
        diff = (out["ours"] - out["dense"]).abs().max().item()
        pl = mask_plan(wm(s))
        t_floor = softmax_floor(Y, args.batch, pl["pixels"].numel(), 128)
        print(f"{s:>7g} {pl['density']:>8.3f} {t_dense:>10.3f} {t_ours:>15.3f} {t_dense / t_ours:>7.1f} "
              f"{t_floor:>10.3f} {t_dense / t_floor:>8.1f} {diff:>11.2g}")
    print(f"all sigmas: dense {tot_dense:.2f} s, data-local {tot_ours:.2f} s, ratio {tot_dense / tot_ours:.1f}x")
    if dev.type == "cuda":
        for n in (len(Y), 4 * len(Y)):
            Yn = Y.repeat(n // len(Y), 1, 1, 1)
            torch.cuda.reset_peak_memory_stats()
            DataLocalDenoiser(Yn, wm)(x, 1.0)
            print(f"peak GPU memory at N = {n}: {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB")
    else:   # CPU: growth of the peak resident memory from a call at N to a call at 4N, minus the 4N copy itself
        import resource

        def peak_mib():
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

        DataLocalDenoiser(Y, wm)(x, 1.0)
        base = peak_mib()
        Y4 = Y.repeat(4, 1, 1, 1)
        data = Y4.numel() * Y4.element_size() * 2 / 2**20      # the 4N images and the denoiser's copy
        DataLocalDenoiser(Y4, wm)(x, 1.0)
        print(f"peak RSS after the call at N = {len(Y)}: {base:.0f} MiB; after the call at 4N = {len(Y4)}: "
              f"{peak_mib():.0f} MiB, of which {data:.0f} MiB are the 4N images themselves")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
