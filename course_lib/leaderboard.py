"""One table of every analytic denoiser against every committed network (Chapter 7, "The leaderboard").

    python -m course_lib.leaderboard --scale {ci,book,paper} [--machines ...] [--networks ...] [--out FILE]

For every (machine, network) pair the machine and the network are sampled from the SAME noise seeds
with the same sampler and sigma grid through :func:`course_lib.compare.compare` (the network is the
reference): x_T(seed) = sigma_max z, the Euler (DDIM) sampler on ``karras_sigmas(n_steps, 0.01, 80)``,
the grid on which the committed calibrations were made (Kamb & Ganguli 2025, App. C.2). Per pair:

* ``median_r2 [ci_low, ci_high]``: median over seeds of the pixelwise r^2 of the machine's final sample
  with the network's as target, with a percentile-bootstrap CI (:meth:`Comparison.median`);
* ``median_mse``: the same for the MSE;
* ``beats_ideal``: fraction of seeds where the machine's r^2 beats the ideal denoiser's (ties count half);
* ``step_r2``: median r^2 of the x0-predictions at every step, each along its own trajectory;
* ``seconds_per_call``: wall-clock seconds per batched denoiser call of the machine (measured in the run).

Every machine is built on the network's OWN training images (the first ``n_train`` of them in the order
the checkpoint records, :func:`course_lib.creativity.network_training_images`). Machines with a calibrated
patch-size schedule (LS, ELS) use the network's committed calibration ``data/calibration/<net>.json``;
a network without one borrows the calibration of the committed network of the same architecture on the
same dataset (``calibration`` column of the markdown table says which). Chapter 4's data-local denoiser
uses Wiener masks fitted to the same training images with the authors' threshold tau for the data set
(``course_lib.locality.TAU``); Niedoba et al.'s patch-set denoiser their patch-size schedule.

Finished pairs are cached in ``<out dir>/leaderboard_cache/<scale>.json`` keyed by everything that
determines them, so an interrupted run resumes where it stopped.
"""
from __future__ import annotations

import argparse
import csv
import functools
import importlib.util
import json
import sys
import time
from pathlib import Path

import torch

from .compare import compare

__all__ = ["MACHINES", "SETTINGS", "COLUMNS", "build_machine", "calibration_for", "run_pair", "run", "to_markdown", "summary_markdown",
           "plot", "read_csv", "load", "main"]

RESULTS = Path(__file__).resolve().parents[1] / "data" / "results"
COLUMNS = ["machine", "network", "dataset", "n_seeds", "median_r2", "ci_low", "ci_high", "median_mse",
           "seconds_per_call"]
EXTRA = ["beats_ideal", "step_r2", "calibration", "n_train"]

# scale -> sampler, seeds and training-set size of the machines; networks None = every committed one
SETTINGS = {
    "ci": dict(n_seeds=3, n_steps=8, n_train=24, networks=["mnist_unet_book", "mnist_resnet_book"]),
    "book": dict(n_seeds=8, n_steps=20, n_train=100, networks=None),
    "paper": dict(n_seeds=100, n_steps=20, n_train=None, networks=None),
}
SIGMA_MIN, SIGMA_MAX, RHO, SOLVER = 0.01, 80.0, 7.0, "euler"
KERNEL_S = 0.1          # Chapter 1's kernel width s (smoothing (a)) used for the "smoothed" machine
GMM_K = 10              # Gaussian mixture: one Gaussian per k-means cluster, at most 10 (as many as classes)


def _machines():
    from .creativity import machine_factory
    from .denoisers import (GaussianDenoiser, GaussianMixtureDenoiser, IdealDenoiser, KernelSmoothedDenoiser,
                            WaveletDenoiser)

    def els(boundary):
        return lambda X, cal: machine_factory("ELS", X, boundary)(cal["ELS"])

    return {
        "ideal": lambda X, cal: IdealDenoiser(X),
        "smoothed": lambda X, cal: KernelSmoothedDenoiser(X, KERNEL_S),
        "wiener": lambda X, cal: GaussianDenoiser.from_data(X, correction=0),
        "gmm": lambda X, cal: _gmm(X),
        "LS": lambda X, cal: machine_factory("LS", X, "zeros")(cal["LS"]),
        "ELS": els("circular"),
        "ELS-zeros": els("zeros"),     # boundary-broken ELS (Kamb & Ganguli Sec. 4)
        "wavelet-independent": lambda X, cal: WaveletDenoiser(X, "independent"),
        "wavelet-local_coupled": lambda X, cal: WaveletDenoiser(X, "local_coupled"),
    } | _chapter4_machines()


def _chapter4_machines() -> dict:
    """Chapter 4's data-local denoiser (Lukoianov et al. 2025; Wiener masks with the authors' tau for the
    data set) and Niedoba et al.'s patch-set denoiser (their patch-size schedule), when present."""
    if importlib.util.find_spec("course_lib.denoisers.datalocal") is None:
        return {}
    from .denoisers import DataLocalDenoiser, PatchSetDenoiser
    from .denoisers.patchset import niedoba_schedule
    from .locality import TAU, WienerMasks

    return {"data-local": lambda X, cal, dataset="mnist": DataLocalDenoiser(X, WienerMasks(X, TAU[dataset])),
            "niedoba": lambda X, cal, dataset="mnist": PatchSetDenoiser(X, niedoba_schedule(X.shape[-1]))}


def _gmm(X):
    """k-means Gaussian mixture with k = min(GMM_K, N // 4), lowered until every cluster has >= 2 images."""
    from .denoisers import GaussianMixtureDenoiser

    for k in range(max(1, min(GMM_K, len(X) // 4)), 0, -1):
        try:
            return GaussianMixtureDenoiser.from_kmeans(X, k, correction=0, generator=torch.Generator().manual_seed(0))
        except ValueError as e:
            if "needs >= 2" not in str(e) or k == 1:
                raise


MACHINES = ("ideal", "smoothed", "wiener", "gmm", "LS", "ELS", "ELS-zeros", "wavelet-independent",
            "wavelet-local_coupled") + (("data-local", "niedoba")
                                        if importlib.util.find_spec("course_lib.denoisers.datalocal") else ())
CALIBRATED = ("LS", "ELS", "ELS-zeros")


def build_machine(name: str, train_images: torch.Tensor, calibration=None, dataset: str = "mnist"):
    """The machine ``name`` (one of :data:`MACHINES`) on ``train_images``; LS/ELS need a calibration,
    the data-local machine the ``dataset`` name (for its threshold tau)."""
    table = _machines()
    if name not in table:
        raise ValueError(f"machine must be one of {MACHINES}, got {name!r}")
    if name in CALIBRATED and calibration is None:
        raise ValueError(f"machine {name!r} needs a calibration (a NetworkCalibration), got None")
    if name in ("data-local", "niedoba"):
        return table[name](train_images, calibration, dataset)
    return table[name](train_images, calibration)


def calibration_for(network: str):
    """(calibration, name of the calibrated network used): the network's own committed calibration, or
    that of the committed network of the same architecture on the same dataset."""
    from .creativity import CALIBRATION_DIR, load_calibration
    from .nets import load_pretrained

    if (CALIBRATION_DIR / f"{network}.json").is_file():
        return load_calibration(network), network
    cfg = load_pretrained(network).config
    for p in sorted(CALIBRATION_DIR.glob("*.json")):
        other = load_pretrained(p.stem).config if p.stem in _pretrained() else None
        if other and other["dataset"] == cfg["dataset"] and other["arch"] == cfg["arch"]:
            return load_calibration(p.stem), p.stem
    raise FileNotFoundError(f"no calibration for {network!r} nor for a network of the same architecture "
                            f"({cfg['arch']}) on {cfg['dataset']}; run `python -m course_lib.creativity {network}`")


def _pretrained():
    from .nets import list_pretrained
    return list_pretrained()


class _Timed:
    """A denoiser wrapper that counts calls and accumulates their wall-clock time."""

    def __init__(self, D):
        self.D, self.calls, self.seconds = D, 0, 0.0

    def __call__(self, x, sigma):
        t = time.perf_counter()
        out = self.D(x, sigma)
        self.seconds += time.perf_counter() - t
        self.calls += 1
        return out


def run_pair(machine: str, network, seeds, n_steps: int, n_train: int | None, *, ideal_r2=None,
             device=None, n_boot: int = 2000) -> tuple[dict, object]:
    """One leaderboard row (a dict with :data:`COLUMNS` and :data:`EXTRA`) and its Comparison."""
    from .creativity import network_training_images
    from .nets import load_pretrained
    from .schedules import karras_sigmas

    net = load_pretrained(network, device=device or "cpu") if isinstance(network, str) else network
    X = network_training_images(net, n_train).to(device=device)
    cal, cal_name = calibration_for(net.name) if machine in CALIBRATED else (None, "")
    D = _Timed(build_machine(machine, X, cal, net.train_subset["dataset"]))
    sig = karras_sigmas(n_steps, SIGMA_MIN, SIGMA_MAX, RHO)
    cmp = compare({machine: D}, net, sig, list(seeds), tuple(X.shape[1:]), SOLVER, reference_name=net.name,
                  device=device)
    r, lo, hi = cmp.median(machine, "r2", n_boot=n_boot)
    m = cmp.median(machine, "mse", n_boot=n_boot)[0]
    r2s = cmp.r2[machine]
    beats = None
    if ideal_r2 is not None:
        from .metrics import fraction_better
        beats = fraction_better(r2s, torch.as_tensor(ideal_r2))
    row = dict(machine=machine, network=net.name, dataset=net.train_subset["dataset"], n_seeds=len(cmp.seeds),
               median_r2=float(r), ci_low=float(lo), ci_high=float(hi), median_mse=float(m),
               seconds_per_call=D.seconds / max(D.calls, 1), beats_ideal=beats,
               step_r2=[float(v) for v in cmp.step_medians("r2")[machine]], calibration=cal_name,
               n_train=len(X), per_seed_r2=[float(v) for v in r2s])
    return row, cmp


@functools.lru_cache(maxsize=64)
def _weights(network: str, mtime_ns: int) -> str:
    from .compare import denoiser_key
    from .nets import load_pretrained

    return denoiser_key(load_pretrained(network)).rsplit("weights:", 1)[-1]


def _key(machine, network, s) -> str:
    """Cache key of a pair: the settings and the network's identity including a hash of its weights
    (:func:`course_lib.compare.denoiser_key`), so a retrained network never reuses stale rows."""
    from .nets.pretrained import CKPT_DIR

    weights = _weights(network, (CKPT_DIR / f"{network}.pt").stat().st_mtime_ns)
    return json.dumps([machine, network, weights, s["n_seeds"], s["n_steps"], s["n_train"], SOLVER, SIGMA_MIN,
                       SIGMA_MAX])


def run(scale: str = "ci", machines=None, networks=None, out=None, device=None, progress: bool = True,
        settings: dict | None = None, command: str | None = None) -> list[dict]:
    """Every (machine, network) pair at ``scale``; writes ``out`` (CSV), ``.md`` and ``.png`` beside it.

    Returns the rows (dicts with :data:`COLUMNS` + :data:`EXTRA`), ordered by network then machine.
    """
    from tqdm.auto import tqdm

    from .config import check_scale

    s = dict(SETTINGS[check_scale(scale)], **(settings or {}))
    machines = list(machines or MACHINES)
    bad = [m for m in machines if m not in MACHINES]
    if bad:
        raise ValueError(f"unknown machines {bad}; known: {MACHINES}")
    networks = list(networks or s["networks"] or _pretrained())
    missing = [n for n in networks if n not in _pretrained()]
    if missing:
        raise ValueError(f"unknown networks {missing}; committed: {_pretrained()}")
    out = Path(out) if out else RESULTS / "leaderboard.csv"
    cache_path = out.parent / "leaderboard_cache" / f"{scale}.json"
    cache = json.loads(cache_path.read_text()) if cache_path.is_file() else {}
    order = ["ideal"] + [m for m in machines if m != "ideal"]     # the ideal row first: others compare to it
    rows, seeds = [], list(range(s["n_seeds"]))
    bar = tqdm(total=len(order) * len(networks), desc="leaderboard", disable=not progress)
    for net in networks:
        ideal_r2 = None
        for mach in order:
            k = _key(mach, net, s)
            if k not in cache:
                row, _ = run_pair(mach, net, seeds, s["n_steps"], s["n_train"], ideal_r2=ideal_r2, device=device)
                cache[k] = row
                cache_path.parent.mkdir(parents=True, exist_ok=True)
                cache_path.write_text(json.dumps(cache))
            row = cache[k]
            if mach == "ideal":
                ideal_r2 = row["per_seed_r2"]
                row["beats_ideal"] = 0.5
            if mach in machines:
                rows.append(row)
            bar.update(1)
    bar.close()
    _write(rows, out, s, command or f"python -m course_lib.leaderboard --scale {scale}")
    return rows


def _write(rows, out: Path, s: dict, cmd: str) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{r[k]:.6g}" if isinstance(r[k], float) else r[k]) for k in COLUMNS})
    out.with_suffix(".md").write_text(
        f"Generated by `{cmd}` ({s['n_seeds']} seeds, {SOLVER} sampler, {s['n_steps']} steps on "
        f"karras_sigmas({s['n_steps']}, {SIGMA_MIN}, {SIGMA_MAX}), machines on the first "
        f"{s['n_train'] or 'all'} training images of each network).\n\n" + to_markdown(rows) + "\n")
    (out.with_suffix(".steps.json")).write_text(json.dumps(
        [{k: r[k] for k in ("machine", "network", "beats_ideal", "step_r2", "calibration", "n_train")} for r in rows],
        indent=0))
    import matplotlib
    matplotlib.use("Agg")
    fig = plot(rows)
    fig.savefig(out.with_suffix(".png"), dpi=100, bbox_inches="tight")
    import matplotlib.pyplot as plt
    plt.close(fig)


def to_markdown(rows) -> str:
    """Markdown table: one row per pair, median r^2 [CI], median MSE, beats-ideal fraction, s/call."""
    lines = ["| machine | network | median r² [95% CI] | median MSE | beats ideal | s / call | calibration |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        b = "-" if r.get("beats_ideal") is None or r["machine"] == "ideal" else f"{r['beats_ideal']:.0%}"
        lines.append(f"| {r['machine']} | {r['network']} | {r['median_r2']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}] "
                     f"| {r['median_mse']:.4f} | {b} | {r['seconds_per_call']:.2g} | {r.get('calibration') or '-'} |")
    return "\n".join(lines)


def summary_markdown(rows) -> str:
    """One row per machine, over all networks of ``rows``: the median over networks of the pair's median
    r^2, its range, and on how many networks the machine has the highest r^2 of all machines."""
    machines = list(dict.fromkeys(r["machine"] for r in rows))
    nets = list(dict.fromkeys(r["network"] for r in rows))
    best = {n: max((r for r in rows if r["network"] == n), key=lambda r: r["median_r2"])["machine"] for n in nets}
    lines = [f"| machine | median r² over the {len(nets)} networks | lowest, highest | best on |",
             "| --- | --- | --- | --- |"]
    for m in machines:
        v = torch.tensor([r["median_r2"] for r in rows if r["machine"] == m], dtype=torch.float64)
        wins = sum(b == m for b in best.values())
        lines.append(f"| {m} | {v.median().item():.3f} | {v.min().item():.3f}, {v.max().item():.3f} "
                     f"| {wins} of {len(nets)} |")
    return "\n".join(lines)


def plot(rows, ax=None):
    """Heat map of median r^2: machines (rows) by networks (columns). Returns the figure."""
    import matplotlib.pyplot as plt

    machines = list(dict.fromkeys(r["machine"] for r in rows))
    nets = list(dict.fromkeys(r["network"] for r in rows))
    M = torch.full((len(machines), len(nets)), float("nan"))
    for r in rows:
        M[machines.index(r["machine"]), nets.index(r["network"])] = r["median_r2"]
    if ax is None:
        _, ax = plt.subplots(figsize=(min(7, 1.5 + 0.55 * len(nets)), 0.4 * len(machines) + 2.2))
    im = ax.imshow(M.numpy(), vmin=0, vmax=1, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(nets)), [n.replace("_book", "") for n in nets], rotation=60, ha="right", fontsize=10)
    ax.set_yticks(range(len(machines)), machines, fontsize=10)
    # a 7-inch column holds about eight 10-pt "0.43"s side by side: with more networks the cells show
    # 100 r^2 as an integer, which keeps the 10-pt font legible
    percent = len(nets) > 8
    for i in range(len(machines)):
        for j in range(len(nets)):
            if torch.isfinite(M[i, j]):
                v = M[i, j].item()
                ax.text(j, i, f"{100 * v:.0f}" if percent else f"{v:.2f}", ha="center", va="center",
                        fontsize=10, color="white" if v < 0.6 else "black")
    ax.figure.colorbar(im, ax=ax, label="median r² vs network")
    ax.set_title("final-sample r² of each machine vs each network (same noise)"
                 + (";\ncells: 100 r²" if percent else ""), fontsize=10)
    return ax.figure


def read_csv(path=None) -> list[dict]:
    """The rows of a leaderboard CSV (numbers as floats, n_seeds as int)."""
    path = Path(path) if path else RESULTS / "leaderboard.csv"
    with open(path) as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        r["n_seeds"] = int(r["n_seeds"])
        for k in ("median_r2", "ci_low", "ci_high", "median_mse", "seconds_per_call"):
            r[k] = float(r[k])
    return rows


def load(path=None) -> list[dict]:
    """:func:`read_csv` rows joined with the ``.steps.json`` beside the CSV (beats_ideal, step_r2, ...)."""
    path = Path(path) if path else RESULTS / "leaderboard.csv"
    rows = read_csv(path)
    side = path.with_suffix(".steps.json")
    extra = {(e["machine"], e["network"]): e for e in json.loads(side.read_text())} if side.is_file() else {}
    for r in rows:
        r.update({k: v for k, v in extra.get((r["machine"], r["network"]), {}).items() if k in EXTRA})
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m course_lib.leaderboard", description=__doc__.split("\n\n")[0])
    p.add_argument("--scale", default="ci", choices=list(SETTINGS))
    p.add_argument("--machines", nargs="+", default=None, help=f"subset of {MACHINES}")
    p.add_argument("--networks", nargs="+", default=None, help="committed networks (default: the scale's list)")
    p.add_argument("--out", default=None, help="CSV path (default data/results/leaderboard.csv)")
    p.add_argument("--device", default="cpu")
    a = p.parse_args(argv)
    import shlex
    argv = sys.argv[1:] if argv is None else list(argv)
    cmd = "python -m course_lib.leaderboard " + " ".join(shlex.quote(x) for x in argv)
    rows = run(a.scale, a.machines, a.networks, a.out, device=torch.device(a.device), command=cmd)
    print(to_markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
