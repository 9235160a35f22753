"""Noise schedules and conversions between conventions (Chapter 0, Sec. "Two conventions, one process").

The course works internally in the EDM variance-exploding (VE) convention ``x = x0 + sigma z``.
A variance-preserving (VP / DDPM / DDIM) point ``x_t = sqrt(alpha_bar) x0 + sqrt(1 - alpha_bar) eps``
is the same point rescaled:

    x = x_t / sqrt(alpha_bar),          sigma = sqrt((1 - alpha_bar) / alpha_bar),
    alpha_bar = 1 / (1 + sigma^2),      x_t = x / sqrt(1 + sigma^2).

Schedules are plain functions returning 1-D float64 tensors (callers cast to their dtype).
"""
from __future__ import annotations

import math

import torch

from .validate import as_float, as_int

__all__ = [
    "karras_sigmas", "sigma_to_alpha_bar", "alpha_bar_to_sigma", "ve_to_vp", "vp_to_ve",
    "linear_beta_alpha_bar", "cosine_alpha_bar", "ddim_timesteps", "ddim_sigmas",
]


def _positive(name, value):
    return as_float(value, name, positive=True)


def karras_sigmas(n: int, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0,
                  append_zero: bool = True) -> torch.Tensor:
    """EDM's rho-schedule (Karras et al. 2022, Eq. 5), descending from ``sigma_max`` to ``sigma_min``:

        sigma_i = (sigma_max^(1/rho) + i/(n-1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho,  i = 0..n-1,

    followed by a final 0 when ``append_zero`` (so the result has n+1 entries and a sampler's last
    step lands on the denoised image).
    """
    n = as_int(n, "n", 1)
    sigma_min, sigma_max = _positive("sigma_min", sigma_min), _positive("sigma_max", sigma_max)
    rho = _positive("rho", rho)
    if sigma_min > sigma_max:
        raise ValueError(f"sigma_min ({sigma_min}) must be <= sigma_max ({sigma_max})")
    ramp = torch.linspace(0, 1, n, dtype=torch.float64) if n > 1 else torch.zeros(1, dtype=torch.float64)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    sig = (hi + ramp * (lo - hi)) ** rho
    sig[0] = sigma_max  # exact endpoints (the root-then-power round trip is off by an ulp)
    if n > 1:
        sig[-1] = sigma_min
    return torch.cat([sig, sig.new_zeros(1)]) if append_zero else sig


def sigma_to_alpha_bar(sigma) -> torch.Tensor:
    """alpha_bar = 1 / (1 + sigma^2)."""
    sigma = torch.as_tensor(sigma, dtype=torch.float64)
    if bool((sigma < 0).any()) or bool(torch.isnan(sigma).any()):
        raise ValueError(f"sigma must be >= 0 (not NaN), got min {sigma.min().item()!r}")
    return 1.0 / (1.0 + sigma**2)


def alpha_bar_to_sigma(alpha_bar) -> torch.Tensor:
    """sigma = sqrt((1 - alpha_bar) / alpha_bar), for alpha_bar in (0, 1]."""
    a = torch.as_tensor(alpha_bar, dtype=torch.float64)
    if not bool(((a > 0) & (a <= 1)).all()):
        raise ValueError(f"alpha_bar must lie in (0, 1], got values in [{a.min().item()!r}, {a.max().item()!r}]")
    return torch.sqrt((1.0 - a) / a)


def ve_to_vp(x: torch.Tensor, sigma) -> torch.Tensor:
    """x_t = x / sqrt(1 + sigma^2): the VP point carrying the same x0 and noise as the VE point x."""
    s = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
    if not bool((torch.isfinite(s) & (s >= 0)).all()):
        raise ValueError(f"sigma must be finite and >= 0, got values in [{s.min().item()!r}, {s.max().item()!r}]")
    s = s.reshape(-1, *([1] * (x.ndim - 1))) if s.ndim == 1 else s
    return x / torch.sqrt(1 + s**2)


def vp_to_ve(x_t: torch.Tensor, alpha_bar) -> torch.Tensor:
    """x = x_t / sqrt(alpha_bar), for alpha_bar in (0, 1]."""
    a = torch.as_tensor(alpha_bar, dtype=x_t.dtype, device=x_t.device)
    if not bool(((a > 0) & (a <= 1)).all()):
        raise ValueError(f"alpha_bar must lie in (0, 1] (alpha_bar = 1 / (1 + sigma^2)), got values in "
                         f"[{a.min().item()!r}, {a.max().item()!r}]")
    a = a.reshape(-1, *([1] * (x_t.ndim - 1))) if a.ndim == 1 else a
    return x_t / torch.sqrt(a)


def linear_beta_alpha_bar(T: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """DDPM's linear-beta schedule (Ho et al. 2020): alpha_bar_t = prod_{s<=t} (1 - beta_s), t = 1..T.

    Entry ``t-1`` of the result is alpha_bar_t.
    """
    T = as_int(T, "T", 1)
    betas = torch.linspace(beta_start, beta_end, T, dtype=torch.float64)
    return torch.cumprod(1 - betas, 0)


def cosine_alpha_bar(T: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """Improved-DDPM cosine schedule (Nichol & Dhariwal 2021): f(t) = cos^2(((t/T + s)/(1 + s)) pi/2),
    alpha_bar_t = f(t)/f(0), with each beta_t = 1 - alpha_bar_t/alpha_bar_{t-1} clipped at ``max_beta``.
    Entry ``t-1`` is alpha_bar_t, t = 1..T.
    """
    T = as_int(T, "T", 1)
    t = torch.arange(T + 1, dtype=torch.float64)
    f = torch.cos(((t / T + s) / (1 + s)) * math.pi / 2) ** 2
    betas = (1 - f[1:] / f[:-1]).clamp(max=max_beta)
    return torch.cumprod(1 - betas, 0)


def ddim_timesteps(num_steps: int, T: int = 1000, spacing: str = "trailing") -> torch.Tensor:
    """A DDIM time grid of ``num_steps`` 0-based indices into an alpha_bar table of length ``T``,
    descending, with stride c = T // num_steps:

    - ``"trailing"`` (default): t = T-1 - k c, k = 0..num_steps-1, so the first step starts at the
      noisiest entry of the table (Lin et al. 2024's recommendation; diffusers' "trailing" spacing);
    - ``"leading"``: t = k c (the DDIM paper's code, ``range(0, T, c)``), which starts at
      (num_steps-1) c and never visits the noisiest entries when c > 1.
    """
    T = as_int(T, "T", 1)
    num_steps = as_int(num_steps, f"num_steps (T={T})", 1, T)
    c = T // num_steps
    k = torch.arange(num_steps, dtype=torch.long)
    if spacing == "trailing":
        return T - 1 - k * c
    if spacing == "leading":
        return k.flip(0) * c
    raise ValueError(f"spacing must be 'trailing' or 'leading', got {spacing!r}")


def ddim_sigmas(num_steps: int, alpha_bar: torch.Tensor, append_zero: bool = True,
                spacing: str = "trailing") -> torch.Tensor:
    """The VE sigmas visited by DDIM on ``alpha_bar`` with ``num_steps`` steps (descending, final 0):
    sigma = sqrt((1 - alpha_bar_t) / alpha_bar_t) at the times of :func:`ddim_timesteps`.

    Running the Euler probability-flow sampler on these sigmas reproduces DDIM exactly (Chapter 0).
    """
    alpha_bar = torch.as_tensor(alpha_bar, dtype=torch.float64)
    if alpha_bar.ndim != 1:
        raise ValueError(f"alpha_bar must be a 1-D table, got shape {tuple(alpha_bar.shape)}")
    idx = ddim_timesteps(num_steps, len(alpha_bar), spacing)
    sig = alpha_bar_to_sigma(alpha_bar[idx])
    return torch.cat([sig, sig.new_zeros(1)]) if append_zero else sig
