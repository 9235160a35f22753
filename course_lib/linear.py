"""The linear lens: closed-form sampling, teleportation and receptive fields of the Gaussian model (Chapter 2).

Closed-form probability flow (Sec. "Sampling in closed form"). With the Gaussian denoiser the VE
PF-ODE dx/dsigma = -(D(x, sigma) - x)/sigma is linear with commuting matrices, and along u_k
d c_k/dsigma = sigma c_k / (lam_k + sigma^2), so

    x(sigma) = mu + sum_k sqrt((sigma^2 + lam_k)/(sigma_T^2 + lam_k)) u_k u_k^T (x_T - mu)
               + (sigma/sigma_T) (I - U U^T)(x_T - mu),
    D(x(sigma), sigma) = mu + sum_k xi(sigma, lam_k) u_k u_k^T (x_T - mu),
    xi(sigma, lam) = lam / sqrt((sigma^2 + lam)(sigma_T^2 + lam))

(Wang & Vastola 2024). VP form with alpha_t = sqrt(ab_t), sigma_t = sqrt(1 - ab_t):
x_t = alpha_t mu + psi(t, 0) x_T^perp + sum_k psi(t, lam_k) c_k u_k,
psi(t, lam) = sqrt((sigma_t^2 + lam alpha_t^2)/(sigma_T^2 + lam alpha_T^2)),
c_k = u_k^T (x_T - alpha_T mu), x_T^perp = (I - U U^T)(x_T - alpha_T mu).

Teleportation (Sec. "Analytical teleportation"): jump with the closed form from sigma_0 = sigma_max to
sigma_s = sigmas[skip], then run any sampler on the tail sigmas[skip:] of the same grid.

Receptive fields (Sec. "Receptive fields"): RF_i(sigma) = e_i^T Sigma (Sigma + sigma^2 I)^-1, and the
1-D circulant power-law closed form :func:`power_law_rf`.
"""
from __future__ import annotations

import math
from typing import Callable

import torch

from .denoisers.base import check_images
from .validate import int_like

__all__ = ["xi", "ve_trajectory", "ve_denoiser_trajectory", "vp_trajectory", "teleport", "teleportation_sweep",
           "CountingDenoiser", "receptive_field", "rf_radius", "circulant_rf", "power_law_eigenvalues",
           "power_law_rf", "score_fse_over_sigma", "xi_crossing_sigma2", "xi_crossing_bisect", "score_fse_at", "loglog_slope"]


def _sigmas(sigmas, x):
    s = torch.as_tensor(sigmas, dtype=x.dtype, device=x.device).reshape(-1)
    if not bool(torch.isfinite(s).all()) or bool((s < 0).any()):
        raise ValueError(f"sigmas must be finite and >= 0, got {s.tolist()!r}")
    return s


def _positive(name, v):
    if not (math.isfinite(float(v)) and float(v) > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {v!r}")
    return float(v)


def xi(sigma, lam, sigma_T: float) -> torch.Tensor:
    """xi(sigma, lam) = lam / sqrt((sigma^2 + lam)(sigma_T^2 + lam)): the weight of PC k in D along the path."""
    sigma, lam = torch.as_tensor(sigma), torch.as_tensor(lam)
    return lam / torch.sqrt((sigma**2 + lam) * (sigma_T**2 + lam))


def _coords(gauss, x_T):
    mu, lam, U = gauss._params(x_T)
    y = x_T.reshape(x_T.shape[0], -1) - mu
    c = y @ U
    return mu, lam, U, c, y - c @ U.T


def ve_trajectory(gauss, x_T: torch.Tensor, sigma_T: float, sigmas) -> torch.Tensor:
    """x(sigma) of the Gaussian PF-ODE started at x_T at sigma_T, for each sigma in ``sigmas``.

    Returns (S, B, C, H, W) for S = len(sigmas). ``sigma = 0`` gives the final sample.
    """
    x_T = check_images(x_T, "x_T")
    sT = _positive("sigma_T", sigma_T)
    s = _sigmas(sigmas, x_T)
    mu, lam, U, c, perp = _coords(gauss, x_T)
    g = torch.sqrt((s[:, None] ** 2 + lam) / (sT**2 + lam))             # (S, r)
    on = torch.einsum("sr,br,dr->sbd", g, c, U)
    out = mu + on + (s / sT)[:, None, None] * perp[None]
    return out.reshape(len(s), *x_T.shape)


def ve_denoiser_trajectory(gauss, x_T: torch.Tensor, sigma_T: float, sigmas) -> torch.Tensor:
    """D(x(sigma), sigma) = mu + sum_k xi(sigma, lam_k) u_k u_k^T (x_T - mu), shape (S, B, C, H, W)."""
    x_T = check_images(x_T, "x_T")
    sT = _positive("sigma_T", sigma_T)
    s = _sigmas(sigmas, x_T)
    mu, lam, U, c, _ = _coords(gauss, x_T)
    out = mu + torch.einsum("sr,br,dr->sbd", xi(s[:, None], lam, sT), c, U)
    return out.reshape(len(s), *x_T.shape)


def vp_trajectory(gauss, x_T: torch.Tensor, alpha_bar_T: float, alpha_bars) -> torch.Tensor:
    """VP (DDIM) closed form x_t for x_T at alpha_bar_T, at each alpha_bar in ``alpha_bars`` (S, B, C, H, W)."""
    x_T = check_images(x_T, "x_T")
    abT = float(alpha_bar_T)
    ab = torch.as_tensor(alpha_bars, dtype=x_T.dtype, device=x_T.device).reshape(-1)
    if not 0 < abT < 1 or bool(((ab <= 0) | (ab > 1)).any()):
        raise ValueError(f"alpha_bar_T must be in (0, 1) and alpha_bars in (0, 1], got {abT!r}, {ab.tolist()!r}")
    mu, lam, U = gauss._params(x_T)
    aT, sT2 = math.sqrt(abT), 1 - abT
    a, s2 = ab.sqrt(), 1 - ab
    y = x_T.reshape(x_T.shape[0], -1) - aT * mu
    c = y @ U
    perp = y - c @ U.T
    psi = torch.sqrt((s2[:, None] + lam * ab[:, None]) / (sT2 + lam * abT))   # (S, r)
    psi0 = torch.sqrt(s2 / sT2)
    out = a[:, None, None] * mu + psi0[:, None, None] * perp[None] + torch.einsum("sr,br,dr->sbd", psi, c, U)
    return out.reshape(len(ab), *x_T.shape)


class CountingDenoiser:
    """Wrap a denoiser and count its evaluations (number of function evaluations, NFE)."""

    def __init__(self, denoiser: Callable):
        self.denoiser, self.nfe = denoiser, 0

    def __call__(self, x, sigma):
        self.nfe += 1
        return self.denoiser(x, sigma)


def teleport(denoiser: Callable, gauss, x_T: torch.Tensor, sigmas: torch.Tensor, skip: int,
             solver: str = "heun", progress: bool = False, **sample_kwargs):
    """Analytical teleportation: x(sigmas[skip]) in closed form from x_T at sigmas[0], then
    :func:`course_lib.sampling.sample` with ``denoiser`` on ``sigmas[skip:]``.

    Returns ``(x0, nfe)`` where nfe counts the denoiser calls actually made. ``skip = 0`` is the
    plain sampler; ``skip = len(sigmas) - 1`` (the final 0) is the Gaussian model's sample itself.
    """
    x_T = check_images(x_T, "x_T")
    sigmas = torch.as_tensor(sigmas, dtype=torch.float64)
    n = len(sigmas) - 1
    skip = int_like(skip)
    if not isinstance(skip, int) or not 0 <= skip <= n:
        raise ValueError(f"skip must be an int in [0, {n}] for a grid of {n + 1} sigmas, got {skip!r}")
    from .sampling import sample

    x = x_T if skip == 0 else ve_trajectory(gauss, x_T, float(sigmas[0]), [float(sigmas[skip])])[0]
    counter = CountingDenoiser(denoiser)
    if skip == n:
        return x, 0
    x0 = sample(counter, x, sigmas[skip:], solver=solver, progress=progress, **sample_kwargs)
    x0 = getattr(x0, "x", x0)
    return x0, counter.nfe


def teleportation_sweep(denoiser: Callable, gauss, x_T: torch.Tensor, sigmas: torch.Tensor, skips,
                        solver: str = "heun", reference: torch.Tensor | None = None,
                        quality: Callable | None = None, progress: bool = False) -> list[dict]:
    """Quality vs NFE saved: for each ``skip`` run :func:`teleport` from the same x_T.

    Each row: skip, sigma_skip, nfe, nfe_saved (vs skip 0), rmse_to_full (root mean squared
    difference per pixel to the skip-0 samples, or to ``reference``) and, if given,
    ``quality(x0)`` (e.g. nearest-neighbour distance to the training set).
    """
    skips = sorted(set(int(s) for s in skips) | {0})
    rows, full = [], None
    it = skips
    if progress:
        from tqdm.auto import tqdm
        it = tqdm(skips, desc="teleportation")
    for s in it:
        x0, nfe = teleport(denoiser, gauss, x_T, sigmas, s, solver=solver)
        if s == 0:
            full, nfe0 = x0, nfe
        ref = reference if reference is not None else full
        row = dict(skip=s, sigma_skip=float(sigmas[s]), nfe=nfe, nfe_saved=nfe0 - nfe,
                   rmse_to_full=float(((x0 - ref) ** 2).mean().sqrt()))
        if quality is not None:
            row["quality"] = float(quality(x0))
        rows.append(row)
    return rows


# ------------------------------------------------------------------------------ receptive fields
def receptive_field(gauss, sigma: float, pixels) -> torch.Tensor:
    """Rows e_i^T Sigma (Sigma + sigma^2 I)^-1 of the Jacobian for flat pixel indices ``pixels``,
    returned image-shaped (P, C, H, W)."""
    _positive("sigma", sigma)
    idx = torch.as_tensor(pixels, dtype=torch.long).reshape(-1)
    if bool(((idx < 0) | (idx >= gauss.d)).any()):
        raise ValueError(f"pixels must be flat indices in [0, {gauss.d}), got {idx.tolist()!r}")
    U = gauss.U
    rows = (U[idx] * gauss.shrinkage(float(sigma))) @ U.T
    return rows.reshape(len(idx), *gauss.shape)


def rf_radius(rf: torch.Tensor, center, circular: bool = False) -> torch.Tensor:
    """RMS radius of a receptive field: sqrt(sum_j rf_j^2 |p_j - p_center|^2 / sum_j rf_j^2).

    ``rf`` is (..., H, W) (channels summed in squares beforehand by the caller) or (..., N) for 1-D,
    ``center`` the pixel index tuple (row, col) or int. ``circular`` measures wrap-around distances.
    """
    if rf.ndim >= 2 and isinstance(center, (tuple, list)):
        H, W = rf.shape[-2:]
        r = torch.arange(H, dtype=rf.dtype, device=rf.device)[:, None] - center[0]
        c = torch.arange(W, dtype=rf.dtype, device=rf.device)[None, :] - center[1]
        if circular:
            r, c = torch.remainder(r + H / 2, H) - H / 2, torch.remainder(c + W / 2, W) - W / 2
        d2 = r**2 + c**2
        w = rf**2
        return (torch.sqrt((w * d2).sum((-1, -2)) / w.sum((-1, -2))))
    N = rf.shape[-1]
    k = torch.arange(N, dtype=rf.dtype, device=rf.device) - int(center)
    if circular:
        k = torch.remainder(k + N / 2, N) - N / 2
    w = rf**2
    return torch.sqrt((w * k**2).sum(-1) / w.sum(-1))


def power_law_eigenvalues(N: int, A: float, lam0: float, dtype=torch.float64) -> torch.Tensor:
    """Eigenvalues of the 1-D circulant covariance: lam_0 and lam_m = lam_{N-m} = A / m^2."""
    if not isinstance(N, int) or N < 2:
        raise ValueError(f"N must be an int >= 2, got {N!r}")
    _positive("A", A)
    _positive("lam0", lam0)
    m = torch.arange(N, dtype=dtype)
    mm = torch.minimum(m, N - m)
    lam = A / mm.clamp_min(1) ** 2
    lam[0] = lam0
    return lam


def circulant_rf(lam: torch.Tensor, sigma: float) -> torch.Tensor:
    """Exact RF of a circulant covariance with Fourier eigenvalues ``lam`` (N,) at pixel 0:
    RF[k] = (1/N) sum_m lam_m/(lam_m + sigma^2) e^{2 pi i m k / N}, k = 0..N-1 (inverse DFT)."""
    _positive("sigma", sigma)
    return torch.fft.ifft((lam / (lam + sigma**2)).to(torch.complex128)).real.to(lam.dtype)


def power_law_rf(N: int, A: float, lam0: float, sigma: float, k=None) -> torch.Tensor:
    """Closed-form 1-D power-law RF (slides; derivation in Chapter 2, Sec. "Receptive fields"):

        RF[k] = (1/N) [ -sigma^2/(sigma^2 + lam0) + (pi c / sinh(pi c)) cosh(pi c (1 - |k|/(N/2))) ],
        c = sqrt(A)/sigma,  k in [-N/2, N/2],

    from sum_{m>=1} cos(m x)/(m^2 + c^2) = pi cosh(c(pi - x))/(2c sinh(pi c)) - 1/(2c^2), 0 <= x <= 2 pi,
    with A/m^2/(A/m^2 + sigma^2) = c^2/(m^2 + c^2). It sums over ALL integer frequencies, so it differs
    from the exact finite-N :func:`circulant_rf` by the aliased tail |m| > N/2, at most ~4 c^2 / N^2.
    Default ``k``: 0..N-1 (circular index, same layout as :func:`circulant_rf`).
    """
    _positive("sigma", sigma)
    _positive("A", A)
    k = torch.arange(N, dtype=torch.float64) if k is None else torch.as_tensor(k, dtype=torch.float64)
    kk = torch.remainder(k + N / 2, N) - N / 2          # signed offset in [-N/2, N/2)
    c = math.sqrt(A) / sigma
    u = 1 - kk.abs() / (N / 2)
    pc = math.pi * c
    if pc > 300:  # cosh(pc u)/sinh(pc) overflows: use exp(pc (u - 1)) (1 + e^{-2 pc u}) / (1 - e^{-2 pc})
        ratio = torch.exp(pc * (u - 1)) * (1 + torch.exp(-2 * pc * u)) / (1 - math.exp(-2 * pc))
    else:
        ratio = torch.cosh(pc * u) / math.sinh(pc)
    return (-sigma**2 / (sigma**2 + lam0) + pc * ratio) / N


# ------------------------------------------------------------------------------ score comparison
def score_fse_over_sigma(reference: Callable, other: Callable, x0: torch.Tensor, sigmas,
                         generator: torch.Generator | None = None, progress: bool = False) -> torch.Tensor:
    """Fraction of squared error E_x[|s_other - s_ref|^2 / |s_ref|^2] of the scores at x = x0 + sigma z.

    The same noise z is used for both denoisers at each sigma. Returns (S, B): one value per test
    point and sigma (average over dim 1 for the slides' metric). Scores are (D(x) - x)/sigma^2, so
    the ratio equals |D_o - D_r|^2 / |D_r - x|^2: compare scores, not denoisers (at small sigma any
    denoiser is close to x, which would hide the difference).
    """
    from .metrics import fraction_squared_error

    x0 = check_images(x0, "x0")
    out = []
    it = [float(s) for s in torch.as_tensor(sigmas).reshape(-1)]
    if progress:
        from tqdm.auto import tqdm
        it = tqdm(it, desc="sigma")
    for s in it:
        _positive("sigma", s)
        z = torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device)
        x = x0 + s * z
        s_ref = (reference(x, s) - x) / s**2
        s_oth = (other(x, s) - x) / s**2
        out.append(fraction_squared_error(s_oth, s_ref))
    return torch.stack(out)


# ------------------------------------------------------------------------------ corrections (issue 18)
def xi_crossing_sigma2(lam, sigma_T: float | None = None, level: float = 0.5) -> torch.Tensor:
    """The noise variance sigma^2 at which the normalised coefficient xi(sigma, lam) sigma_T / sqrt(lam)
    equals ``level`` (Chapter 2, Sec. "Generation follows variance order").

    xi sigma_T / sqrt(lam) = sqrt(lam / (lam + sigma^2)) * sigma_T / sqrt(sigma_T^2 + lam), so it equals
    ``level`` at sigma^2 = lam (sigma_T^2 / (level^2 (sigma_T^2 + lam)) - 1); for sigma_T -> infinity
    (``sigma_T=None``) this is lam (1/level^2 - 1), i.e. **3 lam** at level 1/2 (not lam/3).
    """
    if not 0 < float(level) < 1:
        raise ValueError(f"level must lie in (0, 1), got {level!r}")
    lam = torch.as_tensor(lam, dtype=torch.float64)
    if bool((lam <= 0).any()):
        raise ValueError(f"lam must be > 0, got min {lam.min().item()!r}")
    if sigma_T is None:
        return lam * (1 / level**2 - 1)
    sT2 = _positive("sigma_T", sigma_T) ** 2
    out = lam * (sT2 / (level**2 * (sT2 + lam)) - 1)
    if bool((out < 0).any()):
        raise ValueError(f"level {level} is above the coefficient's value at sigma = 0 for some lam")
    return out


def xi_crossing_bisect(lam, sigma_T: float, level: float = 0.5, n_iter: int = 200) -> torch.Tensor:
    """sigma^2 where xi(sigma, lam) sigma_T / sqrt(lam) = ``level``, found by bisection in log sigma on the
    curve itself (an independent check of :func:`xi_crossing_sigma2`; the curve decreases in sigma)."""
    lam = torch.as_tensor(lam, dtype=torch.float64).reshape(-1)
    sigma_T = _positive("sigma_T", sigma_T)
    f = lambda s: xi(s, lam, sigma_T) * sigma_T / lam.sqrt() - level
    lo, hi = torch.full_like(lam, 1e-12), torch.full_like(lam, 1e6 * sigma_T)
    if bool((f(lo) < 0).any()) or bool((f(hi) > 0).any()):
        raise ValueError(f"level {level} is not crossed for some lam in (1e-12, 1e6 sigma_T)")
    for _ in range(n_iter):
        mid = (lo * hi).sqrt()
        above = f(mid) > 0
        lo, hi = torch.where(above, mid, lo), torch.where(above, hi, mid)
    return (lo * hi)


def score_fse_at(reference: Callable, other: Callable, x: torch.Tensor, sigmas) -> torch.Tensor:
    """Fraction of squared error |s_other - s_ref|^2 / |s_ref|^2 of the scores at FIXED points ``x``
    (B, C, H, W), for each sigma: (S, B). Compare :func:`score_fse_over_sigma`, whose points
    x0 + sigma z move away with sigma (Chapter 2, the far-field check)."""
    from .metrics import fraction_squared_error

    x = check_images(x, "x")
    out = []
    for s in torch.as_tensor(sigmas).reshape(-1).tolist():
        _positive("sigma", s)
        out.append(fraction_squared_error((other(x, s) - x) / s**2, (reference(x, s) - x) / s**2))
    return torch.stack(out)


def loglog_slope(x, y) -> float:
    """Least-squares slope of log y against log x (the exponent p of y ~ C x^p)."""
    lx = torch.log(torch.as_tensor(x, dtype=torch.float64).reshape(-1))
    ly = torch.log(torch.as_tensor(y, dtype=torch.float64).reshape(-1))
    if lx.numel() < 2 or lx.numel() != ly.numel() or not bool(torch.isfinite(lx).all() & torch.isfinite(ly).all()):
        raise ValueError(f"x and y must hold >= 2 positive finite values of equal length, got {lx.numel()}, {ly.numel()}")
    lx, ly = lx - lx.mean(), ly - ly.mean()
    return float((lx * ly).sum() / (lx * lx).sum())
