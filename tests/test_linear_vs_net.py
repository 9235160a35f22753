"""The linear lens against networks: score FSE table, the 'explained above' crossing, teleportation at a
fixed evaluation budget, and the measured claims of Chapter 2 on the committed UNet."""
import math

import pytest
import torch

from course_lib import linear_vs_net as lvn
from course_lib.denoisers import GaussianDenoiser, IdealDenoiser

SHAPE = (1, 4, 4)
D = 16


def _gauss(seed=0):
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(D, D, generator=g, dtype=torch.float64))
    Sigma = Q @ torch.diag(torch.logspace(1, -3, D, dtype=torch.float64)) @ Q.T
    return GaussianDenoiser.from_covariance(0.3 * torch.randn(D, generator=g, dtype=torch.float64), Sigma, SHAPE)


def test_score_fse_table_exact_for_scaled_score():
    """A candidate whose score is (1 + e) times the reference's has FSE = e^2 at every point and sigma."""
    G = _gauss()
    e = 0.3
    scaled = lambda x, s: x + (1 + e) * (G(x, s) - x)  # noqa: E731
    x0 = torch.randn(5, *SHAPE, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    t = lvn.score_fse_table(G, {"same": G, "scaled": scaled, "same2": G}, x0, [0.1, 1.0, 10.0], seed=3)
    assert t["same"].shape == (3, 5)
    assert torch.equal(t["same"], torch.zeros(3, 5, dtype=t["same"].dtype))
    torch.testing.assert_close(t["scaled"], torch.full((3, 5), e**2, dtype=torch.float64), rtol=1e-9, atol=0)
    with pytest.raises(TypeError):
        lvn.score_fse_table(G, {}, x0, [1.0])


def test_score_fse_table_shares_the_noise_across_candidates():
    """The noisy points are the same for every candidate: FSE(A vs ref) computed in the table equals the
    one computed alone with the same seed, and differs with another seed."""
    G = _gauss()
    ideal = IdealDenoiser(torch.randn(7, *SHAPE, dtype=torch.float64, generator=torch.Generator().manual_seed(4)))
    x0 = torch.randn(4, *SHAPE, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    both = lvn.score_fse_table(G, {"a": ideal, "b": G}, x0, [0.5, 2.0], seed=7)
    alone = lvn.score_fse_table(G, {"a": ideal}, x0, [0.5, 2.0], seed=7)
    other = lvn.score_fse_table(G, {"a": ideal}, x0, [0.5, 2.0], seed=8)
    assert torch.equal(both["a"], alone["a"])
    assert not torch.allclose(both["a"], other["a"])


@pytest.mark.parametrize("c,p,thr", [(4.0, 2.0, 0.01), (0.3, 1.5, 0.05)])
def test_explained_above_is_exact_for_power_laws(c, p, thr):
    s = torch.logspace(-2, 2, 9, dtype=torch.float64)
    fse = c * s ** (-p)
    expected = (c / thr) ** (1 / p)
    assert lvn.explained_above(s, fse, thr) == pytest.approx(expected, rel=1e-12)
    # (S, B) input is averaged over points first
    assert lvn.explained_above(s, torch.stack([fse, fse], 1), thr) == pytest.approx(expected, rel=1e-12)


def test_explained_above_uses_the_last_failure_and_edge_cases():
    s = torch.tensor([1.0, 2.0, 4.0, 8.0])
    # dips below, rises again at 4, then stays below: the crossing is after sigma = 4
    f = torch.tensor([0.5, 0.001, 0.02, 0.0001])
    x = lvn.explained_above(s, f, 0.01)
    assert 4.0 < x < 8.0
    assert lvn.explained_above(s, torch.full((4,), 1e-4), 0.01) == 1.0
    assert lvn.explained_above(s, torch.tensor([0.5, 0.4, 0.3, 0.2]), 0.01) == math.inf
    with pytest.raises(ValueError, match="increasing"):
        lvn.explained_above(s.flip(0), f)
    with pytest.raises(ValueError, match="len"):
        lvn.explained_above(s, f[:3])
    with pytest.raises(ValueError, match="finite"):
        lvn.explained_above(s, torch.tensor([0.5, float("nan"), 0.1, 0.1]))


def test_teleport_grid():
    g = lvn.teleport_grid(5, 10.0, 0.002, 80.0)
    assert g.shape == (7,) and g[0] == 80.0 and g[1] == pytest.approx(10.0) and g[-1] == 0
    assert g[-2] == pytest.approx(0.002)
    assert bool((g[:-1] > g[1:]).all())
    plain = lvn.teleport_grid(5, 80.0)
    assert plain.shape == (6,) and plain[0] == pytest.approx(80.0)
    for bad in (100.0, 0.001):
        with pytest.raises(ValueError, match="sigma_skip"):
            lvn.teleport_grid(5, bad)


def test_frontier_for_a_gaussian_denoiser_has_no_teleportation_floor():
    """With the Gaussian denoiser itself the jump is exact, so the teleported error only reflects the
    solver on the tail, and teleporting gives a smaller error than the plain sampler at equal NFE
    (the plain sampler spends steps on the part the closed form does exactly)."""
    G = _gauss()
    xT = 80.0 * torch.randn(6, *SHAPE, dtype=torch.float64, generator=torch.Generator().manual_seed(9))
    ref = lvn.reference_samples(G, xT, 400)
    # the fine Heun run agrees with the closed-form endpoint at sigma_min, then the last Euler step to 0
    from course_lib import linear
    x_min = linear.ve_trajectory(G, xT, 80.0, [0.002])[0]
    torch.testing.assert_close(ref, G(x_min, 0.002), rtol=1e-4, atol=5e-4)
    rows = lvn.nfe_error_frontier(G, G, xT, ref, steps=[4, 8, 16], sigma_skips=[80.0, 1.0])
    by = {(r["sigma_skip"], r["n_steps"]): r for r in rows}
    for n in (4, 8, 16):
        assert by[(80.0, n)]["nfe"] == by[(1.0, n)]["nfe"] == 2 * n - 1
        assert by[(1.0, n)]["rmse"] < by[(80.0, n)]["rmse"]
    assert by[(1.0, 16)]["rmse"] < by[(1.0, 4)]["rmse"] < 0.5
    best = lvn.best_at_budget(rows)
    assert sorted(best) == [7, 15, 31] and all(r["sigma_skip"] == 1.0 for r in best.values())


def test_frontier_has_a_floor_when_the_denoiser_is_not_gaussian():
    """For the ideal denoiser of five training points, teleporting to sigma_skip = 1 (below where its
    posterior commits to one point) sends some seeds to another training point than the exact flow:
    the error is a floor that more steps do not lower, while the plain sampler converges to 0."""
    train = torch.randn(5, *SHAPE, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    ideal, G = IdealDenoiser(train), GaussianDenoiser.from_data(train)
    xT = 80.0 * torch.randn(32, *SHAPE, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    ref = lvn.reference_samples(ideal, xT, 200)
    rows = lvn.nfe_error_frontier(ideal, G, xT, ref, steps=[8, 32], sigma_skips=[80.0, 1.0])
    by = {(r["sigma_skip"], r["n_steps"]): r for r in rows}
    assert by[(80.0, 32)]["rmse"] < 1e-3
    assert by[(1.0, 8)]["rmse"] > 0.1
    assert by[(1.0, 32)]["rmse"] == pytest.approx(by[(1.0, 8)]["rmse"], rel=0.05)


def test_frontier_errors():
    G = _gauss()
    xT = torch.randn(2, *SHAPE, dtype=torch.float64)
    with pytest.raises(ValueError, match="shape"):
        lvn.nfe_error_frontier(G, G, xT, xT[:1], [4], [80.0])
    with pytest.raises(ValueError, match="non-empty"):
        lvn.nfe_error_frontier(G, G, xT, xT, [], [80.0])


@pytest.fixture(scope="module")
def unet_setup():
    from course_lib.creativity import network_training_images
    from course_lib.data import load_dataset
    from course_lib.nets import load_pretrained
    from conftest import _require_data

    _require_data("mnist", "mnist_train_5k.npz")
    net = load_pretrained("mnist_unet_book")
    train = network_training_images(net)
    G = GaussianDenoiser.from_data(train)
    test, _ = load_dataset("mnist", split="test", n=24)
    return net, train, G, test


def test_gaussian_explains_the_unet_score_at_high_noise(unet_setup):
    """Chapter 2's claim on the committed UNet (measured: FSE 0.005 at sigma 2.75, 1e-4 at 8.5, and 0.2
    at 0.3, 0.8 at 0.01): above sigma ~ 5 the Gaussian of the training set explains more than 99% of the
    network's score; at low noise it does not, and there the ideal (memorizing) score is even worse at
    held-out points."""
    net, train, G, test = unet_setup
    sig = torch.tensor([0.05, 0.3, 5.0, 10.0])
    t = lvn.score_fse_table(net, {"gauss": G, "ideal": IdealDenoiser(train)}, test, sig, seed=1)
    g, i = t["gauss"].mean(1), t["ideal"].mean(1)
    assert g[2] < 0.01 and g[3] < 0.01
    assert g[0] > 0.2
    assert i[0] > g[0] and i[1] > g[1]
    assert lvn.explained_above(sig, t["gauss"]) < 5.0


def test_teleportation_beats_the_plain_unet_sampler_at_equal_nfe(unet_setup):
    """Measured on 8 seeds: at 13 evaluations the plain 7-step Heun sampler lands 0.16 rms from the
    fine run, teleporting to sigma = 10 first 0.08."""
    from course_lib.compare import initial_noise

    net, _, G, _ = unet_setup
    xT = initial_noise(range(4), (1, 28, 28), 80.0)
    ref = lvn.reference_samples(net, xT, 60)
    rows = lvn.nfe_error_frontier(net, G, xT, ref, steps=[7], sigma_skips=[80.0, 10.0])
    plain, tele = rows
    assert plain["nfe"] == tele["nfe"] == 13
    assert tele["rmse"] < 0.8 * plain["rmse"]
    assert tele["r2_median"] > plain["r2_median"]
