"""Spectral bias in the learning dynamics of a linear denoiser (Chapter 2, Sec. "Learning follows variance order").

A linear denoiser D(x) = W x + b at one noise level sigma, trained on the denoising loss

    L_sigma(W, b) = E_{x0, z} |W (x0 + sigma z) + b - x0|^2
                  = E_{x0} |(W - I) x0 + b|^2 + sigma^2 |W|_F^2        (z averaged in closed form),

has gradients (Wang & Pehlevan 2025, Eq. 5)

    grad_W = -2 Sigma + 2 W (Sigma + sigma^2 I) + grad_b mu^T,   grad_b = 2 (b - (I - W) mu),

i.e. with Theta = [W b] (d x (d+1)), M = E[(x;1)(x;1)^T] = [[Sigma + mu mu^T + sigma^2 I, mu], [mu^T, 1]]
and C = [Sigma + mu mu^T, mu]:  grad = 2 (Theta M - C). Hence, with Theta* = C M^-1 (the Wiener filter),

    gradient flow  dTheta/dtau = -eta grad:  Theta(tau) = Theta* + (Theta(0) - Theta*) exp(-2 eta tau M),
    gradient descent with step eta:          Theta_n   = Theta* + (Theta_0 - Theta*) (I - 2 eta M)^n.

For centred data (mu = 0) M is block diagonal and each principal component k relaxes on its own:
W_kk(tau) = w*_k + (Q_k - w*_k) exp(-2 eta tau (sigma^2 + lam_k)), w*_k = lam_k/(lam_k + sigma^2)
(aligned initialisation W(0) = sum_k Q_k u_k u_k^T). Training every sigma this way and sampling with
the PF-ODE gives a Gaussian whose variance along u_k is (Prop. 4.2)

    lam~_k(tau) = sigma_T^2 Phi_k(sigma_0)^2 / Phi_k(sigma_T)^2,
    Phi_k(s) = sqrt(lam_k + s^2) exp[(1 - Q_k)/2 Ei(-2 eta tau s^2) e^{-2 eta tau lam_k} - Ei(-2 eta tau (s^2 + lam_k))/2].

A mode "emerges" when lam~_k crosses the geometric mean of its start and end values; the emergence
time falls as a power of lam_k (spectral bias).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .validate import int_like

__all__ = ["moment_matrices", "gd_closed_form", "flow_closed_form", "mode_learning_curves",
           "train_linear_denoiser", "generated_mode_variance", "generated_mode_variance_numeric",
           "emergence_times", "fit_power_law"]


def _X(images: torch.Tensor) -> torch.Tensor:
    if not isinstance(images, torch.Tensor) or images.ndim < 2 or not images.is_floating_point():
        raise ValueError(f"images must be a floating tensor of shape (N, ...) , got {getattr(images, 'shape', images)}")
    return images.reshape(images.shape[0], -1)


def moment_matrices(mean: torch.Tensor, Sigma: torch.Tensor, sigma: float):
    """M ((d+1) x (d+1)) and C (d x (d+1)) of the module doc, so that grad_Theta L = 2 (Theta M - C)."""
    if not float(sigma) > 0:
        raise ValueError(f"sigma must be > 0, got {sigma!r}")
    d = mean.numel()
    S2 = Sigma + torch.outer(mean, mean)
    M = torch.empty(d + 1, d + 1, dtype=Sigma.dtype, device=Sigma.device)
    M[:d, :d] = S2 + sigma**2 * torch.eye(d, dtype=Sigma.dtype, device=Sigma.device)
    M[:d, d] = M[d, :d] = mean
    M[d, d] = 1.0
    C = torch.cat([S2, mean[:, None]], 1)
    return M, C


def gd_closed_form(mean, Sigma, sigma: float, eta: float, steps, W0, b0):
    """Gradient descent iterates (W_n, b_n) for each n in ``steps``: Theta* + (Theta_0 - Theta*)(I - 2 eta M)^n.

    Returns W (S, d, d) and b (S, d). Stable iff eta < 1 / lam_max(M).
    """
    M, C = moment_matrices(mean, Sigma, sigma)
    ev, V = torch.linalg.eigh(M)
    Th_star = torch.linalg.solve(M, C.T).T
    Th0 = torch.cat([W0, b0[:, None]], 1)
    n = torch.as_tensor(steps, dtype=M.dtype).reshape(-1)
    decay = (1 - 2 * eta * ev)[None, :] ** n[:, None]                   # (S, d+1)
    Th = Th_star + torch.einsum("ij,jk,sk,lk->sil", Th0 - Th_star, V, decay, V)
    return Th[:, :, :-1], Th[:, :, -1]


def flow_closed_form(mean, Sigma, sigma: float, eta: float, taus, W0, b0):
    """Gradient flow (W(tau), b(tau)) = Theta* + (Theta(0) - Theta*) exp(-2 eta tau M), for each tau."""
    M, C = moment_matrices(mean, Sigma, sigma)
    ev, V = torch.linalg.eigh(M)
    Th_star = torch.linalg.solve(M, C.T).T
    Th0 = torch.cat([W0, b0[:, None]], 1)
    t = torch.as_tensor(taus, dtype=M.dtype).reshape(-1)
    decay = torch.exp(-2 * eta * t[:, None] * ev[None, :])
    Th = Th_star + torch.einsum("ij,jk,sk,lk->sil", Th0 - Th_star, V, decay, V)
    return Th[:, :, :-1], Th[:, :, -1]


def mode_learning_curves(lam, sigma: float, eta: float, taus, Q=0.0) -> torch.Tensor:
    """Per-eigenmode weights W_kk(tau) = w* + (Q - w*) exp(-2 eta tau (sigma^2 + lam)), w* = lam/(lam+sigma^2).

    Centred data, aligned init W(0) = sum_k Q_k u_k u_k^T. Returns (T, K)."""
    lam = torch.as_tensor(lam, dtype=torch.float64)
    t = torch.as_tensor(taus, dtype=torch.float64).reshape(-1, 1)
    w_star = lam / (lam + sigma**2)
    return w_star + (torch.as_tensor(Q, dtype=torch.float64) - w_star) * torch.exp(-2 * eta * t * (sigma**2 + lam))


def train_linear_denoiser(images: torch.Tensor, sigma: float, eta: float, steps: int, W0=None, b0=None,
                          record_every: int = 1, noise_draws: int | None = None,
                          generator: torch.Generator | None = None):
    """Train W x + b by plain gradient descent (torch autograd) on the denoising loss over ``images``.

    ``noise_draws=None``: the loss mean_i |(W - I) x_i + b|^2 + sigma^2 |W|_F^2 (noise averaged exactly),
    so the iterates equal :func:`gd_closed_form` with the empirical moments (``correction=0``).
    ``noise_draws=k``: k fresh noise draws per image per step (stochastic; matches in expectation).
    Returns (recorded steps (S,), W (S, d, d), b (S, d)).
    """
    X = _X(images)
    N, d = X.shape
    steps = int_like(steps)
    if not (isinstance(steps, int) and steps >= 0):
        raise ValueError(f"steps must be an int >= 0, got {steps!r}")
    if not float(sigma) > 0 or not float(eta) > 0:
        raise ValueError(f"sigma and eta must be > 0, got sigma={sigma!r}, eta={eta!r}")
    W = (torch.zeros(d, d, dtype=X.dtype, device=X.device) if W0 is None else W0.clone()).requires_grad_(True)
    b = (torch.zeros(d, dtype=X.dtype, device=X.device) if b0 is None else b0.clone()).requires_grad_(True)
    I = torch.eye(d, dtype=X.dtype, device=X.device)
    rec_n, rec_W, rec_b = [], [], []
    for n in range(steps + 1):
        if n % record_every == 0 or n == steps:
            rec_n.append(n)
            rec_W.append(W.detach().clone())
            rec_b.append(b.detach().clone())
        if n == steps:
            break
        if noise_draws is None:
            loss = (((X @ (W - I).T) + b) ** 2).sum(1).mean() + sigma**2 * (W**2).sum()
        else:
            z = torch.randn(noise_draws, N, d, generator=generator, dtype=X.dtype).to(X.device)
            loss = ((((X + sigma * z) @ W.T) + b - X) ** 2).sum(-1).mean()
        gW, gb = torch.autograd.grad(loss, (W, b))
        with torch.no_grad():
            W -= eta * gW
            b -= eta * gb
    return torch.tensor(rec_n), torch.stack(rec_W), torch.stack(rec_b)


def _lnPhi(lam, s, a, Q):
    from scipy.special import expi

    lam, Q = np.asarray(lam, dtype=np.float64), np.asarray(Q, dtype=np.float64)
    return 0.5 * np.log(lam + s**2) + 0.5 * (1 - Q) * expi(-a * s**2) * np.exp(-a * lam) - 0.5 * expi(-a * (s**2 + lam))


def generated_mode_variance(lam, tau, eta: float, sigma_0: float = 0.002, sigma_T: float = 80.0, Q=0.0):
    """lam~_k(tau) of Prop. 4.2 (module doc) for modes ``lam`` (K,) and training times ``tau`` (T,): (T, K).

    At tau = 0 the weights are Q, the flow is x ~ sigma^(1 - Q) and lam~ = sigma_T^2 (sigma_0/sigma_T)^(2(1-Q)).
    """
    lam = np.atleast_1d(np.asarray(lam, dtype=np.float64))
    taus = np.atleast_1d(np.asarray(tau, dtype=np.float64))
    if (lam <= 0).any() or (taus < 0).any():
        raise ValueError("lam must be > 0 and tau >= 0")
    Q = np.broadcast_to(np.asarray(Q, dtype=np.float64), lam.shape)
    out = np.empty((len(taus), len(lam)))
    for i, t in enumerate(taus):
        if t == 0:
            out[i] = sigma_T**2 * (sigma_0 / sigma_T) ** (2 * (1 - Q))
        else:
            a = 2 * eta * t
            out[i] = sigma_T**2 * np.exp(2 * (_lnPhi(lam, sigma_0, a, Q) - _lnPhi(lam, sigma_T, a, Q)))
    return torch.from_numpy(out)


def generated_mode_variance_numeric(lam: float, tau: float, eta: float, sigma_0: float = 0.002,
                                    sigma_T: float = 80.0, Q: float = 0.0) -> float:
    """Independent check of :func:`generated_mode_variance`: lam~ = sigma_T^2 A^2 with
    ln A = int_{sigma_0}^{sigma_T} (w(s, tau) - 1)/s ds integrated numerically (scipy.quad on ln s)."""
    from scipy.integrate import quad

    def integrand(u):  # s = e^u, ds/s = du
        s = math.exp(u)
        w_star = lam / (lam + s * s)
        w = w_star + (Q - w_star) * math.exp(-2 * eta * tau * (s * s + lam))
        return w - 1.0

    lnA, _ = quad(integrand, math.log(sigma_0), math.log(sigma_T), limit=400, epsabs=1e-12, epsrel=1e-10)
    return sigma_T**2 * math.exp(2 * lnA)


def emergence_times(lam, eta: float, sigma_0: float = 0.002, sigma_T: float = 80.0, Q=0.0,
                    tau_max: float = 1e12, iters: int = 200) -> torch.Tensor:
    """First tau at which lam~_k(tau) reaches the geometric mean of lam~_k(0) and lam~_k(inf)
    = sigma_T^2 (lam_k + sigma_0^2)/(lam_k + sigma_T^2), by bisection on log tau (monotone for Q = 0)."""
    lam = np.atleast_1d(np.asarray(lam, dtype=np.float64))
    Q = np.broadcast_to(np.asarray(Q, dtype=np.float64), lam.shape)
    v0 = sigma_T**2 * (sigma_0 / sigma_T) ** (2 * (1 - Q))
    vinf = sigma_T**2 * (lam + sigma_0**2) / (lam + sigma_T**2)
    target = np.log(np.sqrt(v0 * vinf))
    rising = vinf > v0
    lo, hi = np.full(lam.shape, -30.0), np.full(lam.shape, math.log(tau_max))
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        a = 2 * eta * np.exp(mid)
        v = 2 * math.log(sigma_T) + 2 * (_lnPhi(lam, sigma_0, a, Q) - _lnPhi(lam, sigma_T, a, Q))
        past = np.where(rising, v >= target, v <= target)
        hi, lo = np.where(past, mid, hi), np.where(past, lo, mid)
        if np.all(hi - lo < 1e-10):
            break
    return torch.from_numpy(np.exp(0.5 * (lo + hi)))


def fit_power_law(x, y):
    """Least-squares fit log y = log C + p log x; returns (p, C)."""
    lx, ly = np.log(np.asarray(x, dtype=np.float64)), np.log(np.asarray(y, dtype=np.float64))
    p, logC = np.polyfit(lx, ly, 1)
    return float(p), float(math.exp(logC))
