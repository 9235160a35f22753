"""Plot helpers used by every chapter: image grids, sampling trajectories, side-by-side comparisons.

Matplotlib is imported inside the functions so that ``import course_lib`` stays fast. Images are
in the course's [-1, 1] range by default (``vmin``/``vmax``); 1-channel images are drawn in gray,
3-channel images as RGB.
"""
from __future__ import annotations

import math

import torch

__all__ = ["make_grid", "image_grid", "plot_trajectory", "compare_grid"]


def _as_batch(images) -> torch.Tensor:
    x = torch.as_tensor(images).detach().cpu()
    if x.ndim == 2:
        x = x[None, None]
    elif x.ndim == 3:
        x = x[None] if x.shape[0] in (1, 3) else x[:, None]
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"images must have shape (B, C, H, W) with C = 1 or 3, got {tuple(x.shape)}")
    return x.float()


def make_grid(images, nrow: int = 8, pad: int = 1, vmin: float = -1.0, vmax: float = 1.0,
              pad_value: float = 1.0) -> torch.Tensor:
    """Tile a batch (B, C, H, W) into one (H', W', C) array scaled to [0, 1] (clipped), ``nrow``
    images per row, separated by ``pad`` pixels of ``pad_value``."""
    x = _as_batch(images)
    if not vmax > vmin:
        raise ValueError(f"vmax must exceed vmin, got vmin={vmin}, vmax={vmax}")
    x = ((x - vmin) / (vmax - vmin)).clamp(0, 1)
    B, C, H, W = x.shape
    ncol = max(1, min(int(nrow), B))
    nrows = math.ceil(B / ncol)
    grid = torch.full((C, nrows * (H + pad) + pad, ncol * (W + pad) + pad), float(pad_value))
    for b in range(B):  # loop over images (a grid holds tens of them), not pixels
        r, c = divmod(b, ncol)
        grid[:, pad + r * (H + pad): pad + r * (H + pad) + H, pad + c * (W + pad): pad + c * (W + pad) + W] = x[b]
    return grid.permute(1, 2, 0)


def image_grid(images, nrow: int = 8, ax=None, title: str | None = None, vmin: float = -1.0,
               vmax: float = 1.0, pad: int = 1):
    """Draw a batch of images as a grid on ``ax`` (a new figure when None); returns the axes."""
    import matplotlib.pyplot as plt

    grid = make_grid(images, nrow=nrow, pad=pad, vmin=vmin, vmax=vmax)
    if ax is None:
        h, w = grid.shape[:2]
        scale = min(6.0 / max(h, w), 1 / 30)  # ~30 pixels per inch, longest side at most 6 in
        _, ax = plt.subplots(figsize=(max(1.5, w * scale), max(1.5, h * scale)))
    if grid.shape[2] == 1:
        ax.imshow(grid[..., 0].numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    else:
        ax.imshow(grid.numpy(), interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title)
    return ax


def _pick_steps(n: int, steps) -> list[int]:
    if steps is None:
        steps = 6
    if isinstance(steps, int):
        k = max(1, min(steps, n))
        return sorted(set(round(i * (n - 1) / max(1, k - 1)) for i in range(k)))
    out = [int(s) if s >= 0 else n + int(s) for s in steps]
    bad = [s for s in out if not 0 <= s < n]
    if bad:
        raise ValueError(f"steps {bad} out of range for a trajectory with {n} entries")
    return out


def plot_trajectory(traj, steps=6, which: str = "both", n_images: int = 4, vmin: float = -1.0,
                    vmax: float = 1.0, axes=None, vp_view: bool = False):
    """Show x_t and/or D(x_t) along a :class:`course_lib.sampling.Trajectory`.

    ``steps`` is a number of evenly spaced steps or a list of step indices; ``which`` is ``"x"``,
    ``"denoised"`` or ``"both"`` (x_t on top, D(x_t) below). Columns are steps, labelled by sigma;
    each panel shows the first ``n_images`` images of the batch stacked vertically. With
    ``vp_view=True`` the states are shown as the VP points x_t / sqrt(1 + sigma^2), which stay in
    range at large sigma (otherwise the clipped VE state looks like binary noise). Returns the figure.
    """
    import matplotlib.pyplot as plt

    if which not in ("x", "denoised", "both"):
        raise ValueError(f"which must be 'x', 'denoised' or 'both', got {which!r}")
    rows = ["x", "denoised"] if which == "both" else [which]
    n_steps = traj.denoised.shape[0]
    idx = _pick_steps(n_steps + (1 if which == "x" else 0), steps)
    sig_hat = getattr(traj, "sigmas_hat", None)
    if axes is None:
        fig, axes = plt.subplots(len(rows), len(idx), figsize=(1.4 * len(idx), 1.4 * n_images * len(rows) / 2 + 0.6),
                                 squeeze=False)
    else:
        fig = axes.flat[0].figure
        axes = axes.reshape(len(rows), len(idx)) if hasattr(axes, "reshape") else axes
    for r, name in enumerate(rows):
        for c, i in enumerate(idx):
            ax = axes[r][c]
            if name == "x" or i < n_steps:
                imgs = (traj.x if name == "x" else traj.denoised)[i][:n_images]
                if name == "x" and vp_view:
                    imgs = imgs / math.sqrt(1 + float(traj.sigmas[i]) ** 2)
                image_grid(imgs, nrow=1, ax=ax, vmin=vmin, vmax=vmax)
            else:
                ax.axis("off")
            s = traj.sigmas[i] if (name == "x" or sig_hat is None) else sig_hat[i]
            ax.set_title(f"σ={float(s):.3g}", fontsize=10)
            if c == 0:
                ax.set_ylabel("$x_t$" if name == "x" else "$D(x_t)$")
    fig.tight_layout()
    return fig


def compare_grid(rows: dict, n_images: int = 8, vmin: float = -1.0, vmax: float = 1.0, axes=None,
                 row_height: float = 1.2):
    """One labelled row of images per entry of ``rows`` ({label: (B, C, H, W)}), e.g. theory vs
    network outputs on the same seeds. Returns the figure."""
    import matplotlib.pyplot as plt

    if not rows:
        raise ValueError("rows is empty: pass {label: images}")
    n = len(rows)
    if axes is None:
        fig, axes = plt.subplots(n, 1, figsize=(1.0 * n_images + 1.2, row_height * n), squeeze=False)
        axes = axes[:, 0]
    else:
        fig = axes[0].figure
    for ax, (label, imgs) in zip(axes, rows.items()):
        image_grid(_as_batch(imgs)[:n_images], nrow=n_images, ax=ax, vmin=vmin, vmax=vmax)
        ax.set_ylabel(str(label), rotation=0, ha="right", va="center")
    fig.tight_layout()
    return fig
