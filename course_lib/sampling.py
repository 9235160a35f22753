"""Samplers with one signature (Chapter 0, Sec. "Sampling: the probability-flow ODE").

Every solver integrates from ``x_T`` (noise already scaled by ``sigmas[0]``) down a descending sigma
grid using only the denoiser ``D(x, sigma)``:

- ``"euler"`` / ``"heun"``: the probability-flow ODE in the EDM convention (Karras et al. 2022, Eq. 4
  with sigma(t) = t),

      dx/dsigma = (x - D(x, sigma)) / sigma,

  with Euler's method or Heun's 2nd-order method (EDM Algorithm 1; the correction is skipped on a
  step that ends at sigma = 0, where the derivative is undefined).
- ``"ddim"``: deterministic DDIM (Song et al. 2021, eta = 0) written in its own variance-preserving
  arithmetic, x_t = sqrt(alpha_bar) x0 + sqrt(1 - alpha_bar) eps,

      x_{t'} = sqrt(alpha_bar') x0_hat + sqrt(1 - alpha_bar') eps_hat,

  with alpha_bar = 1 / (1 + sigma^2). Mapped back to VE it is exactly the Euler step on the same
  sigmas (Chapter 0 shows the one-line algebra; ``tests/test_sampling.py`` checks it).
- ``"stochastic"``: EDM Algorithm 2. Before each step the noise level is raised from sigma to
  sigma_hat = (1 + gamma) sigma by adding fresh noise of variance sigma_hat^2 - sigma^2 ("churn"),
  then a Heun step goes from sigma_hat to the next sigma. gamma = min(S_churn / N, sqrt(2) - 1) for
  sigma in [S_tmin, S_tmax], 0 elsewhere.
- ``"ancestral"``: DDPM-style ancestral sampling in VE form: from sigma to sigma' it draws from the
  forward posterior q(x_{sigma'} | x_sigma, x0) with x0 replaced by D(x_sigma, sigma), i.e. an
  Euler step to sigma_down = sigma'^2 / sigma plus fresh noise of std
  sigma_up = sigma' sqrt(1 - sigma'^2 / sigma^2). Replacing x0 by its posterior mean drops the
  posterior variance of x0, so the samples are slightly too concentrated at coarse grids; the bias
  vanishes (to first order) as the grid is refined.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from .denoisers.base import check_images
from .schedules import sigma_to_alpha_bar
from .validate import LOW_PRECISION, NonFiniteError, as_float, as_int, check_denoiser, check_generator

__all__ = ["SOLVERS", "Trajectory", "sample", "denoiser_evaluations", "check_sigmas"]

SOLVERS = ("euler", "heun", "ddim", "stochastic", "ancestral")


@dataclass
class Trajectory:
    """A sampling run: ``x[i]`` is the state at ``sigmas[i]`` (S+1 entries, ``x[-1]`` the sample) and
    ``denoised[i] = D(x[i], sigmas[i])`` (S entries). For the stochastic solver ``denoised[i]`` is
    evaluated at the churned state ``x_hat[i]`` and level ``sigmas_hat[i]`` (None for the other
    solvers); :meth:`denoiser_inputs` gives the (state, sigma) pairs for any solver. All tensors are
    on x_T's device, in its dtype."""

    x: torch.Tensor
    denoised: torch.Tensor
    sigmas: torch.Tensor
    sigmas_hat: torch.Tensor | None = None
    x_hat: torch.Tensor | None = None

    def denoiser_inputs(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(states (S, B, C, H, W), sigmas (S,)) such that ``denoised[i] = D(states[i], sigmas[i])``."""
        if self.x_hat is not None:
            return self.x_hat, self.sigmas_hat
        return self.x[:-1], self.sigmas[:-1]

    @property
    def sample(self) -> torch.Tensor:
        return self.x[-1]

    @property
    def n_steps(self) -> int:
        return self.denoised.shape[0]


def check_sigmas(sigmas) -> torch.Tensor:
    """Validate a sigma grid: 1-D, >= 2 entries, finite, >= 0, strictly descending, sigmas[0] > 0.

    Returns it as a float64 CPU tensor."""
    try:
        s = torch.as_tensor(sigmas, dtype=torch.float64).detach().cpu()
    except Exception as e:
        raise TypeError(f"sigmas must be a 1-D tensor or sequence of numbers, got {type(sigmas).__name__}") from e
    if s.ndim != 1 or s.numel() < 2:
        raise ValueError(f"sigmas must be a 1-D grid with at least 2 entries, got shape {tuple(s.shape)}")
    if not bool(torch.isfinite(s).all()):
        raise ValueError(f"sigmas must be finite, got {s.tolist()}")
    if bool((s < 0).any()):
        raise ValueError(f"sigmas must be >= 0, got min {s.min().item()!r}")
    if not bool((s[1:] < s[:-1]).all()):
        i = int(torch.nonzero(s[1:] >= s[:-1])[0])
        raise ValueError(f"sigmas must be strictly descending, got sigmas[{i}]={s[i].item()!r} "
                         f"<= sigmas[{i + 1}]={s[i + 1].item()!r}")
    return s


def denoiser_evaluations(solver: str, n_steps: int, final_zero: bool = True) -> int:
    """Number of denoiser calls (NFE) of ``sample`` with ``n_steps`` steps.

    Euler, DDIM and ancestral: one call per step. Heun and stochastic (EDM Alg. 2): two per step,
    minus one when the last step ends at sigma = 0 (``final_zero``)."""
    _check_solver(solver)
    n_steps = as_int(n_steps, "n_steps", 1)
    if solver in ("heun", "stochastic"):
        return 2 * n_steps - (1 if final_zero else 0)
    return n_steps


def _check_solver(solver):
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}")


def sample(denoiser: Callable, x_T: torch.Tensor, sigmas, solver: str = "heun", *,
           return_trajectory: bool = False, progress: bool = False,
           generator: torch.Generator | None = None, S_churn: float = 40.0, S_tmin: float = 0.0,
           S_tmax: float = float("inf"), S_noise: float = 1.0, grad: bool = False):
    """Sample from ``x_T`` (already scaled by ``sigmas[0]``) down the grid ``sigmas``.

    Parameters
    ----------
    denoiser : callable ``D(x, sigma) -> x0_hat`` (sigma passed as a (B,) tensor of x's dtype).
    x_T : (B, C, H, W) floating tensor; device and dtype of the run.
    sigmas : descending 1-D grid (e.g. ``karras_sigmas(n)``, ending in 0); ``len(sigmas) - 1`` steps.
    solver : ``"euler"``, ``"heun"``, ``"ddim"``, ``"stochastic"`` (EDM Alg. 2) or ``"ancestral"``.
    return_trajectory : return a :class:`Trajectory` instead of the final batch.
    progress : show a ``tqdm`` progress bar over steps.
    generator : ``torch.Generator`` for the fresh noise of the stochastic solvers; the noise is drawn
        on the generator's device and moved to x_T's, so a CPU generator gives the same samples on
        any device.
    S_churn, S_tmin, S_tmax, S_noise : EDM Algorithm 2 parameters (``"stochastic"`` only). The
        default S_churn = 40 gives the maximal churn gamma = sqrt(2) - 1 for grids of up to 96 steps.
    grad : keep autograd on (off by default, so a network denoiser does not build a graph across
        all steps; denoisers that need autograd internally enable it themselves).

    A float16 / bfloat16 ``x_T`` is integrated in float32 (the denoiser sees float32 states) and the
    result returned in x_T's dtype. A denoiser output with NaN or inf stops the run with a
    :class:`~course_lib.validate.NonFiniteError` naming the step and sigma (one check per call).
    """
    _check_solver(solver)
    check_denoiser(denoiser)
    check_generator(generator)
    x = check_images(x_T, "x_T")
    if x.dtype in LOW_PRECISION:
        out = sample(denoiser, x.float(), sigmas, solver, return_trajectory=return_trajectory,
                     progress=progress, generator=generator, S_churn=S_churn, S_tmin=S_tmin, S_tmax=S_tmax,
                     S_noise=S_noise, grad=grad)
        if not return_trajectory:
            return out.to(x.dtype)
        return Trajectory(*(None if t is None else t.to(x.dtype) for t in
                            (out.x, out.denoised, out.sigmas, out.sigmas_hat, out.x_hat)))
    sig = check_sigmas(sigmas)
    if solver == "stochastic":
        S_churn = as_float(S_churn, "S_churn", nonnegative=True)
        S_noise = as_float(S_noise, "S_noise", nonnegative=True)
    n = len(sig) - 1
    B, dtype, device = x.shape[0], x.dtype, x.device
    step = [0]
    name = getattr(denoiser, "name", None) or type(denoiser).__name__

    def D(z, s):
        out = denoiser(z, torch.full((B,), s, dtype=dtype, device=device))
        if not isinstance(out, torch.Tensor) or out.shape != z.shape:
            raise ValueError(f"denoiser returned shape {tuple(getattr(out, 'shape', ()))} ({type(out).__name__}), "
                             f"expected {tuple(z.shape)} like its input (denoiser {name!r})")
        if not bool(torch.isfinite(out).all()):
            bad = torch.nonzero(~torch.isfinite(out).reshape(B, -1).all(1)).flatten().tolist()
            raise NonFiniteError(f"denoiser {name!r} returned NaN or inf at step {step[0]} (sigma={s:.6g}) of "
                                 f"{n}, for batch items {bad[:10]}; its input there was "
                                 f"{'finite' if bool(torch.isfinite(z).all()) else 'already non-finite'}")
        return out

    def noise_like(z):  # drawn on the generator's device (a CPU generator also serves a GPU run)
        gen_device = generator.device if generator is not None else device
        return torch.randn(z.shape, generator=generator, dtype=dtype, device=gen_device).to(device)

    D.step = step
    with torch.set_grad_enabled(grad):
        return _integrate(D, noise_like, x, sig, solver, return_trajectory, progress,
                          S_churn, S_tmin, S_tmax, S_noise)


def _integrate(D, noise_like, x, sig, solver, return_trajectory, progress, S_churn, S_tmin, S_tmax, S_noise):
    n, dtype, device = len(sig) - 1, x.dtype, x.device
    xs = [x] if return_trajectory else None
    dens, sig_hat, x_hats = [], [], []
    steps = range(n)
    if progress:
        from tqdm.auto import tqdm
        steps = tqdm(steps, desc=f"{solver} sampling", leave=False)
    gamma_churn = min(S_churn / n, math.sqrt(2) - 1)
    for i in steps:
        D.step[0] = i
        s, s_next = float(sig[i]), float(sig[i + 1])
        if solver == "stochastic":
            gamma = gamma_churn if S_tmin <= s <= S_tmax else 0.0
            s_hat = s * (1 + gamma)
            if gamma > 0:
                x = x + math.sqrt(s_hat**2 - s**2) * S_noise * noise_like(x)
            s = s_hat
        x0 = D(x, s)
        if return_trajectory and solver == "stochastic":
            x_hats.append(x)
        if solver == "ddim":
            x = _ddim_step(x, x0, s, s_next)
        else:
            d = (x - x0) / s
            if solver == "ancestral":
                s_up = s_next * math.sqrt(max(0.0, 1.0 - (s_next / s) ** 2))
                s_down = s_next**2 / s
                x = x + (s_down - s) * d
                if s_up > 0:
                    x = x + s_up * noise_like(x)
            else:
                x_next = x + (s_next - s) * d
                if solver in ("heun", "stochastic") and s_next > 0:
                    d_next = (x_next - D(x_next, s_next)) / s_next
                    x_next = x + (s_next - s) * 0.5 * (d + d_next)
                x = x_next
        if return_trajectory:
            xs.append(x)
            dens.append(x0)
            sig_hat.append(s)
    if not return_trajectory:
        return x
    return Trajectory(x=torch.stack(xs), denoised=torch.stack(dens), sigmas=sig.to(device, dtype),
                      sigmas_hat=(torch.tensor(sig_hat, dtype=dtype, device=device)
                                  if solver == "stochastic" else None),
                      x_hat=torch.stack(x_hats) if solver == "stochastic" else None)


def _ddim_step(x: torch.Tensor, x0: torch.Tensor, s: float, s_next: float) -> torch.Tensor:
    """One deterministic DDIM step (eta = 0) in VP arithmetic; input and output VE states.

    x_t = sqrt(ab) x, eps_hat = (x_t - sqrt(ab) x0) / sqrt(1 - ab),
    x_{t'} = sqrt(ab') x0 + sqrt(1 - ab') eps_hat, returned as x' = x_{t'} / sqrt(ab')."""
    ab, ab_next = float(sigma_to_alpha_bar(s)), float(sigma_to_alpha_bar(s_next))
    # 1 - alpha_bar = sigma^2 alpha_bar, written so that it does not cancel for tiny sigma
    sqrt_1m_ab, sqrt_1m_ab_next = s * math.sqrt(ab), s_next * math.sqrt(ab_next)
    x_t = math.sqrt(ab) * x
    eps = (x_t - math.sqrt(ab) * x0) / sqrt_1m_ab
    x_t_next = math.sqrt(ab_next) * x0 + sqrt_1m_ab_next * eps
    return x_t_next / math.sqrt(ab_next)
