"""Training configurations of the reference networks, at two of the course's scales.

``book`` configs are trained on a 2-core CPU and their EMA checkpoints are committed under
``data/checkpoints/`` (see ``python -m course_lib.train --config NAME``). ``paper`` configs reproduce
Kamb & Ganguli's settings (App. C.1: Adam lr 1e-4, batch 128, 300 epochs, lr x 0.999965 per step;
UNet widths 64/128/256; 8-layer ResNet at 256 channels) and are meant for a GPU.
"""
from __future__ import annotations

_BOOK = dict(seed=0, batch=64, lr=2e-3, warmup=200, ema_halflife_images=20_000, sigma_data=0.5)
_PAPER = dict(seed=0, batch=128, lr=1e-4, warmup=1, lr_decay=0.999965, ema_halflife_images=500_000,
              sigma_data=0.5)

CONFIGS: dict[str, dict] = {
    # MNIST 5k subset: the first 500 training images of each digit (28 x 28, unconditional)
    "mnist_unet_book": dict(_BOOK, dataset="mnist", split="train_5k", n=None, channels=1, arch="unet",
                            arch_kwargs=dict(channels=(32, 64, 64)), steps=4000),
    "mnist_resnet_book": dict(_BOOK, dataset="mnist", split="train_5k", n=None, channels=1, arch="resnet",
                              arch_kwargs=dict(channels=32, depth=8, padding="zeros"), steps=6000),
    # Fashion-MNIST: the first 5,000 training images in original order (28 x 28, unconditional)
    "fashion_mnist_resnet_book": dict(_BOOK, dataset="fashion_mnist", split="train", n=5000, channels=1,
                                      arch="resnet", arch_kwargs=dict(channels=32, depth=8, padding="zeros"),
                                      steps=6000),
    "fashion_mnist_unet_book": dict(_BOOK, dataset="fashion_mnist", split="train", n=5000, channels=1,
                                    arch="unet", arch_kwargs=dict(channels=(32, 64, 64)), steps=4000),
    # Chapter 3: the same UNet on two disjoint halves of MNIST train_5k (2,500 images each) with
    # different seeds. Random halves (a seeded permutation, then even / odd positions of it) ...
    "mnist_unet_half_a_book": dict(_BOOK, dataset="mnist", split="train_5k", n=None, permute_seed=0, start=0,
                                   stride=2, channels=1, arch="unet", arch_kwargs=dict(channels=(32, 64, 64)),
                                   steps=4000),
    "mnist_unet_half_b_book": dict(_BOOK, seed=1, dataset="mnist", split="train_5k", n=None, permute_seed=0,
                                   start=1, stride=2, channels=1, arch="unet",
                                   arch_kwargs=dict(channels=(32, 64, 64)), steps=4000),
    # ... and the even / odd positions of MNIST's original order, which are NOT exchangeable: their
    # means differ about 10x more than random halves' (3.65 vs 0.38; the "when moments differ" section)
    "mnist_unet_even_book": dict(_BOOK, dataset="mnist", split="train_5k", n=None, start=0, stride=2,
                                 channels=1, arch="unet", arch_kwargs=dict(channels=(32, 64, 64)), steps=4000),
    "mnist_unet_odd_book": dict(_BOOK, seed=1, dataset="mnist", split="train_5k", n=None, start=1, stride=2,
                                channels=1, arch="unet", arch_kwargs=dict(channels=(32, 64, 64)), steps=4000),
    # Chapter 4: the reference UNet on MNIST train_5k with a fixed pixel permutation (seed 0) of every
    # image (course_lib.permute): does its sensitivity field follow the moved statistics?
    # 10,000 steps; from step 6,000 on with gradient clipping at norm 1 (a loss spike at step 6,595
    # without it; data/checkpoints/README.md)
    "mnist_perm_unet_book": dict(_BOOK, dataset="mnist", split="train_5k", n=None, pixel_permute_seed=0,
                                 channels=1, arch="unet", arch_kwargs=dict(channels=(32, 64, 64)), steps=10000,
                                 grad_clip=1.0),
    # paper scale (GPU): full training sets at 32 x 32 (MNIST / Fashion-MNIST padded with 2 background
    # pixels per side); 300 epochs of 60k / 50k images at batch 128; Fashion-MNIST and CIFAR-10
    # class-conditional, MNIST unconditional, as in Kamb & Ganguli App. C.1
    "mnist_unet_paper": dict(_PAPER, dataset="mnist", split="train", n=None, options=dict(pad=2), channels=1,
                             arch="unet", arch_kwargs=dict(channels=(64, 128, 256)), steps=300 * 60_000 // 128),
    "mnist_resnet_paper": dict(_PAPER, dataset="mnist", split="train", n=None, options=dict(pad=2), channels=1,
                               arch="resnet", arch_kwargs=dict(channels=256, depth=8, padding="zeros"),
                               steps=300 * 60_000 // 128),
    "fashion_mnist_resnet_paper": dict(_PAPER, dataset="fashion_mnist", split="train", n=None,
                                       options=dict(pad=2), channels=1, arch="resnet", n_classes=10,
                                       arch_kwargs=dict(channels=256, depth=8, padding="zeros"),
                                       steps=300 * 60_000 // 128),
    "fashion_mnist_unet_paper": dict(_PAPER, dataset="fashion_mnist", split="train", n=None, options=dict(pad=2),
                                     channels=1, arch="unet", n_classes=10, arch_kwargs=dict(channels=(64, 128, 256)),
                                     steps=300 * 60_000 // 128),
    "cifar10_resnet_paper": dict(_PAPER, dataset="cifar10", split="train", n=None, channels=3, arch="resnet",
                                 n_classes=10, arch_kwargs=dict(channels=256, depth=8, padding="zeros"),
                                 steps=300 * 50_000 // 128),
    "cifar10_unet_paper": dict(_PAPER, dataset="cifar10", split="train", n=None, channels=3, arch="unet",
                               n_classes=10, arch_kwargs=dict(channels=(64, 128, 256)),
                               steps=300 * 50_000 // 128),
    "mnist_perm_unet_paper": dict(_PAPER, dataset="mnist", split="train", n=None, options=dict(pad=2),
                                  pixel_permute_seed=0, channels=1, arch="unet",
                                  arch_kwargs=dict(channels=(64, 128, 256)), steps=300 * 60_000 // 128),
}

# Chapter 7, memorization -> generalization (Kadkhodaie, Guth, Simoncelli & Mallat, ICLR 2024): one
# small UNet trained on two DISJOINT random subsets of MNIST train_5k of each size N (a fixed permutation,
# seed 0, then every (5000 / N)-th position from start 0 or 1), with training seeds 0 and 1. Sized for a
# shared 2-core CPU (widths 16/32/32, 1,000 steps; an EMA half-life of 2,000 images, since the book default
# of 20,000 would still weight the first steps' weights heavily at step 1,000); the ``_paper`` variants
# are the GPU version of the same sweep.
NSWEEP_N = (10, 100, 1000)
NSWEEP_N_PAPER = (1, 10, 100, 1000, 2500)
for _N in NSWEEP_N_PAPER:
    for _s, _side in enumerate("ab"):
        _sub = dict(dataset="mnist", split="train_5k", n=None, permute_seed=0, start=_s, stride=5000 // _N,
                    channels=1, arch="unet")
        if _N in NSWEEP_N:
            CONFIGS[f"mnist_nsweep_n{_N}_{_side}_book"] = dict(_BOOK, seed=_s, batch=32, ema_halflife_images=2000, **_sub,
                                                                  arch_kwargs=dict(channels=(16, 32, 32)), steps=1000)
        CONFIGS[f"mnist_nsweep_n{_N}_{_side}_paper"] = dict(_PAPER, seed=_s, **_sub, options=dict(pad=2),
                                                               arch_kwargs=dict(channels=(64, 128, 256)), steps=100_000)
del _N, _s, _side, _sub
