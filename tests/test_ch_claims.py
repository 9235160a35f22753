"""The corrections of issue 18 as formulas, each against an independent computation.

- Chapter 2: the 1/2 crossing of the normalised path coefficient is at sigma^2 ~ 3 lambda (bisection);
  the far-field score gap of a point cloud vs its Gaussian fit has FSE ~ sigma^-6 at x_i + sigma z and
  ~ sigma^-4 at fixed x (float64 machines on a skewed cloud).
- Chapter 5: zero-padded ELS equals LS from P = max(H, W) (odd) on, not 2H - 1 (class counts, machines).
- Chapter 1: the top logit of the ideal softmax (cdist reference).
"""
import math

import pytest
import torch

from course_lib import diagnostics, linear
from course_lib.denoisers import EquivariantLocalDenoiser, GaussianDenoiser, IdealDenoiser, LocalDenoiser
from course_lib.patches import boundary_groups, ls_equivalence_patch_size

DT = torch.float64


def test_xi_crossing_closed_form_vs_bisection():
    lam = torch.tensor([1e-3, 0.05, 1.0, 7.0, 40.0], dtype=DT)
    for sigma_T in (80.0, 10.0):
        cf = linear.xi_crossing_sigma2(lam, sigma_T)
        num = linear.xi_crossing_bisect(lam, sigma_T)
        assert torch.allclose(cf, num, rtol=1e-9)
        # and the curve really is 1/2 there
        val = linear.xi(cf.sqrt(), lam, sigma_T) * sigma_T / lam.sqrt()
        assert torch.allclose(val, torch.full_like(val, 0.5), atol=1e-12)
    # the sigma_T -> infinity limit is 3 lambda, not lambda / 3
    assert torch.allclose(linear.xi_crossing_sigma2(lam), 3 * lam)
    assert torch.allclose(linear.xi_crossing_bisect(lam[:3], 1e6) / lam[:3], torch.full((3,), 3.0, dtype=DT), rtol=1e-6)
    # at sigma^2 = lambda / 3 the coefficient is sqrt(3/4) = 0.866 (sigma_T -> infinity)
    v = linear.xi((lam / 3).sqrt(), lam, 1e8) * 1e8 / lam.sqrt()
    assert torch.allclose(v, torch.full_like(v, math.sqrt(0.75)), atol=1e-6)
    for bad in (0.0, 1.0, -0.2):
        with pytest.raises(ValueError, match="level"):
            linear.xi_crossing_sigma2(lam, 80.0, level=bad)
    with pytest.raises(ValueError, match="lam"):
        linear.xi_crossing_sigma2(torch.tensor([0.0, 1.0]))


def test_loglog_slope():
    x = torch.tensor([1.0, 2.0, 4.0, 8.0])
    assert linear.loglog_slope(x, 3 * x**-2.5) == pytest.approx(-2.5, abs=1e-6)
    with pytest.raises(ValueError, match="positive"):
        linear.loglog_slope(x, -x)


def _skewed_cloud(N=400, d=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    e = torch.rand(N, d, generator=g, dtype=DT)
    y = -torch.log(e)                                     # exponential: third cumulant 2, strongly skewed
    return y.reshape(N, 1, 1, d)


def test_far_field_rates():
    """FSE between the exact score of a point cloud and its Gaussian fit: slope -6 at moving points x_i + sigma z,
    -4 at fixed points (a third-moment offset m3 / (2 sigma^4) against scores of size sqrt(d)/sigma, |x - mu|/sigma^2)."""
    Y = _skewed_cloud()
    G = GaussianDenoiser.from_data(Y, correction=0, cache=False)
    ideal = IdealDenoiser(Y)
    sig = torch.tensor([40.0, 80.0, 160.0, 320.0])
    moving = linear.score_fse_over_sigma(ideal, G, Y[:200], sig, generator=torch.Generator().manual_seed(1)).mean(1)
    x_fixed = Y[:200] + 3.0 * torch.randn(Y[:200].shape, generator=torch.Generator().manual_seed(2), dtype=DT)
    fixed = linear.score_fse_at(ideal, G, x_fixed, sig).mean(1)
    assert linear.loglog_slope(sig, moving) == pytest.approx(-6.0, abs=0.25)
    assert linear.loglog_slope(sig, fixed) == pytest.approx(-4.0, abs=0.25)
    # a symmetric cloud (m3 = 0) has no sigma^-4 offset: its gap falls faster
    Ysym = torch.cat([Y - Y.mean(0), -(Y - Y.mean(0))])
    Gs = GaussianDenoiser.from_data(Ysym, correction=0, cache=False)
    fixed_sym = linear.score_fse_at(IdealDenoiser(Ysym), Gs, x_fixed - Y.mean(0), sig).mean(1)
    assert linear.loglog_slope(sig, fixed_sym) < -5.5


@pytest.mark.parametrize("H", [5, 6, 7, 8, 28])
def test_ls_equivalence_patch_size_counts_classes(H):
    P_eq = ls_equivalence_patch_size(H)
    counts = {P: sum(g.shape[0] for g in boundary_groups(H, H, P, "zeros")) for P in range(1, 2 * H + 2, 2)}
    assert min(P for P, n in counts.items() if n == H * H) == P_eq
    assert P_eq == (H if H % 2 else H + 1)
    assert P_eq < 2 * H - 1 or H < 3


def test_els_zeros_equals_ls_from_threshold():
    g = torch.Generator().manual_seed(0)
    Y = torch.rand(4, 1, 8, 8, generator=g, dtype=DT) * 2 - 1
    x = 2.0 * torch.randn(2, 1, 8, 8, generator=g, dtype=DT)
    P = ls_equivalence_patch_size(8)
    at = (EquivariantLocalDenoiser(Y, P, "zeros")(x, 0.7) - LocalDenoiser(Y, P)(x, 0.7)).abs().max()
    below = (EquivariantLocalDenoiser(Y, P - 2, "zeros")(x, 0.7) - LocalDenoiser(Y, P - 2)(x, 0.7)).abs().max()
    assert at < 1e-12 and below > 1e-3
    with pytest.raises(ValueError, match="H"):
        ls_equivalence_patch_size(0)


def test_top_logit_matches_cdist():
    g = torch.Generator().manual_seed(3)
    train = torch.randn(50, 1, 4, 4, generator=g, dtype=DT)
    x = torch.randn(7, 1, 4, 4, generator=g, dtype=DT)
    ref = -(torch.cdist(x.flatten(1), train.flatten(1)) ** 2).min(1).values / (2 * 1e-3**2)
    assert torch.allclose(diagnostics.top_logit(x, train, 1e-3), ref, rtol=1e-9)
    with pytest.raises(ValueError, match="sigma"):
        diagnostics.top_logit(x, train, 0.0)


def test_read_table2_roundtrip(tmp_path):
    from course_lib.creativity import read_table2

    text = "\n".join([
        "| Network | Source | Seeds | ELS $r^2$ | LS $r^2$ | IS $r^2$ | ELS > IS |",
        "|---|---|---|---|---|---|---|",
        "| `net_a` | this course | 20 | 0.87 [0.86, 0.89] | 0.51 [0.44, 0.57] | -0.19 [-0.31, 0.03] | 1.00 |",
        "| MNIST ResNet (zeros) | paper, Table 2 | 100 | 0.94 | 0.84 | 0.62 | 0.97 |",
        "| `net_b` | this course | 20 | - | 0.61 [0.52, 0.66] | -0.07 [-0.34, 0.13] | - |"])
    p = tmp_path / "t.md"
    p.write_text("# header\n\n" + text + "\n")
    rows = read_table2(p)
    assert rows["net_a"] == {"seeds": 20, "ELS": (0.87, 0.86, 0.89), "LS": (0.51, 0.44, 0.57),
                             "IS": (-0.19, -0.31, 0.03), "ELS>IS": 1.0}
    assert rows["net_b"]["ELS"] is None and rows["net_b"]["ELS>IS"] is None and rows["net_b"]["LS"][0] == 0.61
    assert set(rows) == {"net_a", "net_b"}          # the paper's rows are not ours
    (tmp_path / "empty.md").write_text("nothing\n")
    with pytest.raises(ValueError, match="no 'this course' rows"):
        read_table2(tmp_path / "empty.md")


def test_marchenko_pastur_density_vs_sampled_spectrum():
    from course_lib import rmt

    gamma = 0.4
    x = torch.linspace(0, 4, 40001, dtype=DT)
    dens = rmt.marchenko_pastur_density(x, gamma)
    dx = float(x[1] - x[0])
    assert (dens.sum() * dx).item() == pytest.approx(1.0, abs=2e-3)         # a probability density
    assert (x * dens).sum().item() * dx == pytest.approx(1.0, abs=2e-3)      # mean eigenvalue = tr Sigma / d = 1
    # against the spectrum of one large sample covariance: the fraction of eigenvalues below 1
    g = torch.Generator().manual_seed(0)
    d, n = 400, 1000
    X = torch.randn(n, d, generator=g, dtype=DT)
    ev = torch.linalg.eigvalsh(X.T @ X / n)
    frac_mc = (ev < 1.0).double().mean().item()
    frac_th = (dens[x < 1.0].sum() * dx).item()
    assert frac_mc == pytest.approx(frac_th, abs=0.02)
    assert ev.max().item() == pytest.approx((1 + math.sqrt(gamma)) ** 2, abs=0.1)
    with pytest.raises(ValueError, match="gamma"):
        rmt.marchenko_pastur_density(x, 0.0)


def test_count_majority_mosaics_vs_loop():
    import itertools

    from course_lib.exercises.ch05 import reference_locally_consistent
    from course_lib.patches import count_majority_mosaics

    import numpy as np

    img = torch.tensor([[1.0, 1, -1], [1, 1, -1], [-1, -1, -1]])
    assert bool(reference_locally_consistent(img).all()) == bool(
        (np.sign(sum(np.roll(img.numpy(), (i, j), (0, 1)) for i in (-1, 0, 1) for j in (-1, 0, 1))) == img.numpy()).all())
    for H, W in ((3, 3), (3, 4)):
        loop = 0
        for bits in itertools.product((-1, 1), repeat=H * W):      # an independent numpy loop over all images
            a = np.array(bits).reshape(H, W)
            loop += bool((np.sign(sum(np.roll(a, (i, j), (0, 1)) for i in (-1, 0, 1) for j in (-1, 0, 1))) == a).all())
        assert count_majority_mosaics(H, W, chunk=333) == loop >= 2   # all black and all white at least
    with pytest.raises(ValueError, match="H"):
        count_majority_mosaics(2, 5)
    with pytest.raises(ValueError, match="<= 24"):
        count_majority_mosaics(5, 5)


@pytest.mark.parametrize("stem", ["00_intro", "01_optimal_denoiser", "02_linear_lens", "03_rmt_consistency",
                                  "05_creativity_patch_mosaics"])
def test_every_glued_number_in_the_prose_is_glued_by_a_cell(stem):
    """Static check: each {glue:text}`key:fmt` in a chapter's markdown matches a glue("key" / glue(f"...") call
    in one of its code cells (f-string fields match any text), so a renamed variable cannot leave the
    prose pointing at nothing (Sphinx would then fail the book build)."""
    import json
    import re
    from pathlib import Path

    nb = json.loads((Path(__file__).resolve().parents[1] / "chapters" / f"{stem}.ipynb").read_text())
    refs, patterns = set(), []
    for c in nb["cells"]:
        src = "".join(c["source"])
        if c["cell_type"] == "markdown":
            refs |= {m.split(":")[0] for m in re.findall(r"\{glue:text\}`([^`]*)`", src)}
        else:
            for f, name in re.findall(r'glue\((f?)"([^"]+)"', src):
                parts = re.split(r"\{[^}]*\}", name) if f else [name]
                patterns.append(re.compile("^" + ".+".join(map(re.escape, parts)) + "$"))
    missing = sorted(r for r in refs if not any(p.match(r) for p in patterns))
    assert not missing, f"{stem}: prose refers to unglued keys {missing}"


def test_denoiser_gap_along_trajectory():
    from course_lib import linear_vs_net as lvn
    from course_lib.schedules import karras_sigmas

    g = torch.Generator().manual_seed(4)
    Y = torch.randn(60, 1, 3, 3, generator=g, dtype=DT) * torch.linspace(0.3, 2.0, 9, dtype=DT).reshape(1, 1, 3, 3)
    G = GaussianDenoiser.from_data(Y, cache=False)
    x_T = 80.0 * torch.randn(4, 1, 3, 3, generator=g, dtype=DT)
    sig = karras_sigmas(60, 0.002, 80.0).to(DT)
    same = lvn.denoiser_gap_along_trajectory(G, G, x_T, sig)
    assert same["at_net_states"].abs().max() < 1e-20             # identical denoisers at identical states
    assert same["closed_form"].max() < 1e-2                        # Heun (60 steps) vs the closed-form path
    other = lvn.denoiser_gap_along_trajectory(IdealDenoiser(Y), G, x_T, sig)
    fse = other["at_net_states"]        # the delta mixture is Gaussian-like at high noise only
    assert fse[0] < 1e-6 and fse.max() > 1e-2
    assert other["closed_form"][-1] > 0.1 > other["closed_form"][0]   # the paths part: a training image vs a blur
    with pytest.raises(ValueError, match="ending in 0"):
        lvn.denoiser_gap_along_trajectory(G, G, x_T, sig[:-1])
