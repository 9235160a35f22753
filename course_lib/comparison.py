"""The result of a same-noise comparison (:func:`course_lib.compare.compare`): per-seed r^2 and MSE of
each candidate against the reference, their medians with bootstrap CIs, win fractions, a table, an
image grid and per-step curves (Chapters 2, 4-7)."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .metrics import fraction_better, median_ci

__all__ = ["Comparison"]


@dataclass
class Comparison:
    """Per-seed agreement of each candidate with the reference (module doc).

    ``r2[name]``, ``mse[name]``: (S,) final-sample agreement (single step: mean over steps);
    ``step_r2[name]``, ``step_mse[name]``: (T, S) x0-prediction agreement at ``sigmas[t]``;
    ``samples[name]``: (S, C, H, W) final samples (reference included; single step: reference only).
    """
    kind: str
    names: list
    reference: str
    seeds: list
    sigmas: torch.Tensor
    solver: str
    r2: dict
    mse: dict
    step_r2: dict
    step_mse: dict
    samples: dict
    calls: dict = field(default_factory=dict)
    dropped: dict = field(default_factory=dict)  # name -> why (``on_nonfinite="drop"``)

    def _values(self, name, metric, step):
        if name not in self.names:
            raise KeyError(f"unknown candidate {name!r}; candidates are {self.names}")
        if metric not in ("r2", "mse"):
            raise ValueError(f"metric must be 'r2' or 'mse', got {metric!r}")
        if step is None:
            return (self.r2 if metric == "r2" else self.mse)[name]
        return (self.step_r2 if metric == "r2" else self.step_mse)[name][step]

    def median(self, name, metric: str = "r2", step: int | None = None, ci: float = 0.95,
               n_boot: int = 2000, seed: int = 0):
        """(median, lo, hi) over seeds with a bootstrap CI (:func:`course_lib.metrics.median_ci`)."""
        v = self._values(name, metric, step).clamp(min=-1e12)  # r^2 = -inf only for a constant target
        return median_ci(v, n_boot=n_boot, ci=ci, generator=torch.Generator().manual_seed(seed))

    def beats(self, a: str, b: str, metric: str = "r2", step: int | None = None) -> float:
        """Fraction of seeds where candidate ``a`` agrees better with the reference than ``b`` does
        (higher r^2, or lower MSE); ties count half."""
        va, vb = self._values(a, metric, step), self._values(b, metric, step)
        return fraction_better(va, vb) if metric == "r2" else fraction_better(-va, -vb)

    def summary(self, ci: float = 0.95, n_boot: int = 2000) -> dict:
        """{name: {"r2": (median, lo, hi), "mse": (median, lo, hi)}} over the seeds."""
        return {n: {m: self.median(n, m, ci=ci, n_boot=n_boot) for m in ("r2", "mse")} for n in self.names}

    def step_medians(self, metric: str = "r2") -> dict:
        """{name: (T,) median over seeds at each step}."""
        d = self.step_r2 if metric == "r2" else self.step_mse
        return {n: d[n].double().quantile(0.5, dim=1) for n in self.names}

    def table(self, ci: float = 0.95, n_boot: int = 2000) -> str:
        """Plain-text table: median r^2 and MSE with CIs per candidate, then pairwise win fractions."""
        what = "final samples" if self.kind == "trajectory" else "mean over steps, single-step"
        lines = [f"vs {self.reference!r} ({what}; {len(self.seeds)} seeds, {self.solver}, "
                 f"{len(self.sigmas) - 1} steps; median [{ci:.0%} bootstrap CI])",
                 f"{'candidate':<22} {'median r2 [CI]':>27} {'median MSE [CI]':>31}"]
        for n, s in self.summary(ci, n_boot).items():
            (r, rl, rh), (m, ml, mh) = s["r2"], s["mse"]
            lines.append(f"{n:<22} {r:>8.3f} [{rl:>7.3f}, {rh:>7.3f}] {m:>10.4g} [{ml:>8.3g}, {mh:>8.3g}]")
        for i, a in enumerate(self.names):
            for b in self.names[i + 1:]:
                lines.append(f"r2: {a} beats {b} on {self.beats(a, b):.0%} of seeds")
        return "\n".join(lines)

    def __str__(self):
        return self.table()

    def image_grid(self, n: int = 8, vmin: float = -1.0, vmax: float = 1.0, axes=None):
        """Side by side (:func:`course_lib.plot.compare_grid`): one labelled row per denoiser, reference
        first, one column per seed (the first ``n``); candidate rows show the median r^2. Returns the figure."""
        from .plot import compare_grid

        rows = {self.reference: self.samples[self.reference]}
        for k in self.names:
            if k in self.samples:
                rows[f"{k}\nr²={float(self.r2[k].double().quantile(0.5)):.2f}"] = self.samples[k]
        return compare_grid(rows, n_images=min(n, len(self.seeds)), vmin=vmin, vmax=vmax, axes=axes)

    def plot_steps(self, metric: str = "r2", ax=None):
        """Median (over seeds) agreement of the x0-predictions vs the step's sigma, one line per candidate."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(4.5, 3))
        s = self.sigmas[:-1].double()
        for n, med in self.step_medians(metric).items():
            d = self.step_r2[n] if metric == "r2" else self.step_mse[n]
            lo, hi = d.double().quantile(torch.tensor([0.25, 0.75], dtype=torch.float64), dim=1)
            ax.plot(s, med, marker=".", label=n)
            ax.fill_between(s, lo, hi, alpha=0.2)
        ax.set_xscale("log")
        ax.set_xlabel("sigma")
        ax.set_ylabel({"r2": "r$^2$ vs reference", "mse": "MSE vs reference"}[metric])
        ax.set_title(f"x0-predictions ({'own trajectories' if self.kind == 'trajectory' else 'single step'}); "
                     f"median, IQR", fontsize=10)
        ax.legend(fontsize=10)
        return ax
