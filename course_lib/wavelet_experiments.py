"""Experiments of Chapter 6 (wavelet scores): denoising MSE curves, order gains, coupling pictures.

The chapter only calls these; the machines themselves live in :mod:`course_lib.denoisers.wavelet`.
"""
from __future__ import annotations

import torch

from .denoisers.base import check_images
from .denoisers.wavelet import family_groups
from .wavelets import coeff_layout, dwt2_packed

__all__ = ["denoising_mse", "expected_mse_curves", "relative_gain", "coupling_mask", "plot_couplings",
           "energy_compaction", "plot_mse_curves"]


def denoising_mse(denoisers: dict, images: torch.Tensor, sigmas, seed: int = 0, batch_size: int = 256,
                  progress: bool = False) -> dict:
    """Monte Carlo denoising MSE per pixel, E||D(x + sigma z, sigma) - x||^2 / d, of every denoiser.

    Every denoiser sees the SAME noise: z is drawn once per (sigma, image) from
    ``torch.Generator().manual_seed(seed)`` on the CPU. Returns {name: (S,) tensor}.
    """
    check_images(images, "images")
    sig = [float(s) for s in sigmas]
    if not sig or min(sig) <= 0:
        raise ValueError(f"sigmas must be a non-empty list of values > 0, got {sigmas!r}")
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(len(sig), *images.shape, generator=g).to(images.device, images.dtype)
    out = {name: torch.zeros(len(sig), dtype=torch.float64) for name in denoisers}
    items = [(name, D) for name, D in denoisers.items()]
    if progress:
        from tqdm.auto import tqdm
        items = tqdm(items, desc="denoising MSE")
    for name, D in items:
        for k, s in enumerate(sig):
            tot = 0.0
            for i in range(0, images.shape[0], batch_size):
                x = images[i:i + batch_size]
                with torch.no_grad():
                    err = D(x + s * z[k, i:i + batch_size], s) - x
                tot += float((err.double() ** 2).sum())
            out[name][k] = tot / images.numel()
    return out


def expected_mse_curves(machines: dict, sigmas) -> dict:
    """Exact in-sample MSE per pixel (:meth:`WaveletDenoiser.expected_mse`) of each machine: {name: (S,)}."""
    return {name: torch.tensor([D.expected_mse(float(s)) for s in sigmas], dtype=torch.float64)
            for name, D in machines.items()}


def relative_gain(mse_base: torch.Tensor, mse_richer: torch.Tensor) -> torch.Tensor:
    """(MSE_base - MSE_richer) / MSE_base: the fraction of the base machine's error that the richer one
    removes, elementwise."""
    return (mse_base - mse_richer) / mse_base


def coupling_mask(family: str, H: int, W: int, level: int, band: str, scale: int, row: int, col: int,
                  radius: int = 1) -> torch.Tensor:
    """(H, W) packed-layout picture of who talks to the coefficient (band, scale, row, col) under
    ``family``: 2 at the coefficient itself, 1 at the other coefficients its features use, 0 elsewhere."""
    lay = coeff_layout(H, W, level)
    k = int(lay.index(band, scale, row, col))
    mask = torch.zeros(H * W)
    for g in family_groups(family, 1, H, W, level, radius):
        tgt = g.vars[:, g.targets]                                   # (G, T)
        hit = (tgt == k).nonzero()
        if hit.numel():
            mask[g.vars[hit[0, 0]]] = 1.0
    mask[k] = 2.0
    return mask.reshape(H, W)


def plot_couplings(H: int = 28, W: int = 28, level: int = 2, radius: int = 1, target=("h", 1, 5, 8), axes=None):
    """One panel per family: the packed coefficient array with the target and its partners marked."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    fams = ("independent", "band_tied", "local_coupled")
    if axes is None:
        _, axes = plt.subplots(1, 3, figsize=(9, 3.2))
    cmap = ListedColormap(["#f2f2f2", "#4c72b0", "#c44e52"])
    for ax, fam in zip(axes, fams):
        m = coupling_mask(fam, H, W, level, *target, radius=radius)
        ax.imshow(m, cmap=cmap, vmin=0, vmax=2, interpolation="nearest")
        for j in range(1, level + 1):                                # band boundaries
            h, w = H >> j, W >> j
            ax.plot([-0.5, 2 * w - 0.5], [h - 0.5, h - 0.5], color="k", lw=0.8)
            ax.plot([w - 0.5, w - 0.5], [-0.5, 2 * h - 0.5], color="k", lw=0.8)
        n = int((m == 1).sum()) + 1
        ax.set_title(f"{fam}\n{n} coefficient" + ("s" if n > 1 else ""), fontsize=10)
        ax.set_xticks([]); ax.set_yticks([])
    return axes


def energy_compaction(images: torch.Tensor, fraction: float, wavelet: str = "haar", level: int = 2) -> dict:
    """Share of the energy of (x - mean image) held by the largest ``fraction`` of coefficients, per image
    (median over images), in the pixel basis and in the wavelet basis: {"pixels": float, "wavelets": float}."""
    check_images(images, "images")
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must lie in (0, 1], got {fraction!r}")
    x = (images - images.mean(0, keepdim=True)).double()
    c = dwt2_packed(x, wavelet, level)
    k = max(1, int(round(fraction * x[0].numel())))
    out = {}
    for name, t in (("pixels", x), ("wavelets", c)):
        e = t.reshape(t.shape[0], -1) ** 2
        top = e.topk(k, dim=1).values.sum(1) / e.sum(1).clamp_min(1e-300)
        out[name] = float(top.median())
    return out


def plot_mse_curves(sigmas, curves: dict, ax=None, styles: dict | None = None, title: str | None = None):
    """Log-log MSE vs sigma, one line per entry of ``curves`` ({name: (S,)}), with the identity MSE sigma^2."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    s = torch.as_tensor([float(v) for v in sigmas])
    for name, v in curves.items():
        ax.plot(s, torch.as_tensor(v), **(styles or {}).get(name, {}), label=name)
    ax.plot(s, s ** 2, color="gray", lw=0.8, ls=":", label=r"$D(x)=x$ ($\sigma^2$)")
    ax.set_xscale("log"); ax.set_yscale("log")
    ax.set_xlabel(r"$\sigma$"); ax.set_ylabel("MSE per pixel")
    if title:
        ax.set_title(title, fontsize=10)
    return ax
