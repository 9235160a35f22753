"""The linear lens against trained networks (Chapter 2, Secs. "The Gaussian score against a trained
network" and "Teleportation in front of a network").

Score agreement. For a reference denoiser D_ref (a network) and candidates D_c (the Gaussian model of
the network's training set, the ideal denoiser of that set, ...), the fraction of squared error of
the scores at x = x_0 + sigma z,

    FSE_c(sigma) = E_x |s_c(x) - s_ref(x)|^2 / |s_ref(x)|^2,   s = (D(x, sigma) - x) / sigma^2,

with one noise draw z shared by every candidate (:func:`score_fse_table`). ``1 - FSE`` is the
fraction of the network's score "explained" by the candidate; :func:`explained_above` finds the noise
level above which it stays over a threshold (99% in Wang & Vastola's CIFAR-10 experiment at sigma >= 5).

Teleportation at a fixed budget. A plain sampler spends NFE(n) = 2n - 1 Heun evaluations on an n-step
Karras grid from sigma_max. Teleportation jumps in closed form to sigma_skip and spends them on an
n-step Karras grid from sigma_skip (:func:`teleport_grid`). :func:`nfe_error_frontier` runs both from
the same x_T and measures each sample's distance to a fine-grid run of the same denoiser, so the error
splits into the solver's discretisation error (falls with n) and the teleportation error (a floor set
by how far the denoiser is from the Gaussian model above sigma_skip).
"""
from __future__ import annotations

import math
from typing import Callable, Mapping, Sequence

import torch

from .denoisers.base import check_images
from .linear import score_fse_over_sigma, teleport
from .metrics import median_ci, r2
from .schedules import karras_sigmas

__all__ = ["score_fse_table", "explained_above", "teleport_grid", "reference_samples", "nfe_error_frontier",
           "best_at_budget", "denoiser_gap_along_trajectory"]


def score_fse_table(reference: Callable, candidates: Mapping[str, Callable], x0: torch.Tensor, sigmas,
                    seed: int = 0, progress: bool = False) -> dict[str, torch.Tensor]:
    """``{name: (S, B) FSE of candidate's score against the reference's}`` at x = x0 + sigma z.

    Every candidate sees the same z (drawn from ``torch.Generator().manual_seed(seed)``), so the
    curves differ only by the denoisers. The reference is typically a trained network.
    """
    if not isinstance(candidates, Mapping) or not candidates:
        raise TypeError("candidates must be a non-empty dict {name: denoiser}")
    return {name: score_fse_over_sigma(reference, den, x0, sigmas, generator=torch.Generator().manual_seed(seed),
                                       progress=progress)
            for name, den in candidates.items()}


def explained_above(sigmas, fse, threshold: float = 0.01) -> float:
    """The smallest sigma above which the mean FSE stays below ``threshold``.

    ``fse`` is (S,) or (S, B) (averaged over dim 1) on increasing ``sigmas``. Between the last grid point
    that fails and the next one, the crossing is interpolated linearly in (log sigma, log FSE), which is
    exact for a power law FSE = c sigma^-p. Returns ``sigmas[0]`` if every point passes and ``inf`` if
    the last one fails.
    """
    s = torch.as_tensor(sigmas, dtype=torch.float64).reshape(-1)
    f = torch.as_tensor(fse, dtype=torch.float64)
    f = f.mean(1) if f.ndim == 2 else f
    if f.ndim != 1 or f.shape[0] != s.shape[0]:
        raise ValueError(f"fse must be (S,) or (S, B) with S = len(sigmas) = {s.shape[0]}, got {tuple(f.shape)}")
    if s.numel() < 1 or not bool((s > 0).all()) or not bool((s[1:] > s[:-1]).all()):
        raise ValueError("sigmas must be positive and strictly increasing")
    if not bool(torch.isfinite(f).all()) or bool((f < 0).any()):
        raise ValueError("fse must be finite and non-negative")
    if not 0 < threshold:
        raise ValueError(f"threshold must be positive, got {threshold!r}")
    fail = torch.nonzero(f >= threshold).reshape(-1)
    if fail.numel() == 0:
        return float(s[0])
    i = int(fail[-1])
    if i == s.numel() - 1:
        return math.inf
    f0, f1 = max(float(f[i]), 1e-300), max(float(f[i + 1]), 1e-300)
    l0, l1 = math.log(s[i]), math.log(s[i + 1])
    t = (math.log(threshold) - math.log(f0)) / (math.log(f1) - math.log(f0))
    return math.exp(l0 + t * (l1 - l0))


def teleport_grid(n: int, sigma_skip: float, sigma_min: float = 0.002, sigma_max: float = 80.0,
                  rho: float = 7.0) -> torch.Tensor:
    """``[sigma_max, karras_sigmas(n, sigma_min, sigma_skip), 0]`` (n + 2 entries) for
    ``teleport(..., skip=1)``; ``sigma_skip == sigma_max`` gives the plain n-step grid (n + 1 entries, skip 0)."""
    if not sigma_min < sigma_skip <= sigma_max:
        raise ValueError(f"need sigma_min < sigma_skip <= sigma_max, got {sigma_min}, {sigma_skip}, {sigma_max}")
    tail = karras_sigmas(n, sigma_min, sigma_skip, rho)
    if sigma_skip == sigma_max:
        return tail
    return torch.cat([torch.tensor([float(sigma_max)], dtype=tail.dtype), tail])


def reference_samples(denoiser: Callable, x_T: torch.Tensor, n_fine: int, sigma_min: float = 0.002,
                      sigma_max: float = 80.0, solver: str = "heun") -> torch.Tensor:
    """The denoiser's own sample from x_T on a fine ``n_fine``-step Karras grid (the error reference)."""
    x0, _ = teleport(denoiser, None, x_T, karras_sigmas(n_fine, sigma_min, sigma_max).to(x_T.device), 0,
                     solver=solver)
    return x0


def nfe_error_frontier(denoiser: Callable, gauss, x_T: torch.Tensor, reference: torch.Tensor,
                       steps: Sequence[int], sigma_skips: Sequence[float], sigma_min: float = 0.002,
                       sigma_max: float = 80.0, solver: str = "heun", progress: bool = False) -> list[dict]:
    """Error against ``reference`` vs denoiser evaluations, for the plain sampler and teleportation.

    For each n in ``steps`` and each sigma_skip in ``sigma_skips`` (``sigma_skip >= sigma_max`` means
    no teleportation) one row: sigma_skip, n_steps, nfe (counted), rmse (root mean square per pixel
    over all samples), r2_median, r2_lo, r2_hi (per-sample r^2 to the reference, median with a 95%
    bootstrap CI) and samples (the final images).
    """
    x_T = check_images(x_T, "x_T")
    reference = check_images(reference, "reference")
    if reference.shape != x_T.shape:
        raise ValueError(f"reference must have x_T's shape {tuple(x_T.shape)}, got {tuple(reference.shape)}")
    configs = [(float(min(s, sigma_max)), int(n)) for s in sigma_skips for n in steps]
    if not configs:
        raise ValueError("steps and sigma_skips must be non-empty")
    it = configs
    if progress:
        from tqdm.auto import tqdm
        it = tqdm(configs, desc="teleportation frontier")
    rows = []
    for ss, n in it:
        grid = teleport_grid(n, ss, sigma_min, sigma_max).to(x_T.device)
        x0, nfe = teleport(denoiser, gauss, x_T, grid, 0 if ss == sigma_max else 1, solver=solver)
        r = r2(x0, reference).clamp(min=-1e12)
        med, lo, hi = median_ci(r, generator=torch.Generator().manual_seed(0))
        rows.append(dict(sigma_skip=ss, n_steps=n, nfe=nfe, rmse=float(((x0 - reference) ** 2).mean().sqrt()),
                         r2_median=med, r2_lo=lo, r2_hi=hi, samples=x0.detach().cpu()))
    return rows


def best_at_budget(rows: Sequence[dict], metric: str = "rmse") -> dict[int, dict]:
    """``{nfe: row}``: at each number of evaluations, the row with the lowest ``metric``."""
    best: dict[int, dict] = {}
    for r in rows:
        if r["nfe"] not in best or r[metric] < best[r["nfe"]][metric]:
            best[r["nfe"]] = r
    return dict(sorted(best.items()))


def denoiser_gap_along_trajectory(net: Callable, gauss, x_T: torch.Tensor, sigmas: torch.Tensor) -> dict:
    """How Gaussian is a denoiser along its own sampling path (Chapter 2, "The Gaussian score against a
    trained network"). Runs Heun with ``net`` from ``x_T`` on ``sigmas`` (ending in 0) and returns, per step
    (sigmas[:-1]), averaged over the batch,

        "at_net_states":  |D_net(x_t) - D_G(x_t)|^2 / |D_net(x_t) - x_t|^2, the fraction of squared error of the
                          scores (as in :func:`score_fse_table`) at the states the network's sampler visits;
        "closed_form":    rms per pixel of D_net(x_t) - D_G(x^G_t), the network's x0-prediction against the
                          Gaussian's along its own closed-form path x^G from the same x_T
                          (:func:`course_lib.linear.ve_denoiser_trajectory`),

    plus "sigmas" (S,). Both are 0 when ``net`` is the Gaussian itself (the second up to Heun's error)."""
    from .linear import ve_denoiser_trajectory
    from .sampling import sample

    x_T = check_images(x_T, "x_T")
    sig = torch.as_tensor(sigmas, dtype=x_T.dtype, device=x_T.device)
    if sig.ndim != 1 or len(sig) < 2 or float(sig[-1]) != 0.0:
        raise ValueError(f"sigmas must be a 1-D grid ending in 0, got shape {tuple(sig.shape)}")
    traj = sample(net, x_T, sig, solver="heun", return_trajectory=True)
    steps = sig[:-1]
    d_net = traj.denoised                                                    # (S, B, C, H, W)
    d_at = torch.stack([gauss(traj.x[i], float(s)) for i, s in enumerate(steps.tolist())]).to(x_T.dtype)
    d_cf = ve_denoiser_trajectory(gauss, x_T.double(), float(sig[0]), steps.double()).to(x_T.dtype)
    fse = ((d_net - d_at).flatten(2).pow(2).sum(-1) / (d_net - traj.x[:-1]).flatten(2).pow(2).sum(-1)).mean(1)
    rms = (d_net - d_cf).flatten(2).pow(2).mean(-1).sqrt().mean(1)
    return {"sigmas": steps.cpu(), "at_net_states": fse.cpu(), "closed_form": rms.cpu()}
