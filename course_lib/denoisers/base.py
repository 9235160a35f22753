"""The one denoiser interface (Chapter 0, Sec. "Denoisers, scores and noise predictions").

A denoiser is a callable ``D(x, sigma) -> x0_hat`` in the EDM variance-exploding convention
``x = x0 + sigma * z``: ``x`` is a batch of shape (B, C, H, W) and ``sigma`` a positive float or a
(B,) tensor. Its two other views follow from Tweedie's formula

    score(x, sigma) = grad log p_sigma(x) = (D(x, sigma) - x) / sigma^2,
    eps(x, sigma)   = (x - D(x, sigma)) / sigma.

Subclasses implement :meth:`Denoiser.denoise`, which receives an already validated ``x`` (finite,
float32 or float64: a float16 / bfloat16 query is computed in float32 and the result cast back) and a
(B,) ``sigma`` tensor of ``x``'s dtype and device (finite, > 0, with sigma^2 not underflowing).
"""
from __future__ import annotations

from typing import Callable

import torch

from ..validate import LOW_PRECISION, check_finite

__all__ = [
    "Denoiser", "FunctionDenoiser", "EpsPredictionDenoiser", "check_images", "check_query", "sigma_batch",
    "sigma_view", "score_from_denoiser", "eps_from_denoiser",
]


def check_images(x, name: str = "x", ndim: int = 4) -> torch.Tensor:
    """Validate a floating-point image batch of shape (B, C, H, W); return it unchanged."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (B, C, H, W), got {type(x).__name__}")
    if x.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions (B, C, H, W), got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor (float32 or float64; float16 and bfloat16 are "
                        f"computed in float32 and returned in their dtype), got {x.dtype}: convert with "
                        f"{name}.float()")
    if x.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch (shape {tuple(x.shape)})")
    return x


def check_query(x, name: str = "x") -> torch.Tensor:
    """:func:`check_images` plus finiteness, upcast to float32 when half precision (for the machines'
    diagnostic methods, which return float32 results for float16 / bfloat16 queries)."""
    x = check_finite(check_images(x, name), name)
    return x.float() if x.dtype in LOW_PRECISION else x


def sigma_batch(sigma, x: torch.Tensor, name: str = "sigma") -> torch.Tensor:
    """Return ``sigma`` as a (B,) tensor on ``x``'s device and dtype, checking that it is finite and > 0.

    ``sigma`` may be a Python number, a 0-d tensor or a (B,) tensor with B = ``x.shape[0]``.
    """
    B = x.shape[0]
    s = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
    if s.ndim == 0:
        s = s.expand(B)
    elif s.shape != (B,):
        raise ValueError(f"{name} must be a float or a tensor of shape ({B},) to match x, got shape {tuple(s.shape)}")
    if not bool(torch.isfinite(s).all()) or not bool((s > 0).all()):
        raise ValueError(f"{name} must be finite and > 0, got {s.min().item()!r} .. {s.max().item()!r}")
    if bool((s * s < torch.finfo(s.dtype).tiny).any()):
        raise ValueError(f"{name} = {s.min().item():.3g} is so small that {name}^2 underflows in {s.dtype}: use "
                         f"{name} >= {torch.finfo(s.dtype).tiny ** 0.5:.3g}, or float64 queries")
    return s


def sigma_view(sigma: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Reshape a (B,) sigma to broadcast against ``x`` (B, 1, 1, ...)."""
    return sigma.reshape(-1, *([1] * (x.ndim - 1)))


class Denoiser:
    """Base class: validates inputs, then calls :meth:`denoise` (Chapter 0)."""

    def __call__(self, x: torch.Tensor, sigma) -> torch.Tensor:
        x = check_images(x)
        if x.dtype in LOW_PRECISION:  # float16 / bfloat16: computed in float32, returned in x's dtype
            return self(x.float(), sigma).to(x.dtype)
        check_finite(x, "x", f"(the query batch of {type(self).__name__})")
        return self.denoise(x, sigma_batch(sigma, x))

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError(f"{type(self).__name__} must implement denoise(x, sigma)")

    def score(self, x: torch.Tensor, sigma) -> torch.Tensor:
        """Tweedie: grad_x log p_sigma(x) = (D(x, sigma) - x) / sigma^2."""
        return score_from_denoiser(self, x, sigma)

    def eps(self, x: torch.Tensor, sigma) -> torch.Tensor:
        """Noise prediction: eps_hat = (x - D(x, sigma)) / sigma."""
        return eps_from_denoiser(self, x, sigma)


def score_from_denoiser(denoiser: Callable, x: torch.Tensor, sigma) -> torch.Tensor:
    """score(x, sigma) = (D(x, sigma) - x) / sigma^2 for any denoiser callable."""
    x = check_images(x)
    if x.dtype in LOW_PRECISION:
        return score_from_denoiser(denoiser, x.float(), sigma).to(x.dtype)
    sb = sigma_batch(sigma, x)  # plain callables get the validated (B,) tensor, like Denoiser.denoise
    s = sigma_view(sb, x)
    return (denoiser(x, sb) - x) / s**2


def eps_from_denoiser(denoiser: Callable, x: torch.Tensor, sigma) -> torch.Tensor:
    """eps_hat(x, sigma) = (x - D(x, sigma)) / sigma for any denoiser callable."""
    x = check_images(x)
    if x.dtype in LOW_PRECISION:
        return eps_from_denoiser(denoiser, x.float(), sigma).to(x.dtype)
    sb = sigma_batch(sigma, x)
    s = sigma_view(sb, x)
    return (x - denoiser(x, sb)) / s


class FunctionDenoiser(Denoiser):
    """Wrap a plain function ``f(x, sigma_B) -> x0_hat`` (sigma given as a (B,) tensor)."""

    def __init__(self, fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], name: str | None = None):
        self.fn = fn
        self.name = name or getattr(fn, "__name__", "function")

    def denoise(self, x, sigma):
        return self.fn(x, sigma)

    def __repr__(self):
        return f"FunctionDenoiser({self.name})"


class EpsPredictionDenoiser(Denoiser):
    """Turn an epsilon-prediction network into a VE denoiser (Chapter 0, VP <-> VE).

    A VP (DDPM) network sees ``x_t = sqrt(alpha_bar) x0 + sqrt(1 - alpha_bar) eps``. A VE point
    ``x = x0 + sigma z`` corresponds to ``x_t = x / sqrt(1 + sigma^2)`` at ``alpha_bar = 1/(1 + sigma^2)``
    with the same noise, so

        D(x, sigma) = x - sigma * eps_theta(x / sqrt(1 + sigma^2), t(sigma)).

    ``eps_model(x_in, t)`` is called with ``t = sigma_to_t(sigma)`` (a (B,) tensor); by default ``t``
    is ``sigma`` itself. With ``vp=False`` the network is fed the VE point ``x`` unscaled.
    """

    def __init__(self, eps_model: Callable, sigma_to_t: Callable | None = None, vp: bool = True):
        self.eps_model = eps_model
        self.sigma_to_t = sigma_to_t or (lambda s: s)
        self.vp = vp

    def denoise(self, x, sigma):
        s = sigma_view(sigma, x)
        x_in = x / torch.sqrt(1 + s**2) if self.vp else x
        return x - s * self.eps_model(x_in, self.sigma_to_t(sigma))
