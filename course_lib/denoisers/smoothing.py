"""Two ways of smoothing the ideal denoiser (Chapter 1, Sec. "The impact of smoothing").

(a) Kernel smoothing (:class:`KernelSmoothedDenoiser`): replace every training image by an isotropic
Gaussian N(x_i, s^2 I). The noised density is then the delta mixture at the larger noise level
tau = sqrt(sigma^2 + s^2),

    p_sigma(x) = 1/N sum_i N(x; x_i, tau^2 I),     score = (D_ideal(x, tau) - x) / tau^2,

and Tweedie's formula D = x + sigma^2 score gives the posterior mean of the smoothed prior,

    D_s(x, sigma) = x + sigma^2 / tau^2 (D_ideal(x, tau) - x)
                  = sum_i w_i(x; tau) [x_i + s^2 / tau^2 (x - x_i)].

Its samples are training images plus Gaussian noise of variance s^2: novelty without structure.

(b) The smoothed closed-form denoiser (:class:`ClosedFormSmoothedDenoiser`, after Scarvelis et al.,
"Closed-form diffusion models"): average the ideal denoiser over random perturbations of its
INPUT,

    D_s(x, sigma) = E_{z ~ N(0, I)} [ D_ideal(x + s z, sigma) ],
    score_s(x, sigma) = (D_s(x, sigma) - x) / sigma^2  (= E_z[score(x + s z)] since E z = 0).

As sigma -> 0, D_ideal becomes the nearest-training-image map, and its average over a ball of
radius ~s blends the nearby training images: the flow settles on fixed points x = D_s(x, 0), which
are barycenters of neighbouring training images rather than the images themselves. The expectation
is estimated with ``n_samples`` draws in antithetic pairs (z, -z), fixed for every call (common
random numbers), so D_s is a deterministic smooth function that ODE solvers can integrate; all
draws go through ONE streaming pass over the training set (B * n_samples queries).
"""
from __future__ import annotations

import torch

from ..validate import as_float, as_int
from .base import Denoiser, check_query, sigma_batch, sigma_view
from .ideal import IdealDenoiser

__all__ = ["KernelSmoothedDenoiser", "ClosedFormSmoothedDenoiser"]


def _check_s(s):
    return as_float(s, "s (the smoothing scale)", nonnegative=True)


def _ideal(train_images, chunk_size, dtype):
    if isinstance(train_images, IdealDenoiser):
        return train_images
    return IdealDenoiser(train_images, chunk_size=chunk_size, dtype=dtype)


class KernelSmoothedDenoiser(Denoiser):
    """Posterior mean of the kernel-density prior 1/N sum_i N(x_i, s^2 I) (Chapter 1, smoothing (a)).

    ``train_images`` is an image batch or an existing :class:`IdealDenoiser` (shared, not copied).
    ``s = 0`` gives back the ideal denoiser.
    """

    def __init__(self, train_images, s: float, chunk_size: int | None = None, dtype=None):
        self.s = _check_s(s)
        self.ideal = _ideal(train_images, chunk_size, dtype)

    def tau(self, sigma: torch.Tensor) -> torch.Tensor:
        """The effective noise level tau = sqrt(sigma^2 + s^2)."""
        return torch.sqrt(sigma**2 + self.s**2)

    def denoise(self, x, sigma):
        tau = self.tau(sigma)
        D = self.ideal.denoise(x, tau)
        r = sigma_view(sigma**2 / tau**2, x)
        return x + r * (D - x)

    def log_density(self, x, sigma):
        """log p_sigma(x) of the smoothed mixture = ideal log-density at tau."""
        x = check_query(x)
        return self.ideal.log_density(x, self.tau(sigma_batch(sigma, x)))

    def __repr__(self):
        return f"KernelSmoothedDenoiser(s={self.s}, N={self.ideal.N})"


class ClosedFormSmoothedDenoiser(Denoiser):
    """D_s(x, sigma) = E_z[D_ideal(x + s z, sigma)] by antithetic Monte Carlo (Chapter 1, smoothing (b)).

    Parameters
    ----------
    train_images : image batch or an existing :class:`IdealDenoiser`.
    s : smoothing scale (standard deviation of the input perturbation), fixed across sigma.
    n_samples : number of perturbations (even; pairs z, -z). The Monte Carlo standard error of one
        pixel is about std_z(D_ideal) / sqrt(n_samples).
    seed : seed of the fixed perturbations: the SAME n_samples draws z (of the image shape) perturb
        every query of every call, so D_s(x_i, sigma_i) depends on the query alone, never on the other
        queries of its batch or on the batch size (common random numbers across queries and calls).
    """

    def __init__(self, train_images, s: float, n_samples: int = 16, seed: int = 0,
                 chunk_size: int | None = None, dtype=None):
        self.s = _check_s(s)
        n_samples = as_int(n_samples, "n_samples", 2)
        if n_samples % 2:
            raise ValueError(f"n_samples must be an even int >= 2 (antithetic pairs), got {n_samples!r}")
        self.n_samples, self.seed = n_samples, int(seed)
        self.ideal = _ideal(train_images, chunk_size, dtype)
        self._z = {}

    def perturbations(self, x: torch.Tensor) -> torch.Tensor:
        """The fixed draws z, shape (n_samples, 1, C, H, W) (shared by every query), in pairs (z, -z)."""
        key = (tuple(x.shape[1:]), x.dtype, x.device)
        if key not in self._z:
            g = torch.Generator().manual_seed(self.seed)
            half = torch.randn((self.n_samples // 2, 1, *x.shape[1:]), generator=g, dtype=torch.float64)
            self._z = {key: torch.cat([half, -half]).to(device=x.device, dtype=x.dtype)}
        return self._z[key]

    def denoise(self, x, sigma):
        if self.s == 0:
            return self.ideal.denoise(x, sigma)
        M, B = self.n_samples, x.shape[0]
        xs = (x.unsqueeze(0) + self.s * self.perturbations(x)).reshape(M * B, *x.shape[1:])
        D = self.ideal.denoise(xs, sigma.repeat(M))
        return D.reshape(M, *x.shape).mean(0)

    def __repr__(self):
        return f"ClosedFormSmoothedDenoiser(s={self.s}, n_samples={self.n_samples}, N={self.ideal.N})"
