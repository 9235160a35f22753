"""EDM training of the reference networks (Karras et al. 2022, Sec. 5; the reference-networks chapter notes).

    python -m course_lib.train --config mnist_unet_book [--steps N] [--device cuda] [--out PATH]

Loss: E_{x0, ln sigma ~ N(P_mean, P_std^2), n} lambda(sigma) |D(x0 + sigma n, sigma) - x0|^2 with
lambda = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2; Adam with linear warm-up; EMA of the
weights (the EMA weights are what gets evaluated). Seeds are explicit, so a run is reproducible on the
same device; checkpoints store the config, the training subset (dataset, split, indices), a content
hash of the training images and the loss curve, and training resumes from the last checkpoint.

Divergence guard: a step whose loss is not finite, or exceeds ``diverge_factor`` (default 50) times
the median of the previous 200 step losses, stops training with :class:`TrainingDiverged` *before*
the optimizer step, so the last saved checkpoint is still a good one (Adam at a constant learning
rate without clipping can blow up late in training; one of Chapter 3's runs did at step ~3870).
Optional ``grad_clip`` in a config clips the global gradient norm (off in the book configs).
"""
from __future__ import annotations

import argparse
import copy
import hashlib
import json
import sys
import time
from pathlib import Path

import torch

from .configs import CONFIGS

REPO = Path(__file__).resolve().parents[1]
CKPT_DIR = REPO / "data" / "checkpoints"
STATE_DIR = REPO / "data" / "cache" / "train_state"


class TrainingDiverged(RuntimeError):
    """Raised when the training loss explodes or stops being finite (see the module docstring)."""


def check_divergence(loss: float, history: list[float], step: int, factor: float = 50.0,
                     window: int = 200) -> None:
    """Raise :class:`TrainingDiverged` if ``loss`` is not finite or exceeds ``factor`` times the
    median of the last ``window`` losses in ``history`` (checked once ``window`` losses exist)."""
    if not torch.isfinite(torch.tensor(loss)):
        raise TrainingDiverged(f"loss is {loss} at step {step}")
    if len(history) >= window:
        med = float(torch.tensor(history[-window:]).median())
        if loss > factor * med:
            raise TrainingDiverged(f"loss {loss:.4g} at step {step} is more than {factor:g} x the median "
                                   f"{med:.4g} of the previous {window} steps")


def build_network(cfg: dict):
    """The EDMPrecond-wrapped network described by a config."""
    from .nets.precond import EDMPrecond
    from .nets.resnet import LocalResNet
    from .nets.unet import UNet

    arch = {"unet": UNet, "resnet": LocalResNet}[cfg["arch"]]
    return EDMPrecond(arch(in_channels=cfg["channels"], n_classes=cfg.get("n_classes", 0),
                           **cfg["arch_kwargs"]), sigma_data=cfg.get("sigma_data", 0.5))


def subset_positions(n_total: int, start: int = 0, stride: int = 1, permute_seed: int | None = None) -> torch.Tensor:
    """Positions (in the loaded split) of a training subset: optionally permuted by
    ``torch.randperm(n_total, generator=manual_seed(permute_seed))``, then every ``stride``-th from
    ``start``. ``start=0/1, stride=2`` give two disjoint halves (random halves with a permute_seed)."""
    start, stride = int(start), int(stride)
    if start < 0 or stride < 1 or start >= n_total:
        raise ValueError(f"need 0 <= start < {n_total} and stride >= 1, got start={start}, stride={stride}")
    pos = torch.arange(n_total)
    if permute_seed is not None:
        pos = torch.randperm(n_total, generator=torch.Generator().manual_seed(int(permute_seed)))
    return pos[start::stride]


def load_training_images(cfg: dict, data_dir=None):
    """(images, labels, indices) of the config's training subset: the first ``n`` images of the split
    (all if ``n`` is None), then :func:`subset_positions` with the config's ``start``, ``stride`` and
    ``permute_seed`` (defaults 0, 1, None: the prefix itself). A checkpoint's ``train_subset`` record
    has the same keys, so it can be passed as ``cfg`` too."""
    from .data import load_dataset

    images, labels, info = load_dataset(cfg["dataset"], split=cfg["split"], n=cfg.get("n"), data_dir=data_dir,
                                        return_info=True, **cfg.get("options", {}))
    indices = info.indices if info.indices is not None else torch.arange(len(images))
    sub = {k: cfg[k] for k in ("start", "stride", "permute_seed") if k in cfg}
    if sub:
        pos = subset_positions(len(images), **sub)
        images, labels, indices = images[pos], labels[pos], indices[pos]
    if cfg.get("pixel_permute_seed") is not None:  # Chapter 4: a fixed pixel permutation of every image
        from .permute import permute_pixels, pixel_permutation
        images = permute_pixels(images, pixel_permutation(*images.shape[-2:], seed=cfg["pixel_permute_seed"]))
    return images, labels, indices


def content_hash(images: torch.Tensor) -> str:
    return hashlib.sha256(images.contiguous().cpu().numpy().tobytes()).hexdigest()[:16]


def edm_loss(net, x0, generator, P_mean=-1.2, P_std=1.2, class_labels=None):
    """Per-batch EDM loss (mean over pixels and batch)."""
    B = x0.shape[0]
    dev = x0.device
    rnd = torch.randn(B, generator=generator, device="cpu").to(dev)
    sigma = (rnd * P_std + P_mean).exp()
    n = torch.randn(x0.shape, generator=generator, device="cpu").to(dev) * sigma[:, None, None, None]
    sd = net.sigma_data
    weight = (sigma**2 + sd**2) / (sigma * sd) ** 2
    D = net(x0 + n, sigma, class_labels)
    return (weight[:, None, None, None] * (D - x0) ** 2).mean()


def train(name: str, steps: int | None = None, device: str = "cpu", out: Path | None = None,
          log_every: int = 50, save_every: int = 250, progress: bool = True, amp: bool = False,
          config: dict | None = None, state_dir: Path | None = None) -> Path:
    """Train (or resume) config ``name``; return the path of the committed-format checkpoint.

    ``config`` overrides the registered config of that name (tests use tiny ones); resumable state
    goes to ``state_dir`` (default ``data/cache/train_state``). ``amp=True`` runs the forward pass
    under bfloat16 autocast (mixed precision: faster on a GPU; parameters, optimizer and EMA stay
    float32).
    """
    from tqdm.auto import tqdm

    if config is None and name not in CONFIGS:
        raise KeyError(f"unknown config {name!r}; known: {sorted(CONFIGS)}")
    cfg = dict(config if config is not None else CONFIGS[name])
    if steps is not None:
        cfg["steps"] = int(steps)
    dev = torch.device(device)
    torch.manual_seed(cfg["seed"])
    images, labels, indices = load_training_images(cfg)
    cfg["content_hash"] = content_hash(images)
    images, labels = images.to(dev), labels.to(dev)
    net = build_network(cfg).to(dev)
    ema = copy.deepcopy(net).eval().requires_grad_(False)
    opt = torch.optim.Adam(net.parameters(), lr=cfg["lr"], betas=(0.9, 0.999))
    gen = torch.Generator().manual_seed(cfg["seed"])
    out = Path(out) if out else CKPT_DIR / f"{name}.pt"
    state_path = Path(state_dir or STATE_DIR) / f"{name}.state.pt"
    step, losses = 0, []
    if state_path.exists():  # resume
        st = torch.load(state_path, map_location=dev, weights_only=True)  # tensors and plain data only
        if st["cfg"]["content_hash"] != cfg["content_hash"]:
            raise RuntimeError(f"{state_path} was trained on different images; delete it to restart")
        net.load_state_dict(st["net"]); ema.load_state_dict(st["ema"]); opt.load_state_dict(st["opt"])
        gen.set_state(st["gen"]); step, losses = st["step"], st["losses"]
        print(f"resuming {name} at step {step}")
    beta = 0.5 ** (cfg["batch"] / max(cfg["ema_halflife_images"], 1e-8))
    bar = tqdm(total=cfg["steps"], initial=step, desc=name, disable=not progress, mininterval=5)
    t0, running, recent = time.time(), [], []
    while step < cfg["steps"]:
        idx = torch.randint(len(images), (cfg["batch"],), generator=gen).to(dev)
        cl = labels[idx] if cfg.get("n_classes") else None
        for g in opt.param_groups:
            g["lr"] = cfg["lr"] * min(1.0, (step + 1) / cfg["warmup"]) * cfg.get("lr_decay", 1.0) ** step
        # bfloat16 keeps float32's exponent range, so no gradient scaler is needed (float16 would)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
            loss = edm_loss(net, images[idx], gen, class_labels=cl)
        loss_value = loss.item()                  # one host sync per step
        try:
            check_divergence(loss_value, recent, step + 1, cfg.get("diverge_factor", 50.0),
                             cfg.get("diverge_window", 200))
        except TrainingDiverged as e:
            bar.close()
            raise TrainingDiverged(f"{name}: {e}. Nothing from this step was applied; the last good "
                                   f"checkpoint is {out} (step {step - step % save_every}). Lower 'lr' or "
                                   f"set 'grad_clip' in the config, or stop at that step.") from None
        recent = (recent + [loss_value])[-cfg.get("diverge_window", 200):]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.get("grad_clip"):
            torch.nn.utils.clip_grad_norm_(net.parameters(), cfg["grad_clip"])
        opt.step()
        with torch.no_grad():
            for pe, p in zip(ema.parameters(), net.parameters()):
                pe.lerp_(p, 1 - beta)
        step += 1
        running.append(loss_value)
        bar.update(1)
        if step % log_every == 0 or step == cfg["steps"]:
            losses.append((step, sum(running) / len(running)))
            bar.set_postfix(loss=f"{losses[-1][1]:.4f}")
            running = []
        if step % save_every == 0 or step == cfg["steps"]:
            state_path.parent.mkdir(parents=True, exist_ok=True)
            torch.save({"net": net.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(),
                        "gen": gen.get_state(), "step": step, "losses": losses, "cfg": cfg}, state_path)
            save_checkpoint(out, ema, cfg, name, step, losses, indices, time.time() - t0)
    bar.close()
    return out


def save_checkpoint(path: Path, ema, cfg, name, step, losses, indices, seconds):
    """The committed artefact: EMA weights in float32, config, training subset and loss curve."""
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"name": name, "config": cfg, "step": step, "train_seconds_this_run": round(seconds, 1),
            "command": f"python -m course_lib.train --config {name} --steps {step}",
            "train_subset": {"dataset": cfg["dataset"], "split": cfg["split"], "n": cfg.get("n"),
                             "start": int(cfg.get("start", 0)), "stride": int(cfg.get("stride", 1)),
                             "permute_seed": cfg.get("permute_seed"),
                             "indices": [int(i) for i in indices]}
                            | ({"options": cfg["options"]} if cfg.get("options") else {})
                            | ({"pixel_permute_seed": cfg["pixel_permute_seed"]}
                               if cfg.get("pixel_permute_seed") is not None else {}),
            "losses": losses}
    torch.save({"ema": {k: v.float() for k, v in ema.state_dict().items()}, "meta": meta}, path)
    path.with_suffix(".json").write_text(json.dumps({k: v for k, v in meta.items() if k != "train_subset"}
                                                    | {"train_subset": {**meta["train_subset"], "indices": f"{len(indices)} indices (in the .pt)"}},
                                                    indent=1))


def main(argv=None):
    ap = argparse.ArgumentParser(description="EDM training of the course's reference networks")
    ap.add_argument("--config", required=True, help=f"one of {sorted(CONFIGS)}")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default=None)
    ap.add_argument("--amp", action="store_true", help="bfloat16 autocast (mixed precision; for GPUs)")
    args = ap.parse_args(argv)
    path = train(args.config, steps=args.steps, device=args.device, out=args.out, amp=args.amp)
    print(f"saved {path}")


if __name__ == "__main__":
    sys.exit(main())
