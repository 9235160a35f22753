"""Chapter 7's global-structure tools against closed forms and loop references."""
import math
from collections import Counter

import pytest
import torch

from course_lib import global_structure as gs


def test_crossing_matches_log_linear_closed_form():
    Ns = [10, 100, 1000, 10000]
    a, b = -0.4, 0.25                       # values = a + b ln N: crosses 0.5 at exp((0.5 - a) / b)
    vals = [a + b * math.log(n) for n in Ns]
    assert gs.crossing(Ns, vals, 0.5) == pytest.approx(math.exp((0.5 - a) / b), rel=1e-12)
    assert gs.crossing(Ns, [0.9, 0.95, 0.97, 0.99], 0.5) == 10
    assert math.isnan(gs.crossing(Ns, [0.1, 0.2, 0.3, 0.4], 0.5))
    with pytest.raises(ValueError, match="increasing"):
        gs.crossing([10, 5], [0.1, 0.2])


def _gaussian(d_side=4, rank=None):
    from course_lib.denoisers import GaussianDenoiser
    g = torch.Generator().manual_seed(0)
    d = d_side * d_side
    U, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    lam = torch.rand(d, generator=g, dtype=torch.float64).sort(descending=True).values * 3
    return GaussianDenoiser(torch.randn(d, generator=g, dtype=torch.float64), lam, U, (1, d_side, d_side), rank=rank), lam


def test_adaptive_basis_of_wiener_filter_is_its_shrinkage():
    D, lam = _gaussian()
    sigma = 0.7
    y = torch.randn(1, 1, 4, 4, dtype=torch.float64)
    res = gs.adaptive_basis(D, y, sigma)
    expect = (lam / (lam + sigma**2)).sort(descending=True).values
    assert torch.allclose(res["eigenvalues"], expect, atol=1e-10)
    assert res["asymmetry"] < 1e-10
    assert res["trace"] == pytest.approx(float(expect.sum()), rel=1e-10)
    assert gs.effective_dimension(res["eigenvalues"]) == pytest.approx(float(expect.sum()), rel=1e-10)
    # the eigenvectors span the PCA basis: top-5 subspaces coincide
    assert gs.subspace_overlap(res["eigenvectors"][:, :5], D.U[:, :5]) == pytest.approx(1.0, abs=1e-8)
    with pytest.raises(ValueError, match="one image"):
        gs.full_jacobian(D, y.repeat(2, 1, 1, 1), sigma)


def test_subspace_overlap_limits_and_random_expectation():
    g = torch.Generator().manual_seed(1)
    d, k = 30, 4
    Q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    assert gs.subspace_overlap(Q[:, :k], Q[:, :k]) == pytest.approx(1.0)
    assert gs.subspace_overlap(Q[:, :k], Q[:, k:2 * k]) == pytest.approx(0.0, abs=1e-12)
    mc = [gs.subspace_overlap(Q[:, :k], torch.linalg.qr(torch.randn(d, k, generator=g, dtype=torch.float64))[0])
          for _ in range(400)]
    assert sum(mc) / len(mc) == pytest.approx(k / d, rel=0.1)
    with pytest.raises(ValueError, match="must both be"):
        gs.subspace_overlap(Q[:, :2], Q[:, :3])


def test_wavelet_compaction_against_explicit_matrix():
    from course_lib.wavelets import dwt_matrix
    g = torch.Generator().manual_seed(2)
    V = torch.randn(64, 3, generator=g, dtype=torch.float64)
    M = dwt_matrix(8, 8, "haar", 2)
    c = (M @ V) ** 2
    m = round(0.25 * 64)
    expect = c.sort(0, descending=True).values[:m].sum(0) / c.sum(0)
    assert torch.allclose(gs.wavelet_compaction(V, (1, 8, 8), 0.25), expect, atol=1e-12)
    atom = M[5].reshape(64, 1)                       # one wavelet: all its energy in one coefficient
    assert float(gs.wavelet_compaction(atom, (1, 8, 8), 1 / 64)) == pytest.approx(1.0, abs=1e-12)


def test_class_consistency_matches_loop():
    g = torch.Generator().manual_seed(3)
    train = torch.randn(40, 1, 5, 5, generator=g)
    labels = torch.randint(0, 4, (40,), generator=g)
    samples = torch.randn(6, 1, 5, 5, generator=g)
    got = gs.class_consistency(samples, train, labels, k=7)
    for b in range(6):
        dist = [(float((samples[b] - train[i]).norm()), i) for i in range(40)]
        nn = [i for _, i in sorted(dist)[:7]]
        assert float(got[b]) == pytest.approx(Counter(int(labels[i]) for i in nn).most_common(1)[0][1] / 7)
    assert float(gs.class_consistency(train[:3], train, torch.zeros(40, dtype=torch.long), k=5).min()) == 1.0
    with pytest.raises(ValueError, match="k must lie"):
        gs.class_consistency(samples, train, labels, k=41)


def test_generalization_curve_identical_networks_agree(require_data):
    require_data("mnist", "mnist_train_5k.npz")
    from course_lib.creativity import network_training_images
    from course_lib.nets import load_pretrained
    pair = ("mnist_unet_half_a_book", "mnist_unet_half_a_book")
    res = gs.generalization_curve({7: pair}, seeds=[0, 1], n_steps=4)[7]
    assert torch.allclose(res["r2"], torch.ones(2, dtype=res["r2"].dtype))
    X = network_training_images(load_pretrained(pair[0]))
    nov = torch.cdist(res["samples_a"].flatten(1).double(), X.flatten(1).double()).min(1).values / 28
    assert torch.allclose(res["novelty_a"].double(), nov, rtol=1e-4)
    assert 2500 in gs.nsweep_pairs() and gs.nsweep_pairs()[2500][1] == "mnist_unet_half_b_book"
    assert torch.allclose(gs.novelty_of(res["samples_a"], pair[0]).double(), nov, rtol=1e-4)
