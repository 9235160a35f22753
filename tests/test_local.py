"""LS, ELS, boundary-broken ELS and ES machines against direct loop references (Chapter 5)."""
import itertools
import math

import pytest
import torch

from course_lib.data import load_dataset
from course_lib.denoisers import (EquivariantDenoiser, EquivariantLocalDenoiser, IdealDenoiser,
                                  LocalDenoiser)
from course_lib.patches import boundary_groups
from course_lib.sampling import sample

DT = torch.float64


def tiny(seed=0, N=3, C=2, H=5, W=5, B=2):
    g = torch.Generator().manual_seed(seed)
    Y = torch.rand(N, C, H, W, generator=g, dtype=DT) * 2 - 1
    x = torch.randn(B, C, H, W, generator=g, dtype=DT)
    return Y, x


# ---------------------------------------------------------------- loop references (tests only)
def ref_patch(img, r, c, P, boundary):
    """The P x P neighbourhood of pixel (r, c) pixel by pixel, and its out-of-image mask."""
    C, H, W = img.shape
    h = P // 2
    vals, outside = [], []
    for i in range(-h, h + 1):
        for j in range(-h, h + 1):
            rr, cc = r + i, c + j
            if boundary == "circular":
                vals.append(img[:, rr % H, cc % W])
                outside.append(False)
            elif 0 <= rr < H and 0 <= cc < W:
                vals.append(img[:, rr, cc])
                outside.append(False)
            else:
                vals.append(torch.zeros(C, dtype=img.dtype))
                outside.append(True)
    return torch.stack(vals), tuple(outside)


def softmax_average(dists, values, sigma):
    w = torch.softmax(torch.tensor(dists, dtype=DT) * (-0.5 / sigma**2), 0)
    return (w.unsqueeze(1) * torch.stack(values)).sum(0)


def ref_ls(x, Y, sigma, P, boundary):
    B, C, H, W = x.shape
    out = torch.zeros_like(x)
    for b, r, c in itertools.product(range(B), range(H), range(W)):
        q, _ = ref_patch(x[b], r, c, P, boundary)
        dists = [float(((q - ref_patch(y, r, c, P, boundary)[0]) ** 2).sum()) for y in Y]
        out[b, :, r, c] = softmax_average(dists, [y[:, r, c] for y in Y], sigma)
    return out


def ref_els(x, Y, sigma, P, boundary):
    """ELS (circular) / boundary-broken ELS (zeros): a training patch is in pixel x's dictionary iff
    its zero padding sits exactly where x's does (same out-of-image mask)."""
    B, C, H, W = x.shape
    out = torch.zeros_like(x)
    for b, r, c in itertools.product(range(B), range(H), range(W)):
        q, mask = ref_patch(x[b], r, c, P, boundary)
        dists, centres = [], []
        for y in Y:
            for rr, cc in itertools.product(range(H), range(W)):
                p, pmask = ref_patch(y, rr, cc, P, boundary)
                if pmask == mask:
                    dists.append(float(((q - p) ** 2).sum()))
                    centres.append(y[:, rr, cc])
        out[b, :, r, c] = softmax_average(dists, centres, sigma)
    return out


def ref_es(x, Y, sigma):
    out = torch.zeros_like(x)
    H, W = x.shape[-2:]
    for b in range(x.shape[0]):
        shifted = [torch.roll(y, (i, j), (1, 2)) for y in Y for i in range(H) for j in range(W)]
        dists = [float(((x[b] - s) ** 2).sum()) for s in shifted]
        w = torch.softmax(torch.tensor(dists, dtype=DT) * (-0.5 / sigma**2), 0)
        out[b] = (w.view(-1, 1, 1, 1) * torch.stack(shifted)).sum(0)
    return out


# ---------------------------------------------------------------- machines == references
@pytest.mark.parametrize("P,boundary", [(1, "zeros"), (3, "zeros"), (3, "circular"), (5, "circular"),
                                        (7, "zeros")])
def test_ls_matches_loop_reference(P, boundary):
    Y, x = tiny(1)
    for sigma in (0.3, 1.5):
        got = LocalDenoiser(Y, P, boundary=boundary)(x, sigma)
        torch.testing.assert_close(got, ref_ls(x, Y, sigma, P, boundary), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("P,boundary", [(3, "circular"), (5, "circular"), (3, "zeros"), (5, "zeros"),
                                        (7, "zeros")])
def test_els_matches_loop_reference(P, boundary):
    Y, x = tiny(2, H=5, W=6)
    for sigma in (0.4, 2.0):
        got = EquivariantLocalDenoiser(Y, P, boundary=boundary, chunk_size=2)(x, sigma)
        torch.testing.assert_close(got, ref_els(x, Y, sigma, P, boundary), rtol=1e-9, atol=1e-10)


def test_es_matches_loop_reference():
    Y, x = tiny(3, H=4, W=5)
    for sigma in (0.5, 3.0):
        got = EquivariantDenoiser(Y, chunk_size=2)(x, sigma)
        torch.testing.assert_close(got, ref_es(x, Y, sigma), rtol=1e-9, atol=1e-10)


# ---------------------------------------------------------------- limits between machines
def test_els_full_patch_circular_is_es():
    Y, x = tiny(4, N=4, C=1, H=7, W=7, B=3)
    for sigma in (0.2, 1.0, 5.0):
        els = EquivariantLocalDenoiser(Y, 7, boundary="circular")(x, sigma)
        torch.testing.assert_close(els, EquivariantDenoiser(Y)(x, sigma), rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("P,boundary", [(9, "zeros"), (11, "zeros"), (5, "circular")])
def test_ls_covering_patch_is_ideal(P, boundary):
    Y, x = tiny(5, N=6, C=2, H=5, W=5, B=3)
    for sigma in (0.3, 1.0, 4.0):
        torch.testing.assert_close(LocalDenoiser(Y, P, boundary=boundary)(x, sigma),
                                   IdealDenoiser(Y)(x, sigma), rtol=1e-9, atol=1e-10)


def test_zeros_els_covering_patch_is_ls():
    """With P >= 2 max(H, W) - 1 every location is its own boundary class: ELS(zeros) = LS."""
    Y, x = tiny(6, H=4, W=5)
    torch.testing.assert_close(EquivariantLocalDenoiser(Y, 9, boundary="zeros")(x, 0.7),
                               LocalDenoiser(Y, 9)(x, 0.7), rtol=1e-9, atol=1e-10)


def test_small_sigma_limit_is_nearest_patch_centre():
    Y, x = tiny(7, H=6, W=6)
    for cls, b in ((EquivariantLocalDenoiser, "zeros"), (EquivariantLocalDenoiser, "circular"),
                   (LocalDenoiser, "zeros")):
        m = cls(Y, 3, boundary=b)
        torch.testing.assert_close(m(x, 1e-3), m.nearest(x)["centre"], rtol=0, atol=1e-8)


def test_nearest_reports_a_true_patch():
    Y, x = tiny(8, H=6, W=5)
    m = EquivariantLocalDenoiser(Y, 3, boundary="zeros")
    nn = m.nearest(x)
    ref_d = torch.zeros(x.shape[0], 6, 5, dtype=DT)
    for b, r, c in itertools.product(range(x.shape[0]), range(6), range(5)):
        q, _ = ref_patch(x[b], r, c, 3, "zeros")
        i, loc = int(nn["image"][b, r, c]), int(nn["location"][b, r, c])
        p, _ = ref_patch(Y[i], loc // 5, loc % 5, 3, "zeros")
        ref_d[b, r, c] = ((q - p) ** 2).sum()
        assert torch.equal(nn["centre"][b, :, r, c], Y[i, :, loc // 5, loc % 5])
    torch.testing.assert_close(nn["sqdist"], ref_d, rtol=1e-9, atol=1e-9)


# ---------------------------------------------------------------- streaming, schedules, dtypes
@pytest.mark.parametrize("cls,kw", [(EquivariantLocalDenoiser, {"patch_size": 3, "boundary": "zeros"}),
                                    (EquivariantLocalDenoiser, {"patch_size": 5, "boundary": "circular"}),
                                    (LocalDenoiser, {"patch_size": 3}), (EquivariantDenoiser, {})])
def test_chunk_size_invariance(cls, kw):
    Y, x = tiny(9, N=7, H=6, W=6, B=3)
    sigma = torch.tensor([0.05, 0.5, 3.0], dtype=DT)
    outs = [cls(Y, chunk_size=c, **kw)(x, sigma) for c in (1, 3, 7, None)]
    for o in outs[1:]:
        torch.testing.assert_close(o, outs[0], rtol=1e-10, atol=1e-12)


def test_patch_size_schedule_per_batch_element():
    Y, x = tiny(10, H=6, W=6, B=3)
    sched = lambda s: 5 if s > 1.0 else 3  # noqa: E731
    sigma = torch.tensor([2.0, 0.5, 1.5], dtype=DT)
    got = EquivariantLocalDenoiser(Y, sched, boundary="zeros")(x, sigma)
    for b in range(3):
        P = sched(float(sigma[b]))
        ref = EquivariantLocalDenoiser(Y, P, boundary="zeros")(x[b:b + 1], sigma[b:b + 1])
        torch.testing.assert_close(got[b:b + 1], ref, rtol=1e-12, atol=1e-12)


def test_float32_matches_float64():
    Y, x = tiny(11, N=5, H=8, W=8, B=2)
    for m in (EquivariantLocalDenoiser(Y.float(), 3, boundary="zeros"), LocalDenoiser(Y.float(), 5),
              EquivariantDenoiser(Y.float())):
        torch.testing.assert_close(m(x.float(), 0.8).double(), m(x, 0.8), rtol=1e-4, atol=1e-4)


def test_boundary_groups_partition_pixels():
    for H, W, P in ((5, 6, 3), (8, 8, 5), (4, 5, 9), (6, 6, 1)):
        idx = torch.cat([g.flatten() for g in boundary_groups(H, W, P, "zeros")])
        assert torch.equal(idx.sort().values, torch.arange(H * W))
        assert len(boundary_groups(H, W, P, "zeros")) <= 4


def test_bad_inputs_raise_clear_errors():
    Y, x = tiny(12)
    with pytest.raises(ValueError, match="patch_size"):
        EquivariantLocalDenoiser(Y, 4)
    with pytest.raises(ValueError, match="boundary"):
        LocalDenoiser(Y, 3, boundary="reflect")
    with pytest.raises(ValueError, match="image size"):
        EquivariantLocalDenoiser(Y, 7, boundary="circular")
    with pytest.raises(ValueError, match="image size"):
        EquivariantLocalDenoiser(Y, lambda s: 7, boundary="circular")(x, 1.0)
    with pytest.raises(ValueError, match="sigma"):
        LocalDenoiser(Y, 3)(x, -1.0)
    with pytest.raises(ValueError, match="image shape"):
        LocalDenoiser(Y, 3)(x[:, :1], 1.0)
    with pytest.raises(ValueError, match="chunk_size"):
        EquivariantDenoiser(Y, chunk_size=0)
    with pytest.raises(ValueError, match=r"patch_size\(sigma\)"):
        EquivariantLocalDenoiser(Y, lambda s: 2)(x, 1.0)


# ---------------------------------------------------------------- Theorem 4.1 on generated samples
@pytest.mark.parametrize("machine", ["ELS", "LS"])
def test_theorem_4_1_local_consistency_two_tone(machine):
    """Two training images (all black, all white), P = 3, circular. Theorem 4.1 assumes the flow has
    converged (fronts between colours keep moving late, so the flow runs to sigma = 1e-10);
    for every sample whose last step barely moves it (|x(sigma_min) - D| < 1e-3 at every
    pixel), every pixel is black or white, equals the centre of its nearest training patch, and the
    majority colour of its 3 x 3 neighbourhood is its own colour (Sec. 4.1)."""
    train, _ = load_dataset("two_tone", size=12)
    train = train.double()
    cls = EquivariantLocalDenoiser if machine == "ELS" else LocalDenoiser
    m = cls(train, 3, boundary="circular")
    g = torch.Generator().manual_seed(0)
    sigmas = torch.cat([torch.logspace(math.log10(20.0), -10, 160, dtype=DT), torch.zeros(1, dtype=DT)])
    x_prev = sample(m, sigmas[0] * torch.randn(12, 1, 12, 12, generator=g, dtype=DT), sigmas[:-1],
                    solver="euler")
    x = m(x_prev, float(sigmas[-2]))
    converged = (x - x_prev).abs().amax((1, 2, 3)) < 1e-3
    assert int(converged.sum()) >= 10, f"only {int(converged.sum())} of 12 flows converged"
    x = x[converged]
    assert torch.equal(x.abs(), torch.ones_like(x))
    assert torch.equal(x, m.nearest(x)["centre"])
    neigh = sum(torch.roll(x, (i, j), (2, 3)) for i in (-1, 0, 1) for j in (-1, 0, 1))
    assert torch.equal(torch.sign(neigh), x)
    # creativity: most samples are mosaics of both colours, not copies of a training image
    assert int((x.reshape(len(x), -1).sum(1).abs() < 144).sum()) >= len(x) // 2
