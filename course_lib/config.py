"""Scales, devices and seeding, in one place (Chapter 0, "How to run this course").

Every chapter's ``parameters`` cell sets ``SCALE`` to one of

- ``"ci"``    seconds per chapter on 2 CPU cores (what `make test` executes),
- ``"book"``  minutes on a laptop CPU (what `make book` executes and the online book shows),
- ``"paper"`` the seeds' dataset sizes, meant for a GPU.

A chapter asks for its sizes with :func:`scaled`, so the three sizes of every experiment are
written next to each other.
"""
from __future__ import annotations

import os
import random
from contextlib import contextmanager

import numpy as np
import torch

from .validate import int_like

SCALES = ("ci", "book", "paper")


def check_scale(scale: str) -> str:
    if scale not in SCALES:
        raise ValueError(f"SCALE must be one of {SCALES}, got {scale!r}")
    return scale


def scaled(scale: str, ci, book, paper):
    """Pick the value for ``scale``: ``scaled(SCALE, ci=500, book=5000, paper=60000)``."""
    return {"ci": ci, "book": book, "paper": paper}[check_scale(scale)]


def get_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` picks CUDA, then Apple MPS, then CPU; anything else is passed to ``torch.device``."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(device)


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a CPU ``torch.Generator`` seeded with ``seed``."""
    seed = int_like(seed)
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def setup(scale: str = "book", seed: int = 0, device: str = "auto", quiet: bool = False):
    """Chapter preamble: validate the scale, seed everything, choose the device.

    Returns ``(device, generator)``. Also caps torch's CPU threads at the number of cores given by
    ``OMP_NUM_THREADS`` when set, so that CI timings are reproducible.
    """
    check_scale(scale)
    gen = seed_everything(seed)
    dev = get_device(device)
    if os.environ.get("OMP_NUM_THREADS"):
        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    if not quiet:
        print(f"SCALE={scale!r}  SEED={seed}  device={dev}  torch={torch.__version__}")
    return dev, gen


@contextmanager
def temporary_env(env: dict[str, str]):
    """Set environment variables for the duration of a ``with`` block (kernels started inside, e.g. by
    papermill, inherit them), then restore the previous values."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
