"""Sensitivity fields (Jacobian rows) of any denoiser, and receptive-field sizes vs sigma (Chapters 4, 5).

For a denoiser ``D(x, sigma)`` and an output pixel q = (c, i, j), the *sensitivity field* of q at the
input x is the gradient of that one output with respect to every input pixel,

    g_q(x, sigma) = d D(x, sigma)_q / d x            (one row of the Jacobian dD/dx, shape (C, H, W)).

For a linear denoiser D(x) = mu + A (x - mu) it is row q of A whatever x is; for the Wiener filter
A = Sigma (Sigma + sigma^2 I)^-1 (Chapter 2, "Receptive fields"). For a nonlinear denoiser (a network,
the ideal or local machines) it depends on x, so we average over noisy inputs x = x0 + sigma z,
x0 from the data and z ~ N(0, I), as Kamb & Ganguli (2024, Fig. 4 and App. C.2) do:

    G_q(sigma) = E_{x0, z} g_q(x0 + sigma z, sigma),      |G|_q(sigma) = E_{x0, z} |g_q(x0 + sigma z, sigma)|.

The score's Jacobian is (dD/dx - I) / sigma^2 (Tweedie), so apart from the diagonal entry it is the
same field up to the factor 1/sigma^2; sizes measured on the denoiser's field hold for the score's too.

Gradients are computed with ``torch.func.vjp`` once per batch of inputs and ``torch.func.vmap`` over
a chunk of one-hot cotangents (one per output pixel). Every batch element is assumed to be denoised
independently of the others (true for every analytic machine and for networks in eval mode without
batch normalisation), so one backward pass gives the per-image gradients of a whole batch.

Receptive-field size (Sec. "Receptive fields vs sigma" of Chapter 4). Let a(i', j') = sum_c' |G|_q(c', i', j')
be the averaged absolute field summed over input channels. We report two numbers:

- the *effective area*  A_eff = (sum a)^2 / sum a^2 (in pixels): it equals k exactly when the field is
  spread uniformly over k pixels, and 1 for a field on a single pixel (a participation ratio);
- the *mass radius* r_p: the smallest integer r such that the square of side 2r + 1 centred on the
  output pixel (Chebyshev distance max(|i'-i|, |j'-j|) <= r) holds at least the fraction p of sum a.
  A 3x3 convolution has r_1 = 1; K&G's "P x P locality window" corresponds to P = 2 r + 1.
  With ``circular=True`` distances wrap around the image (for circularly padded networks).

An identically zero field (the output does not depend on the input at all, e.g. the ideal denoiser
at small sigma, whose softmax has saturated on one training image) gets A_eff = 0 and r_p = -1.
"""
from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass, field

import torch

from .denoisers.base import check_images
from .validate import int_like

__all__ = [
    "as_pixels", "sensitivity_fields", "pixel_gradient", "average_sensitivity", "SensitivityField",
    "effective_area", "mass_radius", "receptive_field_vs_sigma", "ReceptiveFieldCurve", "center_pixel",
]


def center_pixel(shape, channel: int = 0) -> tuple:
    """The output pixel (channel, H // 2, W // 2) of an image of shape (C, H, W)."""
    return (channel, int(shape[-2]) // 2, int(shape[-1]) // 2)


def as_pixels(pixels, shape) -> torch.Tensor:
    """Normalise output pixels to a (Q, 3) long tensor of (c, i, j) for images of ``shape`` = (C, H, W).

    Accepts one pixel or a list of pixels, each an int (flat index into C*H*W), an (i, j) pair (channel 0)
    or a (c, i, j) triple, or a (Q, 2) / (Q, 3) integer tensor.
    """
    C, H, W = (int(s) for s in shape[-3:])
    if isinstance(pixels, torch.Tensor):
        p = pixels.detach().cpu().long()
        if p.ndim <= 1:
            p = p.reshape(-1)
            if p.numel() == 0 or bool(((p < 0) | (p >= C * H * W)).any()):
                raise ValueError(f"flat pixel indices must lie in [0, {C * H * W}), got {p.tolist()}")
            p = torch.stack([p // (H * W), (p // W) % H, p % W], dim=1)
        elif p.ndim == 2 and p.shape[1] == 2:
            p = torch.cat([torch.zeros(p.shape[0], 1, dtype=torch.long), p], dim=1)
    else:
        if isinstance(pixels, int) or (isinstance(pixels, tuple) and all(isinstance(v, int) for v in pixels)):
            pixels = [pixels]
        rows = []
        for v in pixels:
            if isinstance(v, int):
                if not 0 <= v < C * H * W:
                    raise ValueError(f"flat pixel indices must lie in [0, {C * H * W}), got {v}")
                rows.append([v // (H * W), (v // W) % H, v % W])
            elif isinstance(v, (tuple, list)) and len(v) in (2, 3) and all(isinstance(u, int) for u in v):
                rows.append(([0] if len(v) == 2 else []) + list(v))
            else:
                raise ValueError(f"pixels must be ints, (i, j) or (c, i, j) tuples, got {v!r} in {pixels!r}")
        p = torch.tensor(rows, dtype=torch.long).reshape(-1, 3)
    if p.ndim != 2 or p.shape[1] != 3 or p.shape[0] == 0:
        raise ValueError(f"pixels must give (c, i, j) triples, got shape {tuple(p.shape)}")
    hi = torch.tensor([C, H, W])
    if bool(((p < 0) | (p >= hi)).any()):
        raise ValueError(f"pixels must lie inside the image (C, H, W) = {(C, H, W)}, got {p.tolist()}")
    return p


@contextlib.contextmanager
def _autograd_on(denoiser):
    """Networks wrapped as denoisers switch autograd off by default (``grad=False``); turn it on."""
    flag = getattr(denoiser, "grad", None)
    if isinstance(flag, bool) and not flag:
        denoiser.grad = True
        try:
            yield
        finally:
            denoiser.grad = flag
    else:
        yield


def sensitivity_fields(denoiser, x: torch.Tensor, sigma, pixels, chunk_size: int = 64,
                       vectorize: bool | str = "auto") -> torch.Tensor:
    """Per-input gradients g_q(x_b) = d D(x, sigma)[b, q] / d x[b] for each output pixel q.

    Returns a tensor of shape (Q, B, C, H, W). ``pixels``: see :func:`as_pixels`. ``chunk_size`` output
    pixels are back-propagated together with ``vmap``; ``vectorize=False`` loops over them instead
    (slower, for denoisers whose backward has no batching rule; ``"auto"`` falls back on error).
    """
    x = check_images(x)
    chunk_size = int_like(chunk_size)
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")
    if vectorize not in (True, False, "auto"):
        raise ValueError(f"vectorize must be True, False or 'auto', got {vectorize!r}")
    pix = as_pixels(pixels, x.shape[1:])
    B = x.shape[0]
    flat = (pix[:, 0] * x.shape[2] + pix[:, 1]) * x.shape[3] + pix[:, 2]
    x_in = x.detach()

    with _autograd_on(denoiser), torch.enable_grad():
        out, vjp_fn = torch.func.vjp(lambda xx: denoiser(xx, sigma), x_in)
        if out.shape != x.shape:
            raise ValueError(f"denoiser returned shape {tuple(out.shape)} for an input of shape {tuple(x.shape)}")
        grads = []
        for start in range(0, len(flat), chunk_size):
            idx = flat[start:start + chunk_size].to(x.device)
            cot = torch.zeros(len(idx), B, out[0].numel(), dtype=out.dtype, device=out.device)
            cot[:, :, :].scatter_(2, idx.view(-1, 1, 1).expand(-1, B, 1), 1.0)
            cot = cot.reshape(len(idx), *out.shape)
            g = None
            if vectorize in (True, "auto"):
                try:
                    with warnings.catch_warnings():  # ops without a batching rule fall back to a loop
                        warnings.filterwarnings("ignore", message="There is a performance drop")
                        g = torch.func.vmap(vjp_fn)(cot)[0]
                except Exception:
                    if vectorize is True:
                        raise
            if g is None:
                g = torch.stack([vjp_fn(c)[0] for c in cot])
            grads.append(g.detach())
    return torch.cat(grads)


def pixel_gradient(denoiser, x: torch.Tensor, sigma, pixel) -> torch.Tensor:
    """g_q(x_b) for one output pixel q: shape (B, C, H, W)."""
    if as_pixels(pixel, check_images(x).shape[1:]).shape[0] != 1:
        raise ValueError(f"pixel must be a single pixel, got {pixel!r}")
    return sensitivity_fields(denoiser, x, sigma, pixel)[0]


# ---------------------------------------------------------------------------------- size measures
def _spatial_abs(fields: torch.Tensor) -> torch.Tensor:
    if fields.ndim == 3:
        fields = fields.unsqueeze(0)
    if fields.ndim == 4:  # (Q, C, H, W) -> (Q, H, W)
        return fields.abs().sum(1)
    raise ValueError(f"fields must have shape (Q, C, H, W) or (C, H, W), got {tuple(fields.shape)}")


def effective_area(fields: torch.Tensor) -> torch.Tensor:
    """A_eff = (sum a)^2 / sum a^2 with a = sum over channels of |field| (module doc); shape (Q,)."""
    a = _spatial_abs(fields).flatten(1)
    s2 = a.square().sum(1)
    return torch.where(s2 > 0, a.sum(1).square() / s2.clamp_min(torch.finfo(a.dtype).tiny), torch.zeros_like(s2))


def mass_radius(fields: torch.Tensor, pixels, mass: float = 0.9, circular: bool = False) -> torch.Tensor:
    """Smallest integer Chebyshev radius r around each output pixel holding >= ``mass`` of sum a; (Q,) long."""
    if not 0 < float(mass) <= 1:
        raise ValueError(f"mass must lie in (0, 1], got {mass!r}")
    a = _spatial_abs(fields)
    Q, H, W = a.shape
    pix = as_pixels(pixels, (fields.shape[-3], H, W)).to(a.device)
    if pix.shape[0] != Q:
        raise ValueError(f"got {pix.shape[0]} pixels for {Q} fields")
    di = (torch.arange(H, device=a.device).view(1, H) - pix[:, 1:2]).abs()
    dj = (torch.arange(W, device=a.device).view(1, W) - pix[:, 2:3]).abs()
    if circular:
        di, dj = torch.minimum(di, H - di), torch.minimum(dj, W - dj)
    dist = torch.maximum(di.view(Q, H, 1), dj.view(Q, 1, W)).reshape(Q, -1)
    R = int(dist.max()) + 1
    per_r = torch.zeros(Q, R, dtype=a.dtype, device=a.device).scatter_add_(1, dist, a.reshape(Q, -1))
    cum = per_r.cumsum(1)
    total = cum[:, -1:]
    # tolerance so that mass=1 is reached despite rounding in the cumulative sum
    reached = cum >= (float(mass) * total) * (1 - 1e-6)
    return torch.where(total[:, 0] > 0, reached.to(torch.int8).argmax(1), torch.full_like(total[:, 0], -1).long())


# ---------------------------------------------------------------------------------- averaged fields
@dataclass
class SensitivityField:
    """Fields averaged over noisy inputs x = x0 + sigma z (module doc).

    ``mean`` = E g_q and ``mean_abs`` = E |g_q|, each (Q, C, H, W); ``pixels`` (Q, 3); ``n_inputs`` the
    number of (x0, z) pairs averaged.
    """
    sigma: float
    pixels: torch.Tensor
    mean: torch.Tensor
    mean_abs: torch.Tensor
    n_inputs: int
    circular: bool = False

    def effective_area(self) -> torch.Tensor:
        """A_eff of E|g_q| per output pixel, (Q,)."""
        return effective_area(self.mean_abs)

    def radius(self, mass: float = 0.9) -> torch.Tensor:
        """Mass radius r_p of E|g_q| per output pixel, (Q,)."""
        return mass_radius(self.mean_abs, self.pixels, mass, self.circular)


def average_sensitivity(denoiser, x0: torch.Tensor, sigma: float, pixels, n_noise: int = 1,
                        generator: torch.Generator | None = None, batch_size: int = 32,
                        chunk_size: int = 64, circular: bool = False,
                        progress: bool = False) -> SensitivityField:
    """Average g_q(x0 + sigma z, sigma) and |g_q| over the images ``x0`` (N, C, H, W) and ``n_noise``
    noise draws per image (z from ``generator``, drawn on the CPU so numbers do not depend on the device).
    """
    x0 = check_images(x0, "x0")
    sigma = float(sigma)
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma!r}")
    n_noise = int_like(n_noise)
    if not isinstance(n_noise, int) or n_noise < 1:
        raise ValueError(f"n_noise must be a positive int, got {n_noise!r}")
    batch_size = int_like(batch_size)
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    pix = as_pixels(pixels, x0.shape[1:])
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    batches = [(k, s) for k in range(n_noise) for s in range(0, x0.shape[0], batch_size)]
    if progress:
        from tqdm.auto import tqdm
        batches = tqdm(batches, desc=f"sensitivity sigma={sigma:.3g}", leave=False)
    s1 = s_abs = None
    for _, start in batches:
        xb = x0[start:start + batch_size]
        z = torch.randn(xb.shape, generator=generator, dtype=xb.dtype).to(xb.device)
        g = sensitivity_fields(denoiser, xb + sigma * z, sigma, pix, chunk_size=chunk_size)
        gs, ga = g.sum(1), g.abs().sum(1)
        s1, s_abs = (gs, ga) if s1 is None else (s1 + gs, s_abs + ga)
    n = n_noise * x0.shape[0]
    return SensitivityField(sigma, pix, s1 / n, s_abs / n, n, circular)


@dataclass
class ReceptiveFieldCurve:
    """Receptive-field sizes vs sigma: ``area`` and ``radius`` are (S, Q) (sigma x output pixel)."""
    sigmas: torch.Tensor
    area: torch.Tensor
    radius: torch.Tensor
    mass: float
    fields: list = field(default_factory=list, repr=False)

    def table(self) -> str:
        """One row per sigma: median effective area and median mass radius over the output pixels."""
        rows = [f"{'sigma':>10} {'A_eff (px)':>11} {'r_' + format(self.mass, 'g'):>8} {'P=2r+1':>7}"]
        for s, a, r in zip(self.sigmas.tolist(), self.area.median(1).values.tolist(),
                           self.radius.median(1).values.tolist()):
            r = int(r)
            rows.append(f"{s:>10.4g} {a:>11.2f} {r if r >= 0 else '-':>8} {2 * r + 1 if r >= 0 else '-':>7}")
        return "\n".join(rows)

    def __str__(self):
        return self.table()

    def plot(self, ax=None, label: str | None = None):
        """Median effective area (over output pixels) vs sigma, log-log; returns the axes."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(4.5, 3))
        ax.plot(self.sigmas, self.area.median(1).values, marker="o", label=label)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("sigma")
        ax.set_ylabel("effective area $A_{eff}$ (pixels)")
        if label:
            ax.legend(fontsize=10)
        return ax

    def plot_fields(self, pixel: int = 0, hide_center: bool = True, axes=None):
        """Heatmaps of E|g_q| (summed over input channels) at each sigma for output pixel number ``pixel``;
        like Kamb & Ganguli's Fig. 4 the output pixel itself is masked (``hide_center``). Returns the figure."""
        import matplotlib.pyplot as plt

        if not self.fields:
            raise ValueError("no fields kept: call receptive_field_vs_sigma(..., keep_fields=True)")
        n = len(self.fields)
        if axes is None:
            fig, axes = plt.subplots(1, n, figsize=(1.6 * n, 1.9), squeeze=False)
            axes = axes[0]
        fig = axes[0].figure
        for ax, f in zip(axes, self.fields):
            a = f.mean_abs[pixel].abs().sum(0).detach().cpu().double().clone()
            c, i, j = f.pixels[pixel].tolist()
            if hide_center:
                a[i, j] = float("nan")
            ax.imshow(a.numpy(), cmap="magma")
            ax.plot([j], [i], marker="+", color="c", ms=6)
            ax.set_title(f"σ={f.sigma:.3g}", fontsize=10)
            ax.set_xticks([])
            ax.set_yticks([])
        fig.tight_layout()
        return fig


def receptive_field_vs_sigma(denoiser, x0: torch.Tensor, sigmas, pixels=None, n_noise: int = 1,
                             mass: float = 0.9, generator: torch.Generator | None = None,
                             batch_size: int = 32, chunk_size: int = 64, circular: bool = False,
                             keep_fields: bool = True, progress: bool = False) -> ReceptiveFieldCurve:
    """Effective area and mass radius of E|g_q| at each sigma (module doc); ``pixels`` defaults to the
    centre pixel. With ``keep_fields`` the averaged :class:`SensitivityField` of every sigma is kept."""
    x0 = check_images(x0, "x0")
    sig = torch.as_tensor(sigmas, dtype=torch.float64).reshape(-1)
    if sig.numel() == 0 or not bool((sig > 0).all()):
        raise ValueError(f"sigmas must be a non-empty list of values > 0, got {sig.tolist()}")
    pix = as_pixels(center_pixel(x0.shape[1:]) if pixels is None else pixels, x0.shape[1:])
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    it = sig.tolist()
    if progress:
        from tqdm.auto import tqdm
        it = tqdm(it, desc="receptive field vs sigma")
    fields, areas, radii = [], [], []
    for s in it:
        f = average_sensitivity(denoiser, x0, s, pix, n_noise=n_noise, generator=generator,
                                batch_size=batch_size, chunk_size=chunk_size, circular=circular)
        areas.append(f.effective_area().cpu().double())
        radii.append(f.radius(mass).cpu())
        if keep_fields:
            fields.append(f)
    return ReceptiveFieldCurve(sig, torch.stack(areas), torch.stack(radii), float(mass), fields)
