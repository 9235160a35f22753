"""Paper-scale timings on a GPU: what a reader can expect before launching the long runs.

Measures, on the device given (default cuda): one training step of the paper-scale UNet and ResNet
(Kamb & Ganguli App. C.1 widths, 32 x 32 inputs, batch 128) in float32 and bfloat16 autocast, with the
projected time of the configs' 300 epochs; a full 20-step sampling run of the exact ideal denoiser and
of the boundary-broken ELS machine on a real training set; and the ideal denoiser against a bare
matmul of the same shape. Prints one line per measurement. Usage:

    python tools/gpu_check.py [--device cuda] [--steps 60] [--skip-train]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from course_lib.configs import CONFIGS  # noqa: E402
from course_lib.data import load_dataset  # noqa: E402
from course_lib.denoisers import EquivariantLocalDenoiser, IdealDenoiser  # noqa: E402
from course_lib.sampling import sample  # noqa: E402
from course_lib.schedules import karras_sigmas  # noqa: E402
from course_lib.train import build_network, edm_loss  # noqa: E402


def timed(fn, dev, repeats=1):
    fn()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(repeats):
        fn()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t) / repeats


def train_step_time(name, dev, steps, amp):
    cfg = CONFIGS[name]
    net = build_network(cfg).to(dev)
    opt = torch.optim.Adam(net.parameters(), lr=cfg["lr"])
    x0 = torch.rand(cfg["batch"], cfg["channels"], 32, 32, device=dev) * 2 - 1
    labels = torch.randint(0, 10, (cfg["batch"],), device=dev) if cfg.get("n_classes") else None
    g = torch.Generator().manual_seed(0)

    def step():
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
            loss = edm_loss(net, x0, g, class_labels=labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    t = timed(step, dev, steps)
    params = sum(p.numel() for p in net.parameters())
    print(f"train {name:28s} amp={str(amp):5s} {params / 1e6:5.2f}M params  {1e3 * t:7.1f} ms/step  "
          f"{cfg['steps']} steps (300 epochs) ~ {cfg['steps'] * t / 3600:5.1f} h", flush=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--skip-train", action="store_true", help="only the analytic machines")
    a = p.parse_args(argv)
    dev = torch.device(a.device)
    print(f"device={dev} torch={torch.__version__}"
          + (f" gpu={torch.cuda.get_device_name()}" if dev.type == "cuda" else ""), flush=True)
    for name in () if a.skip_train else ("mnist_unet_paper", "mnist_resnet_paper"):
        for amp in (False, True):
            train_step_time(name, dev, a.steps, amp)

    train, _ = load_dataset("fashion_mnist", split="train_first10k")
    train = train.to(dev)
    sig = karras_sigmas(20, 0.01, 80.0).to(dev)
    x_T = sig[0] * torch.randn(64, *train.shape[1:], generator=torch.Generator().manual_seed(0)).to(dev)
    for N in (5000, 10000):
        D = IdealDenoiser(train[:N])                                   # automatic chunks
        t = timed(lambda: sample(D, x_T, sig, solver="euler"), dev)
        print(f"ideal denoiser, N={N}, 64 samples x 20 Euler steps: {t:6.2f} s", flush=True)
        Y, x = train[:N].reshape(N, -1), x_T.reshape(64, -1)
        t_mm = timed(lambda: x @ Y.T, dev, 20)
        t_D = timed(lambda: D(x_T, 5.0), dev, 20)
        print(f"  one call at sigma=5: {1e3 * t_D:7.3f} ms = {t_D / t_mm:5.2f}x a bare (64 x d) @ (d x N) matmul",
              flush=True)
    schedule = lambda s: 3 if s < 0.4 else (7 if s < 1.5 else 13)  # noqa: E731  (a coarse-to-fine P)
    for N in (1000, 5000):
        D = EquivariantLocalDenoiser(train[:N], schedule, boundary="zeros")
        t = timed(lambda: sample(D, x_T[:16], sig, solver="euler"), dev)
        print(f"boundary-broken ELS, N={N}, 16 samples x 20 Euler steps: {t:6.2f} s", flush=True)


if __name__ == "__main__":
    main()
