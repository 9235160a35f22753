"""Theory vs trained networks: calibrated (E)LS machines against the course's CNNs (Chapter 5,
"Theory vs trained networks").

Kamb & Ganguli (2025, Sec. 5 and App. C.2) test the local machines in two steps:

1. **Calibrate** a patch-size schedule P(sigma) for each network and each machine kind (ELS with
   zero padding, and LS): follow the network's own reverse trajectories from a set of noise seeds and,
   at every step k, pick the candidate P whose machine best matches the network's noise prediction,

       P_k = median_b argmax_P cos( eps_net(x_k^b, sigma_k), eps_P(x_k^b, sigma_k) ),

   (:func:`course_lib.calibrate.calibrate_patch_size`, run here by :func:`calibrate_network` on one
   shared network trajectory for every machine kind). The machines use training images from the
   SAME subset the network was trained on (:func:`network_training_images`).
2. **Compare** the calibrated ELS and LS machines and the ideal score machine (IS) with the network
   from the same noise seeds (:func:`theory_vs_network`, a thin layer over
   :func:`course_lib.compare.compare`): per seed the pixelwise r^2 of the final samples with the
   network's sample as target; median over seeds with a bootstrap CI; fraction of seeds where ELS
   beats IS. :func:`table_vs_paper` sets the numbers beside the paper's Table 2 (:data:`PAPER_TABLE2`).

The calibrations of the committed networks are stored as JSON in ``data/calibration/<net>.json``
(:class:`NetworkCalibration`; ``PatchSizeSchedule.load`` reads the ELS schedule directly from it) and
are produced by ``python -m course_lib.creativity <net> ...`` (the exact command is in the file).
Calibration seeds default to 1000, 1001, ... so that they are disjoint from the comparison seeds
0, 1, ... (the paper calibrates on a separate validation set).
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch

from .calibrate import PatchSizeSchedule, calibrate_patch_size
from .compare import Comparison, _check_seeds, compare, initial_noise
from .validate import corrupt_file_error, int_like

__all__ = ["CALIBRATION_DIR", "PAPER_TABLE2", "MACHINE_KINDS", "NetworkCalibration", "network_training_images",
           "machine_factory", "calibrate_network", "load_calibration", "calibration_path", "theory_machines",
           "theory_vs_network", "table_vs_paper", "plot_calibration", "read_table2"]

CALIBRATION_DIR = Path(__file__).resolve().parents[1] / "data" / "calibration"
MACHINE_KINDS = ("ELS", "LS")
CALIBRATION_SEED0 = 1000

# Kamb & Ganguli (2025), Table 2 (20 network steps, 20 theory steps): median r^2 over 100 seeds of the
# boundary-broken ELS, LS and IS machines vs the network, and the fraction of seeds where (E)LS beats IS.
PAPER_TABLE2 = {
    "mnist_resnet_book": {"dataset": "MNIST", "arch": "ResNet", "padding": "zeros",
                          "ELS": 0.94, "LS": 0.84, "IS": 0.62, "ELS>IS": 0.97},
    "mnist_unet_book": {"dataset": "MNIST", "arch": "UNet", "padding": "zeros",
                        "ELS": 0.84, "LS": 0.83, "IS": 0.69, "ELS>IS": 0.92},
    # the paper's Fashion-MNIST networks are class-conditional (and so are its machines); ours are not
    "fashion_mnist_resnet_book": {"dataset": "Fashion-MNIST", "arch": "ResNet", "padding": "zeros, conditional",
                                  "ELS": 0.90, "LS": 0.88, "IS": 0.74, "ELS>IS": 0.97},
    "fashion_mnist_unet_book": {"dataset": "Fashion-MNIST", "arch": "UNet", "padding": "zeros, conditional",
                                "ELS": 0.91, "LS": 0.91, "IS": 0.80, "ELS>IS": 0.90},
}


# ------------------------------------------------------------------------------------ training data
def network_training_images(net, n: int | None = None, data_dir=None) -> torch.Tensor:
    """The first ``n`` images (original order) of the split ``net.train_subset`` records (its
    ``start`` / ``stride`` / ``permute_seed`` subset when it records one), checked against the
    network's recorded indices. For the committed MNIST networks: ``load_dataset("mnist",
    split="train_5k", n=n)``, whose original order interleaves the digits (a near class-balanced prefix)."""
    from .train import load_training_images

    ts = getattr(net, "train_subset", None) or {}
    if "dataset" not in ts or "split" not in ts:
        raise ValueError(f"net must record its training data in .train_subset = {{dataset, split, ...}}, "
                         f"got {ts!r}; pass train_images= explicitly for other denoisers")
    n = int_like(n)
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise ValueError(f"n must be a positive int or None, got {n!r}")
    has_subset = any(ts.get(k, default) != default for k, default in (("start", 0), ("stride", 1),
                                                                      ("permute_seed", None)))
    # the net's own prefix (a subset of positions: all of it, then the positions), as training loaded it
    n_load = ts.get("n") if has_subset or n is None else n
    images, _, indices = load_training_images(dict(ts, n=n_load), data_dir=data_dir)
    images, indices = images[:n], indices[:n]
    rec = ts.get("indices")
    if isinstance(rec, (list, tuple, torch.Tensor)):
        rec = torch.as_tensor(rec, dtype=torch.int64).reshape(-1)
        k = len(images)
        if rec.numel() < k or not torch.equal(rec[:k], indices.to(torch.int64)):
            raise ValueError(f"the first {k} images of {ts['dataset']}/{ts['split']} are not the first {k} "
                             f"training images recorded by the network {getattr(net, 'name', net)!r}")
    return images


def machine_factory(kind: str, train_images: torch.Tensor, boundary: str = "zeros",
                    chunk_size: int | None = None) -> Callable[[int], Callable]:
    """``P -> machine``: ``"ELS"`` (EquivariantLocalDenoiser) or ``"LS"`` (LocalDenoiser) on ``train_images``."""
    from .denoisers import EquivariantLocalDenoiser, LocalDenoiser

    if kind == "ELS":
        return lambda P: EquivariantLocalDenoiser(train_images, P, boundary=boundary, chunk_size=chunk_size)
    if kind == "LS":
        return lambda P: LocalDenoiser(train_images, P, boundary=boundary, chunk_size=chunk_size)
    raise ValueError(f"kind must be one of {MACHINE_KINDS}, got {kind!r}")


# ------------------------------------------------------------------------------------ calibration
@dataclass
class NetworkCalibration:
    """Calibrated schedules of one network: ``schedules[kind]`` (:class:`PatchSizeSchedule`) for each
    machine kind; ``metadata`` (how they were produced); ``per_seed[kind]`` (K, B) each seed's best P;
    ``results[kind]`` the full :class:`course_lib.calibrate.CalibrationResult` (not saved)."""
    network: str
    schedules: dict
    metadata: dict
    per_seed: dict = field(default_factory=dict)
    results: dict = field(default_factory=dict, repr=False)

    def __getitem__(self, kind: str) -> PatchSizeSchedule:
        if kind not in self.schedules:
            raise KeyError(f"no {kind!r} schedule; calibrated kinds are {list(self.schedules)}")
        return self.schedules[kind]

    def to_dict(self) -> dict:
        first = self.schedules.get("ELS") or next(iter(self.schedules.values()))
        return {"network": self.network,
                # top level: the ELS schedule, so that PatchSizeSchedule.load(path) works on this file
                "sigmas": first.sigmas, "patch_sizes": first.patch_sizes,
                "schedules": {k: s.to_dict() for k, s in self.schedules.items()},
                "per_seed_best": {k: [[int(p) for p in row] for row in v] for k, v in self.per_seed.items()},
                "metadata": self.metadata}

    def save(self, path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=1) + "\n")
        return path

    @classmethod
    def load(cls, path) -> "NetworkCalibration":
        try:
            d = json.loads(Path(path).read_text())
        except ValueError as e:
            raise corrupt_file_error(path, e, "restore it with git checkout, or calibrate again") from None
        if "schedules" not in d:
            raise ValueError(f"{path} is not a network calibration file (no 'schedules' entry)")
        scheds = {k: PatchSizeSchedule(v["sigmas"], v["patch_sizes"]) for k, v in d["schedules"].items()}
        per_seed = {k: torch.tensor(v, dtype=torch.int64) for k, v in d.get("per_seed_best", {}).items()}
        return cls(d.get("network", Path(path).stem), scheds, d.get("metadata", {}), per_seed)


def calibration_path(net_name: str) -> Path:
    """``data/calibration/<net_name>.json`` in the repository."""
    return CALIBRATION_DIR / f"{net_name}.json"


def load_calibration(net_or_path) -> NetworkCalibration:
    """The committed calibration of a network (by name, or a denoiser with a ``name``), or a JSON path."""
    p = Path(net_or_path) if str(net_or_path).endswith(".json") else calibration_path(
        net_or_path if isinstance(net_or_path, str) else getattr(net_or_path, "name", ""))
    if not p.is_file():
        have = sorted(q.stem for q in CALIBRATION_DIR.glob("*.json"))
        raise FileNotFoundError(f"no calibration file {p}; committed calibrations: {have}. Produce one "
                                f"with `python -m course_lib.creativity <net name>`.")
    return NetworkCalibration.load(p)


def _call_string(name, n_train, seeds, candidates, opts) -> str:
    s = list(seeds)
    seed_txt = f"range({s[0]}, {s[-1] + 1})" if s == list(range(s[0], s[0] + len(s))) else repr(s)
    kw = ", ".join(f"{k}={v!r}" for k, v in opts.items())
    return f"calibrate_network({name!r}, n_train={n_train}, seeds={seed_txt}, candidates={list(candidates)}, {kw})"


def calibrate_network(net, n_train: int | None, seeds: Sequence[int], candidates: Sequence[int], *,
                      kinds: Sequence[str] = MACHINE_KINDS, n_steps: int = 20, sigma_min: float = 0.01,
                      sigma_max: float = 80.0, rho: float = 7.0, solver: str = "euler",
                      metric: str = "cosine", target: str = "eps", boundary: str = "zeros",
                      train_images: torch.Tensor | None = None, shape=None, device=None,
                      dtype: torch.dtype = torch.float32, progress: bool = False) -> NetworkCalibration:
    """Calibrate P(sigma) of each machine kind against ``net`` along the network's own trajectories
    (Kamb & Ganguli App. C.2; module doc).

    Parameters
    ----------
    net : a committed network's name (loaded with :func:`course_lib.nets.load_pretrained`) or any
        denoiser (then pass ``train_images`` unless it has a ``train_subset``).
    n_train : the machines use the first ``n_train`` training images (``None``: all).
    seeds : noise seeds; x_T = sigma_max * z from :func:`course_lib.compare.initial_noise`.
    candidates : odd patch sizes to try.
    kinds : machine kinds to calibrate, ``"ELS"`` and/or ``"LS"`` (both with ``boundary`` padding).
    n_steps, sigma_min, sigma_max, rho, solver : the sampler: ``karras_sigmas(n_steps, ...)`` + ``solver``.
    metric, target : as in :func:`course_lib.calibrate.calibrate_patch_size` (paper: cosine of eps).
    """
    from .nets import load_pretrained
    from .sampling import sample
    from .schedules import karras_sigmas

    seeds = _check_seeds(list(seeds))
    kinds = list(kinds)
    bad = [k for k in kinds if k not in MACHINE_KINDS]
    if not kinds or bad:
        raise ValueError(f"kinds must be a non-empty subset of {MACHINE_KINDS}, got {kinds!r}")
    name = net if isinstance(net, str) else (getattr(net, "name", None) or type(net).__name__)
    if isinstance(net, str):
        net = load_pretrained(net, device=device or "cpu", dtype=dtype)
    if train_images is None:
        train = network_training_images(net, n_train)
    else:
        train = train_images if n_train is None else train_images[:n_train]
        if n_train is not None and len(train) < n_train:
            raise ValueError(f"n_train={n_train} but train_images holds only {len(train_images)} images")
    train = train.to(device=device, dtype=dtype)
    shape = tuple(train.shape[1:]) if shape is None else tuple(shape)
    sigmas = karras_sigmas(n_steps, sigma_min, sigma_max, rho).to(dtype)
    x_T = initial_noise(seeds, shape, float(sigmas[0]), dtype, train.device)
    with torch.no_grad():  # one network trajectory, shared by every machine kind
        traj = sample(net, x_T, sigmas, solver=solver, return_trajectory=True, progress=progress)
        results = {k: calibrate_patch_size(net, machine_factory(k, train, boundary), x_T, sigmas, candidates,
                                           metric=metric, target=target, solver=solver, trajectory=traj,
                                           progress=progress) for k in kinds}
    opts = dict(kinds=kinds, n_steps=n_steps, sigma_min=sigma_min, sigma_max=sigma_max, rho=rho, solver=solver,
                metric=metric, target=target, boundary=boundary)
    ts = getattr(net, "train_subset", None) or {}
    meta = {"call": "course_lib.creativity." + _call_string(name, n_train, seeds, candidates, opts),
            "network": name, "network_config_hash": getattr(net, "config", {}).get("content_hash"),
            "train_subset": {"dataset": ts.get("dataset"), "split": ts.get("split"), "n_train": len(train),
                             "which": "first n_train images in original order"},
            "n_train": len(train), "seeds": seeds, "candidates": [int(P) for P in candidates], **opts,
            "dtype": str(dtype), "torch": torch.__version__}
    return NetworkCalibration(name, {k: r.schedule for k, r in results.items()}, meta,
                              {k: r.best for k, r in results.items()}, results)


# ------------------------------------------------------------------------------------ comparison
def theory_machines(train_images: torch.Tensor, calibration: NetworkCalibration | dict, boundary: str = "zeros",
                    include: Sequence[str] = ("ELS", "LS", "IS")) -> dict:
    """{"ELS": calibrated boundary-broken ELS, "LS": calibrated LS, "IS": ideal denoiser} on ``train_images``."""
    from .denoisers import IdealDenoiser

    scheds = calibration.schedules if isinstance(calibration, NetworkCalibration) else dict(calibration)
    out = {}
    for k in include:
        if k == "IS":
            out[k] = IdealDenoiser(train_images)
        elif k in MACHINE_KINDS:
            if k not in scheds:
                raise KeyError(f"no {k!r} schedule in the calibration; it has {list(scheds)}")
            out[k] = machine_factory(k, train_images, boundary)(scheds[k])
        else:
            raise ValueError(f"include may list 'ELS', 'LS', 'IS', got {k!r}")
    return out


def theory_vs_network(net, machines: dict, seeds: Sequence[int], sigmas, shape, solver: str = "euler",
                      reference_name: str | None = None, progress: bool = False, **kwargs) -> Comparison:
    """Sample the network and every machine from the same noise seeds and compare the final samples
    (pixelwise r^2 with the network as target, per seed; :class:`course_lib.compare.Comparison`).
    ``kwargs`` go to :func:`course_lib.compare.compare` (cache, device, dtype, batch_size, ...)."""
    if not isinstance(machines, dict) or not machines:
        raise ValueError(f"machines must be a non-empty dict {{name: denoiser}}, got {machines!r}")
    ref = reference_name or getattr(net, "name", None) or "network"
    return compare(machines, net, sigmas, list(seeds), shape, solver=solver, reference_name=ref,
                   progress=progress, **kwargs)


def table_vs_paper(comparisons: dict, paper: dict | None = None, ci: float = 0.95, n_boot: int = 2000) -> str:
    """Markdown table: per network our median r^2 [bootstrap CI] of ELS, LS and IS and the fraction of seeds
    where ELS beats IS, each followed by the paper's Table 2 row (:data:`PAPER_TABLE2`, keyed by network name)."""
    paper = PAPER_TABLE2 if paper is None else paper
    lines = ["| Network | Source | Seeds | ELS $r^2$ | LS $r^2$ | IS $r^2$ | ELS > IS |",
             "|---|---|---|---|---|---|---|"]
    for name, comp in comparisons.items():
        cells = []
        for k in ("ELS", "LS", "IS"):
            if k in comp.names:
                m, lo, hi = comp.median(k, ci=ci, n_boot=n_boot)
                cells.append(f"{m:.2f} [{lo:.2f}, {hi:.2f}]")
            else:
                cells.append("-")
        win = f"{comp.beats('ELS', 'IS'):.2f}" if {"ELS", "IS"} <= set(comp.names) else "-"
        lines.append(f"| `{name}` | this course | {len(comp.seeds)} | {' | '.join(cells)} | {win} |")
        if name in paper:
            p = paper[name]
            lines.append(f"| {p['dataset']} {p['arch']} ({p['padding']}) | paper, Table 2 | 100 | {p['ELS']:.2f} | "
                         f"{p['LS']:.2f} | {p['IS']:.2f} | {p['ELS>IS']:.2f} |")
    return "\n".join(lines)


def read_table2(path) -> dict:
    """Parse the "this course" rows of a Markdown table written by :func:`table_vs_paper` (e.g. a stored
    ``data/results/table2_*.md``): ``{network: {"seeds": int, "ELS"|"LS"|"IS": (median, lo, hi) or None,
    "ELS>IS": float or None}}`` (Chapter 5 glues its prose numbers from it)."""
    import re

    num = r"(-?\d+(?:\.\d+)?)"
    cell_re = re.compile(rf"^{num} \[{num}, {num}\]$")
    out = {}
    for line in Path(path).read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 7 or not cells[0].startswith("`") or not cells[1].startswith("this course"):
            continue
        row = {"seeds": int(cells[2])}
        for k, c in zip(("ELS", "LS", "IS"), cells[3:6]):
            m = cell_re.match(c)
            row[k] = tuple(float(v) for v in m.groups()) if m else None
        row["ELS>IS"] = None if cells[6] in ("-", "") else float(cells[6])
        out[cells[0].strip("`")] = row
    if not out:
        raise ValueError(f"no 'this course' rows found in {path}")
    return out


def plot_calibration(calibration: NetworkCalibration, rf_curve=None, ax=None, title: str | None = None):
    """Calibrated P vs sigma for each kind (median; shaded: the seeds' inter-quartile range of their best P),
    with the network's receptive field P = 2 r + 1 (``rf_curve``, a
    :class:`course_lib.jacobian.ReceptiveFieldCurve`) when given. Returns the axes."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3))
    for j, (k, s) in enumerate(calibration.schedules.items()):
        sig = torch.tensor(s.sigmas, dtype=torch.float64)
        ax.plot(sig, s.patch_sizes, "o-" if k == "ELS" else "s--", color=f"C{j}", ms=4, label=f"calibrated {k}")
        best = calibration.per_seed.get(k)
        if best is not None and best.numel():
            q = best.double().quantile(torch.tensor([0.25, 0.75], dtype=torch.float64), dim=1)
            ax.fill_between(sig, q[0], q[1], color=f"C{j}", alpha=0.15, step="mid")
    if rf_curve is not None:
        r = rf_curve.radius.double().median(1).values
        ax.plot(rf_curve.sigmas, 2 * r + 1, "^:", color="k", ms=5,
                label=f"receptive field $2r_{{{rf_curve.mass:g}}}+1$")
    ax.set_xscale("log")
    ax.invert_xaxis()
    ax.set_xlabel(r"$\sigma$ (reverse time flows to the right)")
    ax.set_ylabel("patch size P")
    ax.set_title(title or calibration.network, fontsize=10)
    ax.legend(fontsize=10)
    return ax


# ------------------------------------------------------------------------------------ command line
def main(argv=None) -> int:
    """``python -m course_lib.creativity NET [--n-train N] [--n-seeds S] ...``: calibrate and write
    ``data/calibration/NET.json`` (the command line is recorded in the file's metadata)."""
    p = argparse.ArgumentParser(prog="python -m course_lib.creativity", description=main.__doc__)
    p.add_argument("net", help="a committed network (course_lib.nets.list_pretrained())")
    p.add_argument("--n-train", type=int, default=200, help="training images for the machines (first k)")
    p.add_argument("--n-seeds", type=int, default=8, help=f"calibration seeds {CALIBRATION_SEED0}, ...")
    p.add_argument("--candidates", type=int, nargs="+", default=[3, 5, 7, 9, 11, 13, 15, 17, 21, 25])
    p.add_argument("--n-steps", type=int, default=20)
    p.add_argument("--sigma-min", type=float, default=0.01)
    p.add_argument("--sigma-max", type=float, default=80.0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default=None, help="output JSON (default data/calibration/NET.json)")
    a = p.parse_args(argv)
    seeds = range(CALIBRATION_SEED0, CALIBRATION_SEED0 + a.n_seeds)
    cal = calibrate_network(a.net, a.n_train, seeds, a.candidates, n_steps=a.n_steps, sigma_min=a.sigma_min,
                            sigma_max=a.sigma_max, device=torch.device(a.device), progress=True)
    argv = sys.argv[1:] if argv is None else list(argv)
    cal.metadata["command"] = "python -m course_lib.creativity " + " ".join(shlex.quote(x) for x in argv)
    out = cal.save(a.out or calibration_path(a.net))
    for k, s in cal.schedules.items():
        print(k, s)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
