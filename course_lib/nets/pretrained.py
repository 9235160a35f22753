"""The committed reference networks (``data/checkpoints/*.pt``) as course denoisers.

    >>> from course_lib.nets import list_pretrained, load_pretrained
    >>> D = load_pretrained("mnist_unet_book")        # D(x, sigma) -> x0_hat
    >>> D.train_subset["dataset"], len(D.train_subset["indices"])

Each checkpoint holds the EMA weights, the training config, the training subset (dataset, split and
original indices of the images), the loss curve and the command that reproduces it.
"""
from __future__ import annotations

from pathlib import Path

import torch

from .precond import NetworkDenoiser

CKPT_DIR = Path(__file__).resolve().parents[2] / "data" / "checkpoints"


def list_pretrained() -> list[str]:
    """Names of the committed checkpoints."""
    return sorted(p.stem for p in CKPT_DIR.glob("*.pt"))


def load_pretrained(name: str, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                    class_labels: torch.Tensor | None = None) -> NetworkDenoiser:
    """Load checkpoint ``name`` as a :class:`NetworkDenoiser` on ``device``."""
    from ..train import build_network

    path = CKPT_DIR / f"{name}.pt"
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint {name!r} in {CKPT_DIR}; available: {list_pretrained()}. "
                                f"Train one with `python -m course_lib.train --config {name}`.")
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    meta = ckpt["meta"]
    net = build_network(meta["config"])
    net.load_state_dict(ckpt["ema"])
    net.to(device=device, dtype=dtype).requires_grad_(False)
    D = NetworkDenoiser(net, name=name, config=meta["config"], train_subset=meta["train_subset"],
                        class_labels=class_labels)
    D.losses = meta["losses"]
    D.command = meta["command"]
    return D
