"""Agreement metrics between theory and networks (used from Chapter 0, "Where do the samples land?", on).

All per-image metrics take batches of shape (B, ...) and return one value per image (B,), computed
over every pixel and channel of that image.

- :func:`r2` the pixelwise r^2 of Kamb & Ganguli (2024, Sec. 5 and App. D). The paper says only
  "pixelwise r^2 between the (E)LS machine outputs and the network output", and also calls these
  values "correlations", so both readings are offered: ``kind="determination"`` (default)

      r^2 = 1 - sum_p (pred_p - target_p)^2 / sum_p (target_p - mean(target))^2,

  which can be negative and is not symmetric, and ``kind="pearson"``, the squared Pearson
  correlation of the pixel values, in [0, 1] and symmetric. The course uses the coefficient of
  determination with the network's output as ``target``.
- :func:`mse` mean squared error per image.
- :func:`fraction_squared_error` |a - b|^2 / |b|^2 per sample (the score-comparison metric of
  Wang & Vastola; its complement 1 - FSE is the "explained variance").
- :func:`nearest_neighbor_distance` Euclidean distance to the closest training image, streamed over
  the training set in chunks.
- :func:`median_ci` the median with a percentile-bootstrap confidence interval.
"""
from __future__ import annotations

import torch

from .softmax import squared_distances
from .validate import int_like

__all__ = ["r2", "mse", "fraction_squared_error", "nearest_neighbor_distance", "median_ci",
           "fraction_better"]


def _pair(pred, target, names=("pred", "target")):
    for n, t in zip(names, (pred, target)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{n} must be a torch.Tensor, got {type(t).__name__}")
        if not t.is_floating_point():
            raise TypeError(f"{n} must be a floating-point tensor, got {t.dtype}")
        if t.ndim < 2 or t.shape[0] == 0:
            raise ValueError(f"{n} has shape {tuple(t.shape)}: per-image metrics need a non-empty batch (B, ...) "
                             f"of images (one value per image); for a single image pass {n}[None]")
    if pred.shape != target.shape:
        raise ValueError(f"{names[0]} and {names[1]} must have the same shape, got "
                         f"{tuple(pred.shape)} and {tuple(target.shape)}")
    dtype = torch.promote_types(pred.dtype, target.dtype)
    return pred.reshape(pred.shape[0], -1).to(dtype), target.reshape(target.shape[0], -1).to(dtype)


def r2(pred: torch.Tensor, target: torch.Tensor, kind: str = "determination") -> torch.Tensor:
    """Per-image pixelwise r^2 (B,) between ``pred`` and ``target`` (module docstring).

    ``kind="determination"``: 1 - SSE / SST with SST the target's variance around its own mean
    (NaN-free: a constant target gives -inf unless pred equals it, which gives 1).
    ``kind="pearson"``: squared Pearson correlation of the pixel values.
    """
    p, t = _pair(pred, target)
    if kind == "determination":
        sse = ((p - t) ** 2).sum(1)
        sst = ((t - t.mean(1, keepdim=True)) ** 2).sum(1)
        out = 1 - sse / sst
        return torch.where(sst > 0, out, torch.where(sse > 0, torch.full_like(out, -float("inf")),
                                                     torch.ones_like(out)))
    if kind == "pearson":
        pc, tc = p - p.mean(1, keepdim=True), t - t.mean(1, keepdim=True)
        cov = (pc * tc).sum(1)
        var = (pc * pc).sum(1) * (tc * tc).sum(1)
        return torch.where(var > 0, cov**2 / var, torch.zeros_like(cov))
    raise ValueError(f"kind must be 'determination' or 'pearson', got {kind!r}")


def mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image mean squared error (B,): mean_p (pred_p - target_p)^2."""
    p, t = _pair(pred, target)
    return ((p - t) ** 2).mean(1)


def fraction_squared_error(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-sample fraction of squared error |a - b|^2 / |b|^2 (B,), with ``b`` the reference
    (e.g. the network's score); 1 - FSE is the explained variance. Raises if some |b| = 0."""
    x, y = _pair(a, b, ("a", "b"))
    den = (y * y).sum(1)
    if bool((den == 0).any()):
        raise ValueError("b has a sample with zero norm: the fraction of squared error is undefined")
    return ((x - y) ** 2).sum(1) / den


def nearest_neighbor_distance(x: torch.Tensor, train: torch.Tensor, chunk_size: int = 4096,
                              return_index: bool = True):
    """Distance from each ``x[b]`` to its nearest training image, min_n |x_b - train_n| (B,).

    Streams over ``train`` in chunks of ``chunk_size`` (memory B x chunk_size), computing the squared
    distances with :func:`course_lib.softmax.squared_distances`. ``train`` may live on another
    device (each chunk is moved to ``x``'s). Returns ``(dist, index)`` or just ``dist``.
    """
    chunk_size = int_like(chunk_size)
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be an int >= 1, got {chunk_size!r}")
    for n, t in (("x", x), ("train", train)):
        if not isinstance(t, torch.Tensor) or not t.is_floating_point() or t.ndim < 2 or t.shape[0] == 0:
            raise ValueError(f"{n} must be a non-empty floating tensor (N, ...), got "
                             f"{getattr(t, 'shape', type(t).__name__)}")
    if x.shape[1:] != train.shape[1:]:
        raise ValueError(f"x images {tuple(x.shape[1:])} and train images {tuple(train.shape[1:])} differ")
    q = x.reshape(x.shape[0], -1)
    best = torch.full((x.shape[0],), float("inf"), dtype=q.dtype, device=q.device)
    idx = torch.zeros(x.shape[0], dtype=torch.long, device=q.device)
    for start in range(0, train.shape[0], chunk_size):
        k = train[start:start + chunk_size].reshape(-1, q.shape[1]).to(q.device, q.dtype)
        d2, j = squared_distances(q, k).min(1)
        better = d2 < best
        best = torch.where(better, d2, best)
        idx = torch.where(better, j + start, idx)
    dist = best.sqrt()
    return (dist, idx) if return_index else dist


def median_ci(values, n_boot: int = 2000, ci: float = 0.95, generator: torch.Generator | None = None):
    """Median of ``values`` with a percentile-bootstrap CI: returns ``(median, lo, hi)`` as floats.

    Resamples the values with replacement ``n_boot`` times (seeded by ``generator``), takes the
    median of each resample and returns the (1-ci)/2 and (1+ci)/2 quantiles of those medians.
    """
    v = torch.as_tensor(values).detach().reshape(-1).to(torch.float64).cpu()
    if v.numel() == 0:
        raise ValueError("values is empty")
    if not bool(torch.isfinite(v).all()):
        raise ValueError("values contains NaN or inf")
    if not 0 < ci < 1:
        raise ValueError(f"ci must be in (0, 1), got {ci!r}")
    n_boot = int_like(n_boot)
    if not isinstance(n_boot, int) or n_boot < 1:
        raise ValueError(f"n_boot must be an int >= 1, got {n_boot!r}")
    n = v.numel()
    meds = []
    chunk = max(1, 2**22 // n)
    for start in range(0, n_boot, chunk):
        m = min(chunk, n_boot - start)
        idx = torch.randint(0, n, (m, n), generator=generator)
        meds.append(v[idx].quantile(0.5, dim=1))
    meds = torch.cat(meds)
    q = torch.tensor([(1 - ci) / 2, (1 + ci) / 2], dtype=torch.float64)
    lo, hi = meds.quantile(q).tolist()
    return float(v.quantile(0.5)), lo, hi


def fraction_better(a, b) -> float:
    """Fraction of paired samples where ``a`` exceeds ``b`` (ties count half): e.g. how often one
    theory's r^2 beats another's on the same seeds."""
    a = torch.as_tensor(a, dtype=torch.float64).reshape(-1)
    b = torch.as_tensor(b, dtype=torch.float64).reshape(-1)
    if a.shape != b.shape or a.numel() == 0:
        raise ValueError(f"a and b must be non-empty and of the same length, got {a.numel()} and {b.numel()}")
    return float(((a > b).double() + 0.5 * (a == b).double()).mean())
