"""Random-matrix theory of the empirical Wiener denoiser and sampler (Chapter 3).

A training set of n i.i.d. samples of a population with mean mu and covariance
Sigma = U diag(s) U^T gives an empirical covariance Sigma_hat; the Wiener denoiser and the
closed-form sampler built from it are random through Sigma_hat. Deterministic equivalents
(Atanasov, Zavatone-Veth & Pehlevan 2024; Wang, Zavatone-Veth & Pehlevan 2026) replace
averages over the draw of the training set by population formulas at a renormalised ridge kappa.

Everything here works in the *population eigenbasis*: a vector a in R^d is passed as its
coordinates a^T U (shape (..., d)), so every matrix below is diagonal, diag(f(s)). Float64 throughout.

Notation (Chapter 3, Sec. "Theory"), with gamma = d / n and tr = Tr / d:

- Silverstein:  kappa - lam = gamma kappa tr[Sigma (Sigma + kappa I)^-1]  <=>  lam = kappa (1 - df1(kappa)/n)
- df1(kappa) = Tr[Sigma (Sigma + kappa)^-1],  df2(kappa, kappa') = Tr[Sigma^2 (Sigma + kappa)^-1 (Sigma + kappa')^-1]
- diamond(a, b; kappa, kappa') = a^T Sigma (Sigma + kappa)^-1 (Sigma + kappa')^-1 b
- 1-point DE:  E[Sigma_hat (Sigma_hat + sigma^2)^-1] ~ Sigma (Sigma + kappa(sigma^2))^-1
- 2-point DE:  Var[v^T Sigma_hat (Sigma_hat + sigma^2)^-1 w]
                 ~ kappa^2 / (n - df2(kappa)) [diamond(v, v) diamond(w, w) + diamond(v, w)^2]
  The slides' Eq. (6) has only the first product; the second ("real-Gaussian") term is what the
  fourth moment of real Gaussian data adds (Var[a^T Sigma_hat b] = (a^T Sigma a b^T Sigma b +
  (a^T Sigma b)^2)/n). It is negligible for generic v, w but doubles the variance for v = w = u_k.
  ``real=False`` gives the slides' formula.
- Fractional DE: Sigma_hat^(1/2) = (2/pi) int_0^inf Sigma_hat (Sigma_hat + u^2)^-1 du
                 ~ (2/pi) int_0^inf Sigma (Sigma + kappa(u^2))^-1 du
  and the same 2-point DE under a double integral gives the generation map's fluctuation.

Admissible branch of the Silverstein equation (derived in the chapter): g(kappa) = kappa (1 - df1(kappa)/n)
has g(0) = 0, g'(kappa) = 1 - df2(kappa)/n and g'' = (2/n) sum_k s_k^2/(s_k + kappa)^3 > 0, so g is
convex; for lam > 0 the equation g(kappa) = lam has exactly one positive root, it lies in
[lam, lam + Tr Sigma / n], and there g' > 0, i.e. n - df2(kappa) > 0 (the 2-point denominator is
positive). For lam = 0 the root is kappa = 0 when rank(Sigma) <= n, and otherwise the positive
root of df1(kappa) = n (the other root, 0, is not the limit lam -> 0+). Newton's iteration started
at the upper end of the bracket decreases monotonically to it (convexity), with a bisection safeguard.
"""
from __future__ import annotations

import math

import torch

from .validate import as_float

__all__ = ["spectrum", "df1", "df2", "diamond", "silverstein_kappa", "marchenko_pastur_kappa", "marchenko_pastur_density",
           "trace_de", "one_point_filter", "one_point_denoiser", "two_point_variance",
           "half_line_quadrature", "sqrt_de_factors", "generation_mean",
           "generation_variance", "split_distance_theory"]

_F64 = torch.float64


# ----------------------------------------------------------------------------- validation
def spectrum(eigenvalues) -> torch.Tensor:
    """Validate a population spectrum: 1-D, finite, >= 0, at least one > 0; returned as float64."""
    s = torch.as_tensor(eigenvalues)
    if s.ndim != 1 or s.numel() == 0:
        raise ValueError(f"eigenvalues must be a non-empty 1-D tensor (d,), got shape {tuple(s.shape)}")
    s = s.to(_F64)
    if not bool(torch.isfinite(s).all()) or bool((s < 0).any()) or not bool((s > 0).any()):
        raise ValueError(f"eigenvalues must be finite, >= 0 and not all 0; got min {s.min().item()!r}, "
                         f"max {s.max().item()!r}")
    return s


def _check_n(n) -> float:
    return as_float(n, "n (number of training samples)", positive=True)


def _kappa(kappa, s) -> torch.Tensor:
    k = torch.as_tensor(kappa, dtype=_F64, device=s.device)
    if not bool(torch.isfinite(k).all()) or bool((k < 0).any()):
        raise ValueError(f"kappa must be finite and >= 0, got {k.reshape(-1)[:5].tolist()!r}")
    return k


# ----------------------------------------------------------------------------- degrees of freedom
def df1(kappa, eigenvalues) -> torch.Tensor:
    """df1(kappa) = Tr[Sigma (Sigma + kappa I)^-1] = sum_k s_k / (s_k + kappa), shape of ``kappa``."""
    s = spectrum(eigenvalues)
    k = _kappa(kappa, s)
    return (s / (s + k[..., None])).sum(-1)


def df2(kappa, eigenvalues, kappa2=None) -> torch.Tensor:
    """df2(kappa, kappa') = Tr[Sigma^2 (Sigma + kappa)^-1 (Sigma + kappa')^-1] (kappa' = kappa if omitted);
    ``kappa`` and ``kappa2`` broadcast against each other."""
    s = spectrum(eigenvalues)
    k = _kappa(kappa, s)
    k2 = k if kappa2 is None else _kappa(kappa2, s)
    return (s * s / ((s + k[..., None]) * (s + k2[..., None]))).sum(-1)


def diamond(a, eigenvalues, kappa, kappa2=None, b=None) -> torch.Tensor:
    """diamond(a, b; kappa, kappa') = a^T Sigma (Sigma + kappa)^-1 (Sigma + kappa')^-1 b in eigen-coordinates.

    ``a``, ``b``: (..., d) coordinates; ``kappa``, ``kappa2``: scalars or tensors broadcasting with
    the leading dims of a. With b = a and kappa' = kappa this is the slides' anisotropy /
    inhomogeneity factor a^T (Sigma + kappa)^-2 Sigma a.
    """
    s = spectrum(eigenvalues)
    a = torch.as_tensor(a, dtype=_F64, device=s.device)
    b = a if b is None else torch.as_tensor(b, dtype=_F64, device=s.device)
    for nm, t in (("a", a), ("b", b)):
        if t.ndim == 0 or t.shape[-1] != s.numel():
            raise ValueError(f"{nm} has {t.shape[-1] if t.ndim else 0} coordinates (shape {tuple(t.shape)}) but the "
                             f"spectrum has d = {s.numel()}: pass eigen-coordinates of shape (..., {s.numel()})")
    k = _kappa(kappa, s)
    k2 = k if kappa2 is None else _kappa(kappa2, s)
    m = s / ((s + k[..., None]) * (s + k2[..., None]))
    return (a * m * b).sum(-1)


# ----------------------------------------------------------------------------- Silverstein
def _silverstein_newton(lam_f, s, n, rtol, max_iter):
    """Safeguarded Newton for a 1-D chunk of ridges (see :func:`silverstein_kappa`)."""
    rank = int((s > 0).sum())
    s2 = s * s
    tiny, eps = torch.finfo(_F64).tiny, torch.finfo(_F64).eps
    kappa = lam_f + s.sum() / n                          # upper end of the bracket: Newton descends from here
    kappa = torch.where((lam_f == 0) & (rank <= n), torch.zeros_like(kappa), kappa)   # kappa(0) = 0 exactly
    act = torch.nonzero(kappa > 0).reshape(-1)           # entries still iterating (active set)
    lam_a, k, lo, hi = lam_f[act], kappa[act], lam_f[act].clone(), kappa[act].clone()
    for _ in range(max_iter):
        if act.numel() == 0:
            break
        inv = 1.0 / (s + k[:, None])                      # (L_active, d)
        h = k * (1 - (inv @ s) / n) - lam_a              # g(kappa) - lam, convex increasing past the root
        dh = 1 - ((inv * inv) @ s2) / n                  # g'(kappa) = 1 - df2(kappa)/n
        above = h >= 0
        hi = torch.where(above, k, hi)
        lo = torch.where(above, lo, k)
        newton = k - h / torch.where(dh > 0, dh, torch.ones_like(dh))
        ok = (dh > 0) & (newton >= lo) & (newton <= hi)
        new = torch.where(ok, newton, 0.5 * (lo + hi))
        done = ((new - k).abs() <= rtol * new.abs() + tiny) | (hi - lo <= 8 * eps * hi)   # rounding level
        kappa[act] = new
        keep = ~done
        act, lam_a, k, lo, hi = act[keep], lam_a[keep], new[keep], lo[keep], hi[keep]
    else:
        if act.numel():
            raise RuntimeError(f"silverstein_kappa did not converge in {max_iter} iterations")
    return kappa


def silverstein_kappa(lam, eigenvalues, n, *, rtol: float = 1e-14, max_iter: int = 200) -> torch.Tensor:
    """Renormalised ridge kappa(lam): the admissible root of kappa - lam = gamma kappa tr[Sigma (Sigma + kappa)^-1].

    Parameters
    ----------
    lam : float or tensor of ridges >= 0 (for the denoiser lam = sigma^2); any shape.
    eigenvalues : (d,) population spectrum of Sigma (>= 0).
    n : number of training samples (gamma = d / n).

    Returns kappa (float64, shape of ``lam``), kappa >= lam. Vectorised safeguarded Newton from the
    upper bracket end lam + Tr(Sigma)/n (see the module docstring for the branch and bracket).
    """
    s = spectrum(eigenvalues)
    n = _check_n(n)
    lam_t = torch.as_tensor(lam, dtype=_F64, device=s.device)
    if not bool(torch.isfinite(lam_t).all()) or bool((lam_t < 0).any()):
        raise ValueError(f"lam must be finite and >= 0, got {lam_t.reshape(-1)[:5].tolist()!r}")
    lam_f = lam_t.reshape(-1)
    kappa = torch.cat([_silverstein_newton(chunk, s, n, rtol, max_iter) for chunk in lam_f.split(256)]) \
        if lam_f.numel() else lam_f.clone()   # chunks of 256 ridges keep the (L, d) work in cache (3x faster)
    return kappa.reshape(lam_t.shape)


def marchenko_pastur_kappa(lam, gamma) -> torch.Tensor:
    """Closed form for Sigma = I (Marchenko-Pastur): kappa^2 + (1 - gamma - lam) kappa - lam = 0, positive root

        kappa = [lam + gamma - 1 + sqrt((1 - gamma - lam)^2 + 4 lam)] / 2   (kappa(0) = max(0, gamma - 1)).
    """
    lam = torch.as_tensor(lam, dtype=_F64)
    if not bool(torch.isfinite(lam).all()) or bool((lam < 0).any()):
        raise ValueError(f"lam must be finite and >= 0, got {lam.reshape(-1)[:5].tolist()!r}")
    if not (math.isfinite(gamma) and gamma > 0):
        raise ValueError(f"gamma must be a finite number > 0, got {gamma!r}")
    b = 1 - gamma - lam
    return 0.5 * (-b + torch.sqrt(b * b + 4 * lam))


def marchenko_pastur_density(x, gamma) -> torch.Tensor:
    """Density of the eigenvalues of Sigma_hat = X^T X / n for X (n, d) with i.i.d. N(0, 1) entries, d/n -> gamma
    (Chapter 3, "Why kappa > lambda"): sqrt((b - x)(x - a)) / (2 pi gamma x) on [a, b] = [(1 -+ sqrt(gamma))^2],
    0 elsewhere. For gamma > 1 a further mass 1 - 1/gamma sits at x = 0 (not included)."""
    if not (math.isfinite(gamma) and gamma > 0):
        raise ValueError(f"gamma must be a finite number > 0, got {gamma!r}")
    x = torch.as_tensor(x, dtype=_F64)
    a, b = (1 - math.sqrt(gamma)) ** 2, (1 + math.sqrt(gamma)) ** 2
    inside = (x > a) & (x < b)
    xs = torch.where(inside, x, torch.full_like(x, 0.5 * (a + b)))
    return torch.where(inside, torch.sqrt((b - xs) * (xs - a)) / (2 * math.pi * gamma * xs), torch.zeros_like(x))


# ----------------------------------------------------------------------------- denoiser DEs
def trace_de(lam, eigenvalues, n) -> torch.Tensor:
    """Deterministic equivalent of tr[Sigma_hat (Sigma_hat + lam)^-1]: tr[Sigma (Sigma + kappa(lam))^-1] = df1/d."""
    s = spectrum(eigenvalues)
    return df1(silverstein_kappa(lam, s, n), s) / s.numel()


def one_point_filter(sigma, eigenvalues, n) -> torch.Tensor:
    """Per-PC factors s_k / (s_k + kappa(sigma^2)) of E[Sigma_hat (Sigma_hat + sigma^2)^-1] ~ Sigma (Sigma + kappa)^-1.

    Shape (..., d) for ``sigma`` of shape (...). Compare with the population Wiener factors
    s_k / (s_k + sigma^2): kappa > sigma^2 over-shrinks, most strongly where s_k is small.
    """
    s = spectrum(eigenvalues)
    sig = torch.as_tensor(sigma, dtype=_F64, device=s.device)
    if not bool(torch.isfinite(sig).all()) or bool((sig <= 0).any()):
        raise ValueError(f"sigma must be finite and > 0, got {sig.reshape(-1)[:5].tolist()!r}")
    kappa = silverstein_kappa(sig * sig, s, n)
    return s / (s + kappa[..., None])


def one_point_denoiser(w, sigma: float, eigenvalues, n) -> torch.Tensor:
    """E over training sets of D_Sigma_hat(x; sigma) - mu ~ Sigma (Sigma + kappa(sigma^2))^-1 (x - mu).

    ``w``: (..., d) eigen-coordinates of x - mu. Returns the same shape (coordinates).
    """
    s = spectrum(eigenvalues)
    w = torch.as_tensor(w, dtype=_F64, device=s.device)
    return w * one_point_filter(sigma, s, n)


def two_point_variance(v, w, sigma: float, eigenvalues, n, real: bool = True) -> torch.Tensor:
    """Var over training sets of v^T D_Sigma_hat(x; sigma) (2-point DE, slides' Eq. 6 plus the real term):

        kappa^2 / (n - df2(kappa)) [diamond(v; kappa) diamond(x - mu; kappa) + real * diamond(v, x - mu; kappa)^2]

    with kappa = kappa(sigma^2). ``v``, ``w`` (eigen-coordinates of v and x - mu) broadcast: (..., d).
    """
    s = spectrum(eigenvalues)
    sig = float(sigma)
    if not (math.isfinite(sig) and sig > 0):
        raise ValueError(f"sigma must be a finite number > 0, got {sigma!r}")
    for nm, t in (("v", v), ("w", w)):
        t = torch.as_tensor(t)
        if t.ndim == 0 or t.shape[-1] != s.numel():
            raise ValueError(f"{nm} has {t.shape[-1] if t.ndim else 0} coordinates (shape {tuple(t.shape)}) but "
                             f"eigenvalues has d = {s.numel()}: pass eigen-coordinates of shape (..., {s.numel()})")
    kappa = silverstein_kappa(sig * sig, s, n)
    pre = kappa**2 / (_check_n(n) - df2(kappa, s))
    out = diamond(v, s, kappa) * diamond(w, s, kappa)
    if real:
        out = out + diamond(v, s, kappa, b=w) ** 2
    return pre * out


# ----------------------------------------------------------------------------- quadrature
def half_line_quadrature(n_nodes: int = 161, scale: float = 1.0, t_max: float = 4.0, dtype=_F64, device=None):
    """Nodes u_j and weights w_j with sum_j w_j f(u_j) ~ int_0^inf f(u) du (exp-sinh rule).

    u = scale * exp((pi/2) sinh t), trapezoid rule in t on [-t_max, t_max]; the integrand then decays
    double-exponentially at both ends for f ~ const at 0 and f ~ u^-2 at infinity, and the rule
    converges geometrically. t_max = 4 covers u / scale in [1e-19, 4e18].
    """
    if not isinstance(n_nodes, int) or n_nodes < 3:
        raise ValueError(f"n_nodes must be an int >= 3, got {n_nodes!r}")
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be a finite number > 0, got {scale!r}")
    t = torch.linspace(-t_max, t_max, n_nodes, dtype=dtype, device=device)
    h = 2 * t_max / (n_nodes - 1)
    e = (math.pi / 2) * torch.sinh(t)
    u = scale * torch.exp(e)
    w = h * u * (math.pi / 2) * torch.cosh(t)
    return u, w


def _nodes(s, n_nodes):
    pos = s[s > 0]
    scale = math.sqrt(math.sqrt(pos.min().item() * pos.max().item()))
    return half_line_quadrature(n_nodes, scale=scale, device=s.device)


def sqrt_de_factors(eigenvalues, n, n_nodes: int = 161) -> torch.Tensor:
    """Per-PC factors of the fractional DE E[Sigma_hat^(1/2)] ~ (2/pi) int_0^inf Sigma (Sigma + kappa(u^2))^-1 du.

    Returns (d,) g_k = (2/pi) int_0^inf s_k / (s_k + kappa(u^2)) du (g_k = sqrt(s_k) when n -> inf).
    """
    s = spectrum(eigenvalues)
    u, wq = _nodes(s, n_nodes)
    kappa = silverstein_kappa(u * u, s, n)                            # (N,)
    return (2 / math.pi) * (wq[:, None] * s / (s + kappa[:, None])).sum(0)


def generation_mean(xbar, eigenvalues, n, n_nodes: int = 161) -> torch.Tensor:
    """E[Sigma_hat^(1/2) xbar] (eigen-coordinates) for the generation map x_0 ~ mu + Sigma_hat^(1/2) xbar,
    xbar = (x_T - mu)/sigma_T: the fractional DE applied to ``xbar`` (..., d)."""
    s = spectrum(eigenvalues)
    return torch.as_tensor(xbar, dtype=_F64, device=s.device) * sqrt_de_factors(s, n, n_nodes)


def generation_variance(eigenvalues, n, xbar=None, n_nodes: int = 121, real: bool = True,
                        chunk: int = 16) -> torch.Tensor:
    """Per-PC variance over training sets of u_k^T Sigma_hat^(1/2) xbar (the slides' double integral):

        Var_k(xbar) = (4/pi^2) int int kappa kappa' / (n - df2(kappa, kappa'))
                      [m_k sum_j m_j xbar_j^2 + real * m_k^2 xbar_k^2] du du',
        m_j = s_j / ((s_j + kappa)(s_j + kappa')),  kappa = kappa(u^2), kappa' = kappa(u'^2).

    ``xbar``: (B, d) eigen-coordinates of the seeds; ``None`` averages over xbar ~ N(0, I)
    (xbar_j^2 -> 1), returning (1, d). Returns (B, d); sum over k is the seed's total variance.
    """
    s = spectrum(eigenvalues)
    nn = _check_n(n)
    c2 = (torch.ones(1, s.numel(), dtype=_F64, device=s.device) if xbar is None
          else torch.as_tensor(xbar, dtype=_F64, device=s.device).reshape(-1, s.numel()) ** 2)
    u, wq = _nodes(s, n_nodes)
    kappa = silverstein_kappa(u * u, s, nn)
    inv = 1.0 / (s + kappa[:, None])                                  # (N, d)
    out = torch.zeros_like(c2)
    for i in range(0, len(u), chunk):
        ki, wi, invi = kappa[i:i + chunk], wq[i:i + chunk], inv[i:i + chunk]
        m = s * invi[:, None, :] * inv[None, :, :]                    # (c, N, d)
        dfm = (s * m).sum(-1)                                         # df2(kappa_i, kappa_j)
        pre = wi[:, None] * wq[None, :] * ki[:, None] * kappa[None, :] / (nn - dfm)   # (c, N)
        t = torch.einsum("cnd,bd->cnb", m, c2)                        # sum_j m_j xbar_j^2
        out = out + torch.einsum("cn,cnd,cnb->bd", pre, m, t)
        if real:
            out = out + torch.einsum("cn,cnd->d", pre, m * m) * c2
    return (4 / math.pi**2) * out


def split_distance_theory(eigenvalues, n, *, empirical_mean: bool = True, n_nodes: int = 121) -> torch.Tensor:
    """Expected squared distance E||x^(1) - x^(2)||^2 between the samples of two independent training
    splits of size n from the same seed, averaged over seeds (generation map with sigma_T -> inf):

        2 [ sum_k Var_k + Tr(Sigma)/n * empirical_mean ]

    The second term is the fluctuation of mu_hat (Var mu_hat = Sigma/n); with empirical centring the
    covariance has n - 1 degrees of freedom, so the variance term uses n - 1 (Chapter 3, "choices").
    For two *disjoint* subsets of a finite pool the finite-population corrections cancel in the difference.
    """
    s = spectrum(eigenvalues)
    nn = _check_n(n)
    n_cov = nn - 1 if empirical_mean else nn
    var = generation_variance(s, n_cov, None, n_nodes=n_nodes).sum()
    return 2 * (var + (s.sum() / nn if empirical_mean else 0.0))
