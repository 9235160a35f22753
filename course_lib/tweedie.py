"""Tweedie's formula, computed three independent ways (Chapter 0, Sec. "Denoisers, scores and noise").

For x = x0 + sigma z with z ~ N(0, I), the posterior mean of the clean image is

    E[x0 | x] = x + sigma^2 grad_x log p_sigma(x),        p_sigma = p_0 * N(0, sigma^2 I)     (Tweedie)

(Efron 2011; Vincent 2011). This module gives the pieces that let the chapter check that identity
numerically instead of taking it on faith:

- closed forms: a Gaussian prior N(mu, var) (:func:`gaussian_denoiser_1d`, :func:`gaussian_score_1d`)
  and a 1-D Gaussian-mixture prior (:func:`gmm_1d_log_density`, :func:`gmm_1d_posterior_mean`);
- the posterior mean by quadrature on a grid (:func:`posterior_mean_grid`) and the smoothed density
  on the same grid (:func:`log_density_grid`), for any 1-D prior given by its log-density;
- the posterior mean by self-normalised importance sampling with the prior as proposal
  (:func:`posterior_mean_monte_carlo`), with its standard error and effective sample size;
- Tweedie's right-hand side by automatic differentiation of any log-density
  (:func:`tweedie_from_log_density`), e.g. ``IdealDenoiser(train).log_density`` for a finite training
  set (the delta mixture of Chapter 1).

Scalar helpers work elementwise on tensors of any shape; the Monte Carlo and delta-mixture functions
takes batches (B, ...) and streams over the samples in chunks.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from .denoisers.base import FunctionDenoiser, sigma_batch, sigma_view
from .softmax import OnlineSoftmax, squared_distances
from .validate import int_like

__all__ = [
    "gaussian_denoiser_1d", "gaussian_score_1d", "gmm_1d_log_density", "gmm_1d_posterior_mean",
    "gmm_1d_sample", "posterior_mean_grid", "log_density_grid", "MonteCarloEstimate",
    "posterior_mean_monte_carlo", "tweedie_from_log_density",
    "denoiser_from_score",
]


def _sigma_like(sigma, x: torch.Tensor, name: str = "sigma") -> torch.Tensor:
    """sigma as a tensor of x's dtype/device that broadcasts against x; finite and > 0."""
    s = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
    if not bool(torch.isfinite(s).all()) or not bool((s > 0).all()):
        raise ValueError(f"{name} must be finite and > 0, got {s.min().item()!r} .. {s.max().item()!r}")
    try:
        torch.broadcast_shapes(s.shape, x.shape)
    except RuntimeError:
        raise ValueError(f"{name} of shape {tuple(s.shape)} does not broadcast against x of shape "
                         f"{tuple(x.shape)}") from None
    return s


def _float_tensor(x, name: str = "x") -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point torch.Tensor, got "
                        f"{type(x).__name__ if not isinstance(x, torch.Tensor) else x.dtype}")
    return x


# --------------------------------------------------------------------------- closed forms
def gaussian_denoiser_1d(x: torch.Tensor, sigma, mu: float = 0.0, var: float = 1.0) -> torch.Tensor:
    """Posterior mean for the prior x0 ~ N(mu, var), elementwise (Wiener shrinkage):

        E[x0 | x] = mu + var / (var + sigma^2) (x - mu).
    """
    x = _float_tensor(x)
    s = _sigma_like(sigma, x)
    if not var > 0:
        raise ValueError(f"var must be > 0, got {var!r}")
    return mu + var / (var + s**2) * (x - mu)


def gaussian_score_1d(x: torch.Tensor, sigma, mu: float = 0.0, var: float = 1.0) -> torch.Tensor:
    """Score of p_sigma = N(mu, var + sigma^2): d/dx log p_sigma(x) = (mu - x) / (var + sigma^2)."""
    x = _float_tensor(x)
    s = _sigma_like(sigma, x)
    if not var > 0:
        raise ValueError(f"var must be > 0, got {var!r}")
    return (mu - x) / (var + s**2)


def _gmm_params(weights, means, variances, x):
    w, m, v = (torch.as_tensor(a, dtype=x.dtype, device=x.device).reshape(-1) for a in (weights, means, variances))
    if not (w.shape == m.shape == v.shape) or w.numel() == 0:
        raise ValueError(f"weights, means, variances must be 1-D of equal length, got shapes "
                         f"{tuple(w.shape)}, {tuple(m.shape)}, {tuple(v.shape)}")
    if bool((w <= 0).any()) or bool((v <= 0).any()):
        raise ValueError("mixture weights and variances must all be > 0")
    return w / w.sum(), m, v


def gmm_1d_log_density(x: torch.Tensor, sigma, weights, means, variances) -> torch.Tensor:
    """log p_sigma(x) for the 1-D prior sum_k pi_k N(m_k, v_k): p_sigma = sum_k pi_k N(x; m_k, v_k + sigma^2)."""
    x = _float_tensor(x)
    s = _sigma_like(sigma, x)
    w, m, v = _gmm_params(weights, means, variances, x)
    tot = v + s.unsqueeze(-1) ** 2
    comp = torch.log(w) - 0.5 * torch.log(2 * math.pi * tot) - (x.unsqueeze(-1) - m) ** 2 / (2 * tot)
    return torch.logsumexp(comp, -1)


def gmm_1d_posterior_mean(x: torch.Tensor, sigma, weights, means, variances) -> torch.Tensor:
    """E[x0 | x] for a 1-D Gaussian-mixture prior, in closed form:

        E[x0 | x] = sum_k r_k(x) (m_k + v_k / (v_k + sigma^2) (x - m_k)),
        r_k(x) = pi_k N(x; m_k, v_k + sigma^2) / p_sigma(x).
    """
    x = _float_tensor(x)
    s = _sigma_like(sigma, x)
    w, m, v = _gmm_params(weights, means, variances, x)
    tot = v + s.unsqueeze(-1) ** 2
    xe = x.unsqueeze(-1)
    r = torch.softmax(torch.log(w) - 0.5 * torch.log(tot) - (xe - m) ** 2 / (2 * tot), -1)
    return (r * (m + v / tot * (xe - m))).sum(-1)


def gmm_1d_sample(n: int, weights, means, variances, generator: torch.Generator | None = None,
                  dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """n i.i.d. draws from the 1-D mixture sum_k pi_k N(m_k, v_k), shape (n,)."""
    n = int_like(n)
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an int >= 1, got {n!r}")
    w, m, v = _gmm_params(weights, means, variances, torch.empty(0, dtype=dtype))
    k = torch.multinomial(w, n, replacement=True, generator=generator)
    return m[k] + v[k].sqrt() * torch.randn(n, generator=generator, dtype=dtype)


# --------------------------------------------------------------------------- quadrature on a grid
def _grid_logits(x, sigma, log_prior, grid):
    x = _float_tensor(x)
    grid = _float_tensor(grid, "grid").to(x.dtype)
    if grid.ndim != 1 or grid.numel() < 3:
        raise ValueError(f"grid must be 1-D with at least 3 points, got shape {tuple(grid.shape)}")
    steps = grid.diff()
    if not bool((steps > 0).all()) or not torch.allclose(steps, steps.mean().expand_as(steps), rtol=1e-6):
        raise ValueError("grid must be increasing and uniformly spaced")
    s = _sigma_like(sigma, x).expand_as(x).reshape(-1, 1)
    lp = log_prior(grid)
    if lp.shape != grid.shape:
        raise ValueError(f"log_prior(grid) must have shape {tuple(grid.shape)}, got {tuple(lp.shape)}")
    logits = lp - (x.reshape(-1, 1) - grid) ** 2 / (2 * s**2)
    return logits, lp, steps.mean(), s


def posterior_mean_grid(x: torch.Tensor, sigma, log_prior: Callable[[torch.Tensor], torch.Tensor],
                        grid: torch.Tensor) -> torch.Tensor:
    """E[x0 | x] = int x0 p_0(x0) N(x; x0, sigma^2) dx0 / int p_0(x0) N(x; x0, sigma^2) dx0 by a Riemann
    sum on a uniform ``grid`` (exact to quadrature error when the integrand vanishes at the grid ends).

    ``log_prior(grid)`` is the (unnormalised) log prior density at the grid points. Elementwise in x.
    """
    logits, _, _, _ = _grid_logits(x, sigma, log_prior, grid)
    w = torch.softmax(logits, -1)
    return (w @ grid.to(x.dtype)).reshape(x.shape)


def log_density_grid(x: torch.Tensor, sigma, log_prior: Callable[[torch.Tensor], torch.Tensor],
                     grid: torch.Tensor) -> torch.Tensor:
    """log p_sigma(x) = log int p_0(x0) N(x; x0, sigma^2) dx0 by the same Riemann sum, with p_0 normalised
    on the grid. Differentiable in x, so Tweedie's right-hand side follows by autograd."""
    logits, lp, dx, s = _grid_logits(x, sigma, log_prior, grid)
    log_z = torch.logsumexp(lp, 0) + torch.log(dx)
    out = torch.logsumexp(logits, -1) + torch.log(dx) - log_z - 0.5 * torch.log(2 * math.pi * s.squeeze(-1) ** 2)
    return out.reshape(x.shape)


# --------------------------------------------------------------------------- Monte Carlo
@dataclass
class MonteCarloEstimate:
    """A self-normalised importance-sampling estimate: ``mean`` and ``stderr`` have x's shape,
    ``ess`` (effective sample size, 1 / sum_i wbar_i^2) has shape (B,)."""
    mean: torch.Tensor
    stderr: torch.Tensor
    ess: torch.Tensor


def posterior_mean_monte_carlo(x: torch.Tensor, sigma, x0_samples: torch.Tensor,
                               chunk_size: int = 4096) -> MonteCarloEstimate:
    """E[x0 | x] by self-normalised importance sampling with the prior as proposal:

        E[x0 | x] ~= sum_i wbar_i x0_i,    wbar_i = softmax_i(-|x - x0_i|^2 / (2 sigma^2)),   x0_i ~ p_0,

    i.e. the ideal (delta-mixture) denoiser of the prior samples (Chapter 1). The delta-method standard
    error is  se^2 = sum_i wbar_i^2 (x0_i - mean)^2  per coordinate, streamed with a second online
    softmax on the doubled logits: sum_i wbar_i^2 f_i = exp(LSE(2l) - 2 LSE(l)) E_{w^2}[f].

    ``x`` is (B, ...) and ``x0_samples`` (N, ...) with the same trailing shape; ``sigma`` a float or a
    (B,) tensor. Memory does not grow with N (chunks of ``chunk_size`` samples).
    """
    x = _float_tensor(x)
    x0_samples = _float_tensor(x0_samples, "x0_samples")
    if x.ndim < 2 or x0_samples.shape[1:] != x.shape[1:] or x0_samples.shape[0] == 0:
        raise ValueError(f"x must be (B, ...) and x0_samples (N, ...) with the same trailing shape; got "
                         f"{tuple(x.shape)} and {tuple(x0_samples.shape)}")
    chunk_size = int_like(chunk_size)
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be an int >= 1, got {chunk_size!r}")
    s = sigma_batch(sigma, x)
    q = x.reshape(x.shape[0], -1)
    inv = (1.0 / (2 * s**2)).unsqueeze(-1)
    first, second = OnlineSoftmax(), OnlineSoftmax()
    for start in range(0, x0_samples.shape[0], chunk_size):
        k = x0_samples[start:start + chunk_size].reshape(-1, q.shape[1]).to(x.dtype)
        logits = -squared_distances(q, k) * inv
        first.update(logits, values=k)
        second.update(2 * logits, values=torch.cat([k, k * k], 1))
    mean = first.mean()
    m2 = second.mean()
    e1, e2 = m2[:, :q.shape[1]], m2[:, q.shape[1]:]
    ratio = torch.exp(second.logsumexp() - 2 * first.logsumexp()).unsqueeze(-1)  # sum_i wbar_i^2
    var = (ratio * (e2 - 2 * mean * e1 + mean**2)).clamp_min(0.0)
    return MonteCarloEstimate(mean.reshape(x.shape), var.sqrt().reshape(x.shape), 1.0 / ratio.squeeze(-1))


# --------------------------------------------------------------------------- autograd
def tweedie_from_log_density(log_density: Callable, x: torch.Tensor, sigma) -> torch.Tensor:
    """Tweedie's right-hand side x + sigma^2 grad_x log p_sigma(x), the gradient taken by autograd.

    ``log_density(x, sigma)`` returns one log-density per batch element (shape (B,)) or one per entry
    (x's shape, for elementwise 1-D densities); ``sigma`` broadcasts as in ``log_density``.
    """
    x = _float_tensor(x)
    with torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(log_density(xg, sigma).sum(), xg)
    s = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
    if s.ndim == 1 and x.ndim > 1 and s.shape[0] == x.shape[0]:
        s = s.reshape(-1, *([1] * (x.ndim - 1)))
    return x.detach() + s**2 * grad


def denoiser_from_score(score: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], name: str = "tweedie"):
    """Wrap a score function ``score(x, sigma_B)`` as a denoiser D(x, sigma) = x + sigma^2 score(x, sigma)."""
    def fn(x, sigma):
        return x + sigma_view(sigma, x) ** 2 * score(x, sigma)

    return FunctionDenoiser(fn, name=name)
