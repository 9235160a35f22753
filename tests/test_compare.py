"""The same-noise comparison harness (course_lib.compare), tested with closed-form Wiener denoisers."""
import math

import pytest
import torch

from course_lib.compare import (
    compare, compare_single_step, denoiser_key, initial_noise, run_trajectories,
)
from course_lib.denoisers import FunctionDenoiser, GaussianDenoiser
from course_lib.sampling import denoiser_evaluations, sample
from course_lib.schedules import karras_sigmas

DT = torch.float64
SHAPE = (1, 4, 4)
SIGMAS = karras_sigmas(5, sigma_min=0.01, sigma_max=10.0)


def _wiener(seed, scale=1.0, key=None):
    d = math.prod(SHAPE)
    g = torch.Generator().manual_seed(seed)
    M = torch.randn(d, d, generator=g, dtype=DT)
    Sigma = scale * M @ M.T / d + 0.01 * torch.eye(d, dtype=DT)
    mu = 0.3 * torch.randn(d, generator=g, dtype=DT)
    D = GaussianDenoiser.from_covariance(mu, Sigma, SHAPE)
    if key is not None:
        D.cache_key = key
    return D


def _perturbed(base, eps, seed):
    """base's covariance with a random symmetric perturbation of relative size eps."""
    d = base.d
    E = torch.randn(d, d, generator=torch.Generator().manual_seed(seed), dtype=DT)
    Sigma = base.covariance() + eps * (E @ E.T) / d
    return GaussianDenoiser.from_covariance(base.mean, Sigma, SHAPE)


def _r2_manual(pred, target):
    p, t = pred.flatten(1), target.flatten(1)
    return 1 - ((p - t) ** 2).sum(1) / ((t - t.mean(1, keepdim=True)) ** 2).sum(1)


class Counter:
    def __init__(self, D):
        self.D, self.n = D, 0

    def __call__(self, x, sigma):
        self.n += 1
        return self.D(x, sigma)


def test_initial_noise_is_per_seed():
    x = initial_noise([5, 2], SHAPE, 3.0, dtype=DT)
    assert torch.equal(x[1], (3.0 * torch.randn(SHAPE, generator=torch.Generator().manual_seed(2))).to(DT))
    assert torch.equal(initial_noise([2], SHAPE, 3.0, dtype=DT)[0], x[1])


def test_identical_denoisers_agree_exactly():
    A, B = _wiener(0), _wiener(0)
    res = compare({"A": A}, B, SIGMAS, [0, 1, 2], SHAPE, cache=False, dtype=DT)
    assert torch.all(res.r2["A"] == 1) and torch.all(res.mse["A"] == 0)
    assert res.step_r2["A"].shape == (5, 3) and torch.all(res.step_r2["A"] == 1)
    assert torch.all(res.step_mse["A"] == 0)
    med, lo, hi = res.median("A")
    assert med == lo == hi == 1.0


def test_r2_and_mse_equal_a_manual_computation():
    ref, cand = _wiener(0), _perturbed(_wiener(0), 0.5, 1)
    seeds = [4, 9, 1]
    res = compare(cand, ref, SIGMAS, seeds, SHAPE, solver="heun", cache=False, dtype=DT, batch_size=2)
    name = res.names[0]
    x_T = torch.stack([10.0 * torch.randn(SHAPE, generator=torch.Generator().manual_seed(s)) for s in seeds]).to(DT)
    tr_ref = sample(ref, x_T, SIGMAS, "heun", return_trajectory=True)
    tr_c = sample(cand, x_T, SIGMAS, "heun", return_trajectory=True)
    assert torch.allclose(res.samples["reference"], tr_ref.x[-1], atol=1e-12)
    assert torch.allclose(res.r2[name], _r2_manual(tr_c.x[-1], tr_ref.x[-1]), atol=1e-10)
    assert torch.allclose(res.mse[name], ((tr_c.x[-1] - tr_ref.x[-1]) ** 2).flatten(1).mean(1), atol=1e-12)
    for t in range(5):
        assert torch.allclose(res.step_r2[name][t], _r2_manual(tr_c.denoised[t], tr_ref.denoised[t]), atol=1e-10)
    assert bool((res.r2[name] < 1).all())  # they really differ


def test_seed_determinism_and_batch_composition_invariance():
    D = _wiener(3)
    a = run_trajectories(D, SIGMAS, [3, 7, 11], SHAPE, cache=False, dtype=DT, batch_size=2)
    b = run_trajectories(D, SIGMAS, [11, 0, 3, 7], SHAPE, cache=False, dtype=DT, batch_size=4)
    assert torch.allclose(a.x[:, 0], b.x[:, 2], atol=1e-12) and torch.allclose(a.x[:, 2], b.x[:, 0], atol=1e-12)
    assert torch.allclose(a.denoised[:, 1], b.denoised[:, 3], atol=1e-12)
    assert not torch.allclose(b.x[-1, 0], b.x[-1, 1])
    # stochastic solvers: each seed's fresh noise comes from its own generator
    s1 = run_trajectories(D, SIGMAS, [1, 2], SHAPE, solver="stochastic", cache=False, dtype=DT,
                          sampler_kwargs={"S_churn": 10.0})
    s2 = run_trajectories(D, SIGMAS, [2], SHAPE, solver="stochastic", cache=False, dtype=DT,
                          sampler_kwargs={"S_churn": 10.0})
    det = run_trajectories(D, SIGMAS, [2], SHAPE, solver="heun", cache=False, dtype=DT)
    assert torch.equal(s1.x[:, 1], s2.x[:, 0])
    assert not torch.allclose(s2.x[-1], det.x[-1])  # the churn really added noise


def test_cache_hit_skips_the_denoiser(tmp_path):
    ref, cand = Counter(_wiener(0)), Counter(_perturbed(_wiener(0), 0.3, 2))
    kw = dict(keys={"reference": "wiener-0", "cand": "wiener-0-pert"}, cache=True, cache_dir=tmp_path,
              dtype=DT, batch_size=2)
    first = compare({"cand": cand}, ref, SIGMAS, [0, 1, 2], SHAPE, **kw)
    nfe = denoiser_evaluations("heun", 5)
    assert ref.n == cand.n == 2 * nfe  # two batches of seeds
    assert len(list((tmp_path / "compare").glob("*.pt"))) == 2
    again = compare({"cand": cand}, ref, SIGMAS, [2, 0, 1], SHAPE, **kw)
    assert ref.n == cand.n == 2 * nfe and again.calls == {"reference": 0, "cand": 0}
    for k in ("r2", "mse", "step_r2", "step_mse"):
        assert torch.equal(getattr(again, k)["cand"][..., [1, 2, 0]], getattr(first, k)["cand"])
    # one new seed: only that seed is computed
    compare({"cand": cand}, ref, SIGMAS, [0, 1, 2, 5], SHAPE, **kw)
    assert ref.n == cand.n == 3 * nfe
    # another solver or grid is another cache entry
    compare({"cand": cand}, ref, SIGMAS, [0], SHAPE, solver="euler", **kw)
    assert ref.n == 3 * nfe + 5
    compare({"cand": cand}, ref, karras_sigmas(4, 0.01, 10.0), [0], SHAPE, **kw)
    assert ref.n == 3 * nfe + 5 + denoiser_evaluations("heun", 4)


def test_unnamed_denoisers_are_never_cached(tmp_path):
    ref, cand = Counter(_wiener(0)), Counter(_wiener(1))
    with pytest.raises(ValueError, match="no identity"):
        compare({"cand": cand}, ref, SIGMAS, [0], SHAPE, cache=True, cache_dir=tmp_path, keys={"reference": "r"})
    compare({"cand": cand}, ref, SIGMAS, [0], SHAPE, cache="auto", cache_dir=tmp_path, keys={"reference": "r"})
    n = cand.n
    compare({"cand": cand}, ref, SIGMAS, [0], SHAPE, cache="auto", cache_dir=tmp_path, keys={"reference": "r"})
    assert cand.n == 2 * n and n > 0  # recomputed, not cached
    assert len(list((tmp_path / "compare").glob("*.pt"))) == 1  # only the named reference
    assert denoiser_key(_wiener(0, key="k")) == "k" and denoiser_key(_wiener(0)) is None


def test_single_step_matches_manual_evaluation(tmp_path):
    ref, cand = _wiener(0), _perturbed(_wiener(0), 0.5, 3)
    seeds = [2, 8]
    for solver in ("heun", "ddim"):
        res = compare_single_step({"cand": cand, "self": _wiener(0)}, ref, SIGMAS, seeds, SHAPE, solver=solver,
                                  cache=False, dtype=DT, batch_size=3)
        x_T = initial_noise(seeds, SHAPE, 10.0, dtype=DT)
        tr = sample(ref, x_T, SIGMAS, solver, return_trajectory=True)
        for t in range(5):
            pred = cand(tr.x[t], float(SIGMAS[t]))
            assert torch.allclose(res.step_r2["cand"][t], _r2_manual(pred, tr.denoised[t]), atol=1e-10)
            assert torch.allclose(res.step_mse["cand"][t], ((pred - tr.denoised[t]) ** 2).flatten(1).mean(1),
                                  atol=1e-12)
        assert torch.allclose(res.r2["cand"], res.step_r2["cand"].mean(0))
        assert torch.allclose(res.step_r2["self"], torch.ones(5, 2, dtype=DT), atol=1e-10)
        assert bool((res.step_r2["cand"] < 1 - 1e-6).any())
    # cached single-step predictions: no candidate call the second time
    c = Counter(cand)
    kw = dict(keys={"reference": "r0", "cand": "c0"}, cache=True, cache_dir=tmp_path, dtype=DT)
    a = compare_single_step({"cand": c}, ref, SIGMAS, seeds, SHAPE, **kw)
    n = c.n
    b = compare_single_step({"cand": c}, ref, SIGMAS, seeds, SHAPE, **kw)
    assert n > 0 and c.n == n and torch.equal(a.step_r2["cand"], b.step_r2["cand"])
    with pytest.raises(ValueError, match="stochastic"):
        compare_single_step(cand, ref, SIGMAS, seeds, SHAPE, solver="stochastic", cache=False)


def test_win_fraction_summary_and_table():
    ref = _wiener(0)
    close, far = _perturbed(ref, 0.05, 4), _perturbed(ref, 2.0, 5)
    seeds = list(range(8))
    res = compare({"close": close, "far": far}, ref, SIGMAS, seeds, SHAPE, cache=False, dtype=DT)
    r_c, r_f = res.r2["close"], res.r2["far"]
    expected = float(((r_c > r_f).double() + 0.5 * (r_c == r_f).double()).mean())
    assert res.beats("close", "far") == expected and expected > 0.5
    assert res.beats("far", "close") == pytest.approx(1 - expected)
    m_c, m_f = res.mse["close"], res.mse["far"]
    assert res.beats("close", "far", "mse") == float(((m_c < m_f).double() + 0.5 * (m_c == m_f).double()).mean())
    med, lo, hi = res.summary(n_boot=200)["close"]["r2"]
    assert med == pytest.approx(float(r_c.quantile(0.5))) and lo <= med <= hi
    assert res.step_medians()["far"].shape == (5,)
    text = res.table(n_boot=200)
    assert "close" in text and "far" in text and "beats" in text


def test_bad_arguments():
    D = _wiener(0)
    with pytest.raises(TypeError, match="seeds"):
        run_trajectories(D, SIGMAS, 4, SHAPE, cache=False)
    with pytest.raises(ValueError, match="distinct"):
        run_trajectories(D, SIGMAS, [1, 1], SHAPE, cache=False)
    with pytest.raises(ValueError, match="shape"):
        run_trajectories(D, SIGMAS, [1], (4, 4), cache=False)
    with pytest.raises(ValueError, match="solver"):
        run_trajectories(D, SIGMAS, [1], SHAPE, solver="rk4", cache=False)
    with pytest.raises(ValueError, match="sigmas"):
        run_trajectories(D, [1.0, 2.0], [1], SHAPE, cache=False)
    with pytest.raises(ValueError, match="clashes"):
        compare({"reference": D}, D, SIGMAS, [0], SHAPE, cache=False)
    with pytest.raises(ValueError, match="cache"):
        compare(D, D, SIGMAS, [0], SHAPE, cache="yes")
    with pytest.raises(TypeError, match="candidates"):
        compare([D], D, SIGMAS, [0], SHAPE, cache=False)
    res = compare({"a": D}, D, SIGMAS, [0], SHAPE, cache=False)
    with pytest.raises(KeyError, match="unknown candidate"):
        res.beats("a", "b")
    with pytest.raises(ValueError, match="metric"):
        res.median("a", "psnr")


def test_plots_draw_the_samples():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ref = _wiener(0)
    res = compare({"far": _perturbed(ref, 2.0, 5)}, ref, SIGMAS, [0, 1, 2], SHAPE, cache=False, dtype=DT)
    fig = res.image_grid(n=2)
    assert len(fig.axes) == 2 and "far" in fig.axes[1].get_ylabel()
    img = fig.axes[0].images[0].get_array()
    assert img.shape == (4 + 2, 2 * 4 + 3)  # 2 images of 4x4 with 1-pixel padding
    expected = ((res.samples["reference"][1, 0] + 1) / 2).clamp(0, 1)
    assert torch.allclose(torch.as_tensor(img[1:5, 6:10]), expected.float())
    ax = res.plot_steps()
    assert len(ax.lines) == 1 and torch.allclose(torch.as_tensor(ax.lines[0].get_ydata()),
                                                 res.step_r2["far"].quantile(0.5, dim=1))
    plt.close("all")


def test_network_keys_include_a_weights_hash():
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(()))

    class NetDenoiser(FunctionDenoiser):
        cache_key = "net:toy"

    D = NetDenoiser(lambda x, s: x)
    D.net = Net()
    k1 = denoiser_key(D)
    assert k1.startswith("net:toy|weights:") and denoiser_key(D) == k1
    with torch.no_grad():
        D.net.w.add_(1e-3)
    assert denoiser_key(D) != k1
    assert denoiser_key(D, "explicit").startswith("explicit|weights:")
