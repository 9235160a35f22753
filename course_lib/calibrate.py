"""Calibrating the locality scale P(sigma) against a reference denoiser (Chapter 5, Sec. "Coarse to fine").

Kamb & Ganguli (App. C.2) follow a trained network's reverse trajectory from a batch of noise seeds;
at every step k they compare the network's prediction with the (E)LS machines of every candidate
patch size P on the *same* input x_k, pick for each seed the P that matches best (cosine similarity
of the noise predictions), and keep the median over seeds:

    P_k = median_b argmax_P  cos( eps_ref(x_k^b, sigma_k), eps_P(x_k^b, sigma_k) ),
    eps(x, sigma) = (x - D(x, sigma)) / sigma.

The result is a schedule sigma -> P (:class:`PatchSizeSchedule`) to plug into the machines'
``patch_size``. The reference can be ANY denoiser: a trained network wrapped as one, or (in the
tests and in the chapter, before the reference networks exist) an ELS machine with a known schedule,
whose P the calibration must recover.

The trajectory is the reference's own sampling trajectory (:func:`course_lib.sampling.sample`,
deterministic Euler = DDIM in the VE convention by default), or one passed in (e.g. cached network runs).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch

from .denoisers.base import check_images
from .patches import check_patch_size
from .validate import as_float, corrupt_file_error

__all__ = ["PatchSizeSchedule", "CalibrationResult", "calibrate_patch_size", "similarity"]

METRICS = ("cosine", "l2")
TARGETS = ("eps", "x0")


class PatchSizeSchedule:
    """A piecewise-constant patch-size schedule: P(sigma) = P_k for the calibrated sigma_k nearest to
    sigma in log sigma. Callable, so it can be passed as ``patch_size=`` to the local machines."""

    def __init__(self, sigmas: Sequence[float], patch_sizes: Sequence[int]):
        sig = [float(s) for s in sigmas]
        if len(sig) == 0 or len(sig) != len(patch_sizes):
            raise ValueError(f"sigmas and patch_sizes must be non-empty and of equal length, got "
                             f"{len(sig)} and {len(patch_sizes)}")
        if not all(math.isfinite(s) and s > 0 for s in sig):
            raise ValueError(f"sigmas must be finite and > 0, got {sig}")
        self.sigmas = sig
        self.patch_sizes = [check_patch_size(P, "patch_sizes[i]") for P in patch_sizes]
        self._log = torch.tensor([math.log(s) for s in sig], dtype=torch.float64)

    def __call__(self, sigma: float) -> int:
        sigma = as_float(sigma, "sigma (the noise level whose patch size is asked)", positive=True)
        k = int(torch.argmin((self._log - math.log(sigma)).abs()))
        return self.patch_sizes[k]

    def __repr__(self):
        pairs = ", ".join(f"{s:.3g}:{P}" for s, P in zip(self.sigmas, self.patch_sizes))
        return f"PatchSizeSchedule({{{pairs}}})"

    def __eq__(self, other):
        return (isinstance(other, PatchSizeSchedule) and self.sigmas == other.sigmas
                and self.patch_sizes == other.patch_sizes)

    def to_dict(self) -> dict:
        return {"sigmas": self.sigmas, "patch_sizes": self.patch_sizes}

    def save(self, path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1))

    @classmethod
    def load(cls, path) -> "PatchSizeSchedule":
        try:
            d = json.loads(Path(path).read_text())
            return cls(d["sigmas"], d["patch_sizes"])
        except (ValueError, KeyError, TypeError) as e:  # JSONDecodeError is a ValueError
            raise corrupt_file_error(path, e, "delete it and calibrate again (course_lib.calibrate)") from None


@dataclass
class CalibrationResult:
    """``schedule`` (the median choice per step); ``sigmas`` (K,); ``candidates``; ``scores``
    (K, n_candidates, B): the metric per step, candidate and seed (cosine: higher is better; l2:
    mean squared difference, lower is better); ``best`` (K, B): each seed's best P;
    ``trajectory``: the reference's :class:`course_lib.sampling.Trajectory`."""
    schedule: PatchSizeSchedule
    sigmas: torch.Tensor
    candidates: list
    scores: torch.Tensor
    best: torch.Tensor
    metric: str = "cosine"
    target: str = "eps"
    trajectory: object = field(default=None, repr=False)


def similarity(a: torch.Tensor, b: torch.Tensor, metric: str) -> torch.Tensor:
    """Per-image cosine similarity (B,) or mean squared difference (B,) of two batches."""
    a, b = a.reshape(a.shape[0], -1), b.reshape(b.shape[0], -1)
    if metric == "cosine":
        return torch.nn.functional.cosine_similarity(a, b, dim=1, eps=torch.finfo(a.dtype).tiny)
    return (a - b).square().mean(1)


def calibrate_patch_size(reference: Callable, machine: Callable[[int], Callable], x_T: torch.Tensor,
                         sigmas, candidates: Sequence[int], metric: str = "cosine",
                         target: str = "eps", solver: str = "euler", trajectory=None,
                         progress: bool = False) -> CalibrationResult:
    """Calibrate P(sigma) of ``machine`` against ``reference`` along the reference's trajectory.

    Parameters
    ----------
    reference : a denoiser ``D_ref(x, sigma)`` (a network or any machine).
    machine : a factory ``P -> denoiser``, e.g. ``lambda P: EquivariantLocalDenoiser(Y, P, "zeros")``.
    x_T : (B, C, H, W) starting points, already scaled by ``sigmas[0]`` (one per seed).
    sigmas : decreasing noise levels (a trailing 0 is not calibrated).
    candidates : odd patch sizes to try.
    metric : ``"cosine"`` (paper) or ``"l2"``; target : compare ``"eps"`` (paper) or ``"x0"`` = D.
    solver : the sampler of the reference trajectory; trajectory : a precomputed
        :class:`course_lib.sampling.Trajectory` of the reference from ``x_T`` on ``sigmas``.
    """
    from .sampling import check_sigmas, sample

    x_T = check_images(x_T, "x_T")
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
    cands = [check_patch_size(P, "candidates[i]") for P in candidates]
    if not cands:
        raise ValueError("candidates must list at least one odd patch size")
    sig = check_sigmas(sigmas)
    if trajectory is None:
        trajectory = sample(reference, x_T, sig, solver=solver, return_trajectory=True, progress=progress)
    levels = trajectory.sigmas_hat if trajectory.sigmas_hat is not None else trajectory.sigmas[:-1]
    steps = [float(s) for s in levels if float(s) > 0]
    machines = {P: machine(P) for P in cands}
    from tqdm.auto import tqdm

    scores = torch.empty(len(steps), len(cands), x_T.shape[0], dtype=torch.float64)
    for k in tqdm(range(len(steps)), desc="calibrate P", **({} if progress else {"disable": True})):
        s, x, d_ref = steps[k], trajectory.x[k], trajectory.denoised[k]
        ref_q = (x - d_ref) / s if target == "eps" else d_ref
        for j, P in enumerate(cands):
            d = machines[P](x, s)
            scores[k, j] = similarity(ref_q, (x - d) / s if target == "eps" else d, metric).double().cpu()
    pick = scores.argmax(1) if metric == "cosine" else scores.argmin(1)  # (K, B), first best on ties
    best = torch.tensor(cands)[pick]
    chosen = best.median(dim=1).values  # the lower median: always one of the candidates
    schedule = PatchSizeSchedule(steps, [int(P) for P in chosen])
    return CalibrationResult(schedule, torch.tensor(steps, dtype=torch.float64), cands, scores, best,
                             metric, target, trajectory)
