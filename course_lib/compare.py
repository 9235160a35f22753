"""Same-noise comparisons of denoisers, e.g. an analytic theory against a trained network (Chapters 2, 4-7).

Two ways to compare a candidate denoiser D_a with a reference D_ref (usually the network), both on a
list of integer noise seeds:

1. **Trajectories** (:func:`compare`, Kamb & Ganguli 2024 Sec. 5; Lukoianov et al. 2025): both are
   sampled with the same solver and sigma grid from the SAME initial noise

       x_T(seed) = sigmas[0] * z,   z ~ N(0, I) drawn from torch.Generator().manual_seed(seed)

   (drawn in float32 on the CPU, then cast and moved, so seed k gives the same noise whatever the
   batch, dtype or device). Per seed we report the pixelwise r^2 (:func:`course_lib.metrics.r2`,
   coefficient of determination with the reference as target) and the MSE of the final samples, and
   the same two numbers for the x0-predictions D_a(x_t^a, sigma_t) vs D_ref(x_t^ref, sigma_t) at every
   step, each along its own trajectory.
2. **Single step** (:func:`compare_single_step`): the candidate is evaluated on the states x_t of the
   reference's trajectory, D_a(x_t^ref, sigma_t) vs D_ref(x_t^ref, sigma_t), so errors do not
   compound along the trajectory. Its ``r2`` / ``mse`` are the per-seed means over the steps.

Stochastic solvers (``"stochastic"``, ``"ancestral"``) draw their fresh noise from a per-seed
generator and run one seed at a time, so the result of a seed never depends on the batch it was in.

Caching: trajectories (and single-step predictions) are stored under ``<cache dir>/compare/``
(``data/cache`` by default, git-ignored; see :func:`course_lib.stats.cache_dir`), one file per
(denoiser identity, sigma grid, solver, image shape, dtype) holding one entry per seed, so a chapter
re-run, or a run with more seeds, only computes the missing seeds. A denoiser's identity is its
``cache_key`` attribute (networks have one) or an explicit ``keys={name: key}`` entry. With
``cache="auto"`` denoisers without an identity are simply recomputed; ``cache=True`` requires one for
every denoiser; ``cache=False`` never reads or writes.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch

from .comparison import Comparison
from .metrics import mse, r2
from .sampling import SOLVERS, check_sigmas, sample
from .validate import NonFiniteError, as_int, check_denoiser, check_finite

__all__ = ["initial_noise", "run_trajectories", "Trajectories", "compare", "compare_single_step",
           "Comparison", "denoiser_key"]

CACHE_VERSION = 1
STOCHASTIC = ("stochastic", "ancestral")


def initial_noise(seeds, shape, sigma_max: float, dtype=torch.float32, device=None) -> torch.Tensor:
    """x_T for each seed: sigma_max * randn(shape) from ``torch.Generator().manual_seed(seed)``; (S, *shape)."""
    seeds = _check_seeds(seeds)
    shape = _check_shape(shape)
    z = torch.stack([torch.randn(shape, generator=torch.Generator().manual_seed(s)) for s in seeds])
    return (float(sigma_max) * z).to(device=device, dtype=dtype)


def _check_seeds(seeds) -> list[int]:
    if getattr(seeds, "ndim", 1) == 0 or not hasattr(seeds, "__iter__"):
        raise TypeError(f"seeds must be a list of ints (e.g. range({seeds})), got the number {seeds!r}")
    seeds = [as_int(s, "every seed", 0) for s in seeds]
    if not seeds:
        raise ValueError("seeds must be a non-empty list of non-negative ints, got an empty one")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct, got {seeds!r}")
    return seeds


def _check_shape(shape) -> tuple:
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"shape must be an image shape (C, H, W), got {shape!r}")
    return shape


def denoiser_key(denoiser, key: str | None = None) -> str | None:
    """The identity used for caching: ``key`` if given, else ``denoiser.cache_key``, else None.

    For a network (the denoiser, or its ``net`` attribute, is a ``torch.nn.Module``) a hash of its
    weights is appended, so retrained weights under the same name never hit stale trajectories.
    """
    k = key if key is not None else getattr(denoiser, "cache_key", None)
    if k is None:
        return None
    if not isinstance(k, str) or not k:
        raise ValueError(f"a cache key must be a non-empty string, got {k!r}")
    module = denoiser if isinstance(denoiser, torch.nn.Module) else getattr(denoiser, "net", None)
    if isinstance(module, torch.nn.Module):
        h = hashlib.blake2b(digest_size=8)
        for n, t in module.state_dict().items():
            t = t.detach().contiguous().cpu()
            h.update(f"{n}|{tuple(t.shape)}|{t.dtype}".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().data)
        k = f"{k}|weights:{h.hexdigest()}"
    return k


# ------------------------------------------------------------------------------------------ cache
def _cache_path(parts: dict, label: str, cache_dir):
    from .stats import cache_dir as _root

    h = hashlib.blake2b(repr(sorted(parts.items())).encode(), digest_size=16).hexdigest()
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in label)[:60]
    return _root(cache_dir) / "compare" / f"{safe}-{h}.pt"


def _load(path) -> dict:
    if path is None or not path.is_file():
        return {}
    try:
        return torch.load(path, weights_only=True, map_location="cpu")
    except Exception:  # a corrupt or foreign file only costs recomputation
        return {}


def _save(path, entries: dict) -> None:
    if path is not None:  # atomic; a read-only cache directory only costs recomputation
        from .stats import atomic_torch_save
        atomic_torch_save(entries, path)


def _resolve_cache(cache, key, name):
    if cache not in (True, False, "auto"):
        raise ValueError(f"cache must be True, False or 'auto', got {cache!r}")
    if cache is True and key is None:
        raise ValueError(f"cache=True but denoiser {name!r} has no identity: give it a cache_key attribute "
                         f"or pass keys={{{name!r}: '...'}} (or use cache='auto' to recompute it)")
    return cache is not False and key is not None


# ------------------------------------------------------------------------------------------ runs
@dataclass
class Trajectories:
    """Sampling runs of one denoiser for a list of seeds (CPU tensors).

    ``x[i]`` (T+1, S, C, H, W) is the state at ``sigmas[i]`` (``x[-1]`` the samples); ``denoised[i]``
    (T, S, C, H, W) is D(x[i], sigmas[i]). ``calls`` counts denoiser calls made (0 on a cache hit).
    """
    seeds: list
    sigmas: torch.Tensor
    x: torch.Tensor
    denoised: torch.Tensor
    calls: int = 0

    @property
    def samples(self) -> torch.Tensor:
        return self.x[-1]


class _Counted:
    def __init__(self, D):
        self.D, self.calls = D, 0

    def __call__(self, x, sigma):
        self.calls += 1
        return self.D(x, sigma)


def _seed_generator(seed: int, device) -> torch.Generator:
    """Generator for a seed's fresh sampler noise, decorrelated from its x_T stream."""
    h = int.from_bytes(hashlib.blake2b(f"sampler-noise:{seed}".encode(), digest_size=8).digest(), "big")
    return torch.Generator(device=device).manual_seed(h % 2**63)


def _batches(items, size, progress, desc):
    chunks = [items[i:i + size] for i in range(0, len(items), size)]
    if progress and len(chunks) > 0:
        from tqdm.auto import tqdm
        return tqdm(chunks, desc=desc, leave=False)
    return chunks


def run_trajectories(denoiser, sigmas, seeds, shape, solver: str = "heun", *, key: str | None = None,
                     cache="auto", cache_dir=None, dtype=torch.float32, device=None, batch_size: int = 32,
                     progress: bool = False, name: str | None = None,
                     sampler_kwargs: dict | None = None) -> Trajectories:
    """Sample ``denoiser`` from :func:`initial_noise` for every seed (batched, cached; module doc).

    ``sampler_kwargs`` go to :func:`course_lib.sampling.sample` (e.g. ``S_churn``) and into the cache key.
    """
    check_denoiser(denoiser, f"denoiser {name!r}" if name else "denoiser")
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}")
    batch_size = as_int(batch_size, "batch_size", 1)
    sig = check_sigmas(sigmas)
    seeds, shape = _check_seeds(seeds), _check_shape(shape)
    name = name or getattr(denoiser, "name", None) or type(denoiser).__name__
    k = denoiser_key(denoiser, key)
    path = None
    if _resolve_cache(cache, k, name):
        parts = {"v": CACHE_VERSION, "kind": "trajectory", "key": k, "sigmas": sig.tolist(),
                 "solver": solver, "shape": shape, "dtype": str(dtype),
                 "sampler_kwargs": sorted((sampler_kwargs or {}).items())}
        path = _cache_path(parts, f"{name}-{solver}", cache_dir)
    entries = _load(path)
    missing = [s for s in seeds if s not in entries]
    D = _Counted(denoiser)
    size = 1 if solver in STOCHASTIC else batch_size
    for chunk in _batches(missing, size, progress, f"sampling {name}"):
        x_T = initial_noise(chunk, shape, float(sig[0]), dtype, device)
        gen = _seed_generator(chunk[0], x_T.device) if solver in STOCHASTIC else None
        try:
            with torch.no_grad():
                tr = sample(D, x_T, sig, solver, return_trajectory=True, generator=gen, **(sampler_kwargs or {}))
        except NonFiniteError as e:
            raise NonFiniteError(f"candidate {name!r} (seeds {chunk}): {e}") from None
        for j, s in enumerate(chunk):
            entries[s] = {"x": tr.x[:, j].detach().cpu().clone(), "denoised": tr.denoised[:, j].detach().cpu().clone()}
    if missing:
        _save(path, entries)
    x = torch.stack([entries[s]["x"] for s in seeds], dim=1)
    den = torch.stack([entries[s]["denoised"] for s in seeds], dim=1)
    return Trajectories(seeds, sig, x, den, D.calls)


def _named(candidates, reference, reference_name):
    if isinstance(candidates, dict):
        if not candidates:
            raise ValueError("candidates is an empty dict")
        named = dict(candidates)
    elif callable(candidates):
        named = {getattr(candidates, "name", None) or "candidate": candidates}
    else:
        raise TypeError(f"candidates must be a denoiser or a dict {{name: denoiser}}, got {type(candidates).__name__}")
    for n, D in list(named.items()) + [(reference_name, reference)]:
        check_denoiser(D, f"denoiser {n!r}")
    if reference_name in named:
        raise ValueError(f"candidate name {reference_name!r} clashes with reference_name")
    return named


def _pair_metrics(pred, target):
    """Per-image r^2 and MSE over a (..., S, C, H, W) stack, returned as (..., S)."""
    lead = pred.shape[:-3]
    p, t = pred.reshape(-1, *pred.shape[-3:]), target.reshape(-1, *target.shape[-3:])
    return r2(p, t).reshape(lead), mse(p, t).reshape(lead)


def compare(candidates, reference, sigmas, seeds, shape, solver: str = "heun", *, keys: dict | None = None,
            reference_name: str = "reference", cache="auto", cache_dir=None, dtype=torch.float32,
            device=None, batch_size: int = 32, progress: bool = False,
            sampler_kwargs: dict | None = None, on_nonfinite: str = "raise") -> Comparison:
    """Sample every candidate and the reference from the same noise and compare them (module doc, 1.).

    ``candidates`` is a denoiser or a dict {name: denoiser}; ``keys`` optionally maps names (and
    ``reference_name``) to cache identities. A candidate whose sampler returns NaN or inf raises a
    :class:`~course_lib.validate.NonFiniteError` naming it; with ``on_nonfinite="drop"`` it is left out
    of the comparison instead and listed, with the reason, in ``Comparison.dropped``.
    """
    if on_nonfinite not in ("raise", "drop"):
        raise ValueError(f"on_nonfinite must be 'raise' or 'drop', got {on_nonfinite!r}")
    named = _named(candidates, reference, reference_name)
    keys = dict(keys or {})
    common = dict(cache=cache, cache_dir=cache_dir, dtype=dtype, device=device, batch_size=batch_size,
                  progress=progress, sampler_kwargs=sampler_kwargs)
    ref = run_trajectories(reference, sigmas, seeds, shape, solver, key=keys.get(reference_name),
                           name=reference_name, **common)
    out = dict(r2={}, mse={}, step_r2={}, step_mse={}, samples={reference_name: ref.samples},
               calls={reference_name: ref.calls})
    dropped = {}
    for n, D in named.items():
        try:
            tr = run_trajectories(D, sigmas, seeds, shape, solver, key=keys.get(n), name=n, **common)
        except NonFiniteError as e:
            if on_nonfinite == "raise":
                raise
            dropped[n] = str(e)
            continue
        out["r2"][n], out["mse"][n] = _pair_metrics(tr.samples, ref.samples)
        out["step_r2"][n], out["step_mse"][n] = _pair_metrics(tr.denoised, ref.denoised)
        out["samples"][n], out["calls"][n] = tr.samples, tr.calls
    return Comparison("trajectory", [n for n in named if n not in dropped], reference_name, ref.seeds, ref.sigmas,
                      solver, dropped=dropped, **out)


def compare_single_step(candidates, reference, sigmas, seeds, shape, solver: str = "heun", *,
                        keys: dict | None = None, reference_name: str = "reference", cache="auto",
                        cache_dir=None, dtype=torch.float32, device=None, batch_size: int = 32,
                        progress: bool = False, sampler_kwargs: dict | None = None) -> Comparison:
    """Evaluate every candidate on the reference trajectory's states x_t (module doc, 2.).

    Each candidate sees D_a(x[t], sigmas[t]) for all steps t and seeds, batched over (step, seed)
    pairs with a per-sample sigma; its predictions are cached under its identity and the reference's.
    """
    if solver == "stochastic":
        raise ValueError("solver='stochastic' evaluates the denoiser at churned states that the trajectory "
                         "does not record; use 'heun', 'euler', 'ddim' or 'ancestral' for single-step comparisons")
    named = _named(candidates, reference, reference_name)
    keys = dict(keys or {})
    ref_key = denoiser_key(reference, keys.get(reference_name))
    ref = run_trajectories(reference, sigmas, seeds, shape, solver, key=ref_key, name=reference_name,
                           cache=cache, cache_dir=cache_dir, dtype=dtype, device=device,
                           batch_size=batch_size, progress=progress, sampler_kwargs=sampler_kwargs)
    T = ref.denoised.shape[0]
    sig_steps = ref.sigmas[:T]
    out = dict(r2={}, mse={}, step_r2={}, step_mse={}, samples={reference_name: ref.samples},
               calls={reference_name: ref.calls})
    for n, D in named.items():
        k = denoiser_key(D, keys.get(n))
        path = None
        if _resolve_cache(cache, k, n) and ref_key is not None:
            parts = {"v": CACHE_VERSION, "kind": "single-step", "key": k, "reference": ref_key,
                     "sigmas": ref.sigmas.tolist(), "solver": solver, "shape": _check_shape(shape),
                     "dtype": str(dtype), "sampler_kwargs": sorted((sampler_kwargs or {}).items())}
            path = _cache_path(parts, f"{n}-on-{reference_name}-{solver}", cache_dir)
        entries = _load(path)
        missing = [s for s in ref.seeds if s not in entries]
        Dc = _Counted(D)
        if missing:
            cols = [ref.seeds.index(s) for s in missing]
            xs = ref.x[:T, cols]  # (T, M, C, H, W)
            flat = xs.reshape(-1, *xs.shape[2:])
            sig = sig_steps.to(dtype).repeat_interleave(len(cols))
            preds = []
            for idx in _batches(list(range(flat.shape[0])), batch_size, progress, f"single-step {n}"):
                sl = slice(idx[0], idx[-1] + 1)
                with torch.no_grad():
                    xb = flat[sl].to(device=device, dtype=dtype)
                    preds.append(check_finite(Dc(xb, sig[sl].to(xb.device)).detach().cpu(), f"candidate {n!r}'s output",
                                              f"on reference states {sl.start}..{sl.stop - 1} (step-major)"))
            preds = torch.cat(preds).reshape(xs.shape)
            for j, s in enumerate(missing):
                entries[s] = preds[:, j].clone()
            _save(path, entries)
        pred = torch.stack([entries[s] for s in ref.seeds], dim=1)
        out["step_r2"][n], out["step_mse"][n] = _pair_metrics(pred, ref.denoised)
        out["r2"][n], out["mse"][n] = out["step_r2"][n].mean(0), out["step_mse"][n].mean(0)
        out["calls"][n] = Dc.calls
    return Comparison("single-step", list(named), reference_name, ref.seeds, ref.sigmas, solver, **out)
