"""The committed reference networks (``data/checkpoints/*.pt``) as course denoisers.

    >>> from course_lib.nets import list_pretrained, load_pretrained
    >>> D = load_pretrained("mnist_unet_book")        # D(x, sigma) -> x0_hat
    >>> D.train_subset["dataset"], len(D.train_subset["indices"])

Each checkpoint holds the EMA weights, the training config, the training subset (dataset, split and
original indices of the images), the loss curve and the command that reproduces it. It is read with
``torch.load(weights_only=True)``: tensors and plain data (dicts, lists, strings, numbers) only, so a
checkpoint file cannot run code; the metadata is also kept readable in ``NAME.json``.
"""
from __future__ import annotations

from pathlib import Path

import torch

from ..validate import corrupt_file_error
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
    fix = (f"delete it and restore it with `git checkout -- {path.name}` in {CKPT_DIR}, or retrain it with "
           f"`python -m course_lib.train --config {name}`")
    try:  # weights_only: tensors and plain data only, never arbitrary objects (a checkpoint cannot run code)
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise corrupt_file_error(path, e, fix) from None
    missing = [k for k in ("ema", "meta") if not isinstance(ckpt, dict) or k not in ckpt]
    if missing:
        raise corrupt_file_error(path, KeyError(f"no {' or '.join(map(repr, missing))} entry"), fix)
    meta = ckpt["meta"]
    try:
        net = build_network(meta["config"])
        net.load_state_dict(ckpt["ema"])
    except (KeyError, TypeError, RuntimeError) as e:
        raise corrupt_file_error(path, e, "its weights do not fit its config; " + fix) from None
    net.to(device=device, dtype=dtype).requires_grad_(False)
    D = NetworkDenoiser(net, name=name, config=meta["config"], train_subset=meta["train_subset"],
                        class_labels=class_labels)
    D.losses = meta["losses"]
    D.command = meta["command"]
    return D
