"""Chapter 4: Wiener masks and fields, the data-local denoiser, Niedoba's patch-set composite, the
pixel permutation. Every check is against an independent computation (numpy covariance and solve,
a one-shot float64 softmax, explicit loops, autograd)."""
import numpy as np
import pytest
import torch

from course_lib.denoisers import DataLocalDenoiser, GaussianDenoiser, IdealDenoiser, PatchSetDenoiser
from course_lib.denoisers.datalocal import dense_masked_denoise, mask_plan
from course_lib.denoisers.patchset import edm_times, niedoba_schedule
from course_lib.locality import (TAU, WienerMasks, binarise_fields, calibrate_tau, field_similarity,
                                 wiener_fields, wiener_masks)
from course_lib.permute import permute_pixels, pixel_permutation, unpermute_pixels

D64 = torch.float64


def _data(n=40, C=1, H=5, W=5, seed=0):
    """Correlated images with very unequal pixel variances (so row and column conventions differ)."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, C, H, W, generator=g, dtype=D64)
    k = torch.tensor([[0.25, 0.5, 0.25]], dtype=D64)
    y = torch.nn.functional.conv2d(z.reshape(n * C, 1, H, W), (k.T @ k)[None, None], padding=1).reshape(n, C, H, W)
    scale = torch.linspace(0.2, 2.0, H * W, dtype=D64).reshape(1, 1, H, W)
    return y * scale + 0.1 * torch.randn(n, C, H, W, generator=g, dtype=D64)


def _one_shot(Y, x, sigma, masks):
    """sum_i softmax_i(-sum_n m[q, n] (x_n - y_in)^2 / (2 s^2)) y_iq, all N at once, float64, no expansion."""
    Yf, xf, m = Y.reshape(len(Y), -1).double(), x.reshape(len(x), -1).double(), masks.double()
    s = torch.as_tensor(sigma, dtype=D64).expand(len(x))
    delta = (xf[:, None, :] - Yf[None]) ** 2                          # (B, N, d)
    logits = -torch.einsum("bnk,qk->bqn", delta, m) / (2 * s[:, None, None] ** 2)
    return (torch.softmax(logits, -1) * Yf.T[None]).sum(-1).reshape(x.shape)


# ------------------------------------------------------------------------------------- Wiener masks
def _authors_masks(Y, sigma, tau):
    """Independent re-implementation of the public code: numpy covariance, L by a linear solve,
    rows divided by their diagonal, one global threshold, output m uses COLUMN m."""
    X = Y.reshape(len(Y), -1).numpy()
    S = np.cov(X, rowvar=False)
    L = np.linalg.solve(S + sigma**2 * np.eye(len(S)), S).T    # S (S + s^2 I)^-1 (symmetric)
    den = np.diag(L).copy()
    den[np.abs(den) < 1e-6] = 1.0
    M = L / den[:, None]
    B = np.abs(M) >= tau * np.abs(M).max()
    return torch.from_numpy(B), torch.from_numpy(L)


@pytest.mark.parametrize("sigma,tau", [(0.3, 0.05), (1.0, 0.1), (4.0, 0.005)])
def test_wiener_masks_match_the_authors_convention(sigma, tau):
    Y = _data()
    ours = wiener_masks(Y, sigma, tau)
    B, L = _authors_masks(Y, sigma, tau)
    assert torch.equal(ours, B.T)                              # row q of ours = column q of theirs
    # and they are used the same way: the code's einsum("bkn,nm->bkm") distances equal ours
    delta = torch.rand(3, 4, 25, dtype=D64)
    assert torch.allclose(torch.einsum("bkn,nm->bkm", delta, B.double()),
                          torch.einsum("bkn,mn->bkm", delta, ours.double()))
    assert torch.allclose(wiener_fields(Y, sigma, list(range(25))).reshape(25, 25), L, atol=1e-10)


def test_row_convention_differs_and_masks_grow_with_sigma():
    Y = _data()
    a, r = wiener_masks(Y, 1.0, 0.05), wiener_masks(Y, 1.0, 0.05, convention="row")
    assert not torch.equal(a, r)                               # unequal variances: the two differ
    sizes = [int(wiener_masks(Y, s, 0.05).sum()) for s in (0.1, 0.5, 2.0, 8.0)]
    assert sizes[0] < min(sizes[1:])     # not monotone in general: one global max per sigma
    wm = WienerMasks(Y, 0.05)
    assert torch.equal(wm(0.5), wiener_masks(Y, 0.5, 0.05)) and wm(0.5) is wm(0.5)
    assert TAU["mnist"] == 0.005 and TAU["cifar10"] == 0.05


def test_wiener_field_is_the_jacobian_of_the_gaussian_denoiser():
    from course_lib.jacobian import average_sensitivity

    Y = _data()
    G = GaussianDenoiser.from_data(Y, cache=False)
    f = average_sensitivity(G, Y[:3], 0.7, [(1, 1), (2, 3)]).mean
    w = wiener_fields(G, 0.7, [(1, 1), (2, 3)])
    assert torch.allclose(f.double(), w, atol=1e-10)
    assert torch.allclose(field_similarity(f, w), torch.ones(2, dtype=D64))
    assert field_similarity(w, -w).max() < -0.999
    sup = binarise_fields(w, 0.1)
    assert torch.equal(field_similarity(w, w * sup, "iou", 0.1), torch.ones(2, dtype=D64))


def test_bad_arguments_name_the_argument():
    Y = _data()
    with pytest.raises(ValueError, match="tau"):
        wiener_masks(Y, 1.0, 1.5)
    with pytest.raises(ValueError, match="sigma"):
        wiener_masks(Y, 0.0, 0.1)
    with pytest.raises(ValueError, match="convention"):
        wiener_masks(Y, 1.0, 0.1, convention="cols")
    with pytest.raises(ValueError, match=r"masks must have shape \(25, 25\)"):
        DataLocalDenoiser(Y, torch.ones(24, 24, dtype=torch.bool))
    with pytest.raises(TypeError, match="bool"):
        DataLocalDenoiser(Y, torch.ones(25, 25))
    with pytest.raises(ValueError, match="patch_size"):
        PatchSetDenoiser(Y, 6)
    with pytest.raises(ValueError, match="shape"):
        field_similarity(torch.ones(2, 3), torch.ones(2, 4))


# ------------------------------------------------------------------------------ data-local denoiser
@pytest.mark.parametrize("sparse_below,dense_above", [(0.0, 2.0), (1.0, 2.0), (0.0, 0.0)])
def test_data_local_equals_one_shot_float64_softmax(sparse_below, dense_above):
    Y = _data(n=50)
    g = torch.Generator().manual_seed(1)
    masks = torch.rand(25, 25, generator=g) < 0.3
    masks[3] = False                                           # an empty row: the training mean
    masks[7] = masks[4]                                        # shared supports
    x = Y[:4] + 0.8 * torch.randn(4, 1, 5, 5, generator=g, dtype=D64)
    sigma = torch.tensor([0.3, 0.3, 1.5, 0.05], dtype=D64)    # several sigmas in one batch
    D = DataLocalDenoiser(Y, masks, chunk_size=7, sparse_below=sparse_below, dense_above=dense_above)   # 8 chunks
    out = D(x, sigma)
    assert torch.allclose(out, _one_shot(Y, x, sigma, masks), atol=1e-10)
    assert torch.allclose(out[:, 0, 0, 3], Y[:, 0, 0, 3].mean().expand(4), atol=1e-12)
    assert torch.allclose(dense_masked_denoise(Y, x[:1], 0.3, masks, chunk_size=9), out[:1], atol=1e-10)
    # float32 and masks given as a function of sigma
    D32 = DataLocalDenoiser(Y.float(), lambda s: masks if s > 0.1 else torch.eye(25, dtype=torch.bool))
    expect = torch.where(sigma.view(4, 1, 1, 1) > 0.1, _one_shot(Y, x, sigma, masks),
                         _one_shot(Y, x, sigma, torch.eye(25, dtype=torch.bool)))
    assert torch.allclose(D32(x.float(), sigma.float()).double(), expect, atol=1e-4)


def test_per_chunk_softmax_of_the_public_code_is_wrong_unless_one_chunk():
    Y = _data(n=48)
    x = Y[:3] + 0.5 * torch.randn(3, 1, 5, 5, generator=torch.Generator().manual_seed(2), dtype=D64)
    masks = wiener_masks(Y, 0.5, 0.05)
    exact = _one_shot(Y, x, 0.5, masks)
    assert torch.allclose(dense_masked_denoise(Y, x, 0.5, masks, chunk_size=48, per_chunk=True), exact, atol=1e-10)
    wrong = dense_masked_denoise(Y, x, 0.5, masks, chunk_size=12, per_chunk=True)
    assert (wrong - exact).abs().max() > 0.05


def test_all_ones_masks_give_the_ideal_denoiser_and_identity_a_per_pixel_posterior():
    Y = _data(n=30)
    x = Y[:5] + 0.6 * torch.randn(5, 1, 5, 5, generator=torch.Generator().manual_seed(3), dtype=D64)
    ones = torch.ones(25, 25, dtype=torch.bool)
    assert torch.allclose(DataLocalDenoiser(Y, ones)(x, 0.4), IdealDenoiser(Y)(x, 0.4), atol=1e-12)
    assert mask_plan(ones)["rows"].shape == (1, 25)            # one support for all pixels
    eye = torch.eye(25, dtype=torch.bool)
    xf, Yf = x.reshape(5, 25), Y.reshape(30, 25)
    w = torch.softmax(-(xf[:, None, :] - Yf[None]) ** 2 / (2 * 0.4**2), dim=1)    # (B, N, d) per pixel
    assert torch.allclose(DataLocalDenoiser(Y, eye)(x, 0.4).reshape(5, 25), (w * Yf[None]).sum(1), atol=1e-12)


# ---------------------------------------------------------------------------- Niedoba's PSPC-Square
def _pspc_loop(Y, x, sigma, P):
    """The authors' algorithm, literally: a Python loop over window positions."""
    N, C, H, W = Y.shape
    comp, norm = torch.zeros_like(x), torch.zeros_like(x)
    for a in range(H - P + 1):
        for b in range(W - P + 1):
            xc, yc = x[:, :, a:a + P, b:b + P].reshape(len(x), -1), Y[:, :, a:a + P, b:b + P].reshape(N, -1)
            w = torch.softmax(-((xc[:, None] - yc[None]) ** 2).sum(-1) / (2 * sigma**2), dim=1)
            comp[:, :, a:a + P, b:b + P] += (w @ yc).reshape(len(x), C, P, P)
            norm[:, :, a:a + P, b:b + P] += 1
    return comp / norm


@pytest.mark.parametrize("P", [1, 3, 4])
def test_patch_set_denoiser_equals_a_loop_reference(P):
    Y = _data(n=20, C=2, H=6, W=5)
    x = Y[:3] + 0.7 * torch.randn(3, 2, 6, 5, generator=torch.Generator().manual_seed(4), dtype=D64)
    out = PatchSetDenoiser(Y, P, chunk_size=6)(x, 0.5)
    assert torch.allclose(out, _pspc_loop(Y, x, 0.5, P), atol=1e-10)
    assert torch.allclose(PatchSetDenoiser(Y, 5)(x, 0.5), _pspc_loop(Y, x, 0.5, 5), atol=1e-10)


def test_patch_set_full_window_is_ideal_and_schedule_follows_the_edm_grid():
    Y = _data(n=20, H=6, W=6)
    x = Y[:2] + 0.3
    assert torch.allclose(PatchSetDenoiser(Y, 6)(x, 0.9), IdealDenoiser(Y)(x, 0.9), atol=1e-12)
    t = edm_times(18)
    assert abs(t[0] - 80) < 1e-9 and abs(t[-1] - 0.002) < 1e-12
    sched = niedoba_schedule(32)
    assert [sched(float(s)) for s in t] == [32] * 7 + [23, 15, 11, 7, 5] + [3] * 6
    s28 = niedoba_schedule(28)
    assert s28(80.0) == 28 and s28(0.002) == 3
    D = PatchSetDenoiser(Y, lambda s: 6 if s > 1 else 3)
    sig = torch.tensor([2.0, 0.5], dtype=D64)
    out = D(x, sig)
    assert torch.allclose(out[1:], _pspc_loop(Y, x[1:], 0.5, 3), atol=1e-10)
    assert torch.allclose(out[:1], IdealDenoiser(Y)(x[:1], 2.0), atol=1e-10)


# ------------------------------------------------------------------------------ tau calibration
def test_calibrate_tau_recovers_a_hidden_tau():
    Y = _data(n=40)
    hidden = 0.1
    ref = DataLocalDenoiser(Y, WienerMasks(Y, hidden))
    sig = torch.tensor([4.0, 1.5, 0.6, 0.25, 0.0], dtype=D64)
    x_T = 4.0 * torch.randn(6, 1, 5, 5, generator=torch.Generator().manual_seed(5), dtype=D64)
    cal = calibrate_tau(ref, Y, x_T, sig, candidates=[0.005, 0.03, 0.1, 0.3])
    assert cal.tau == hidden and cal.scores.argmax() == 2
    assert cal.scores[2] > 0.999999 and cal.per_step.shape == (4, 4)


# ------------------------------------------------------------------------------ pixel permutation
def test_pixel_permutation_is_invertible_and_moves_the_wiener_field():
    Y = _data(n=40)
    perm = pixel_permutation(5, 5, seed=0)
    assert torch.equal(torch.sort(perm).values, torch.arange(25))
    Yp = permute_pixels(Y, perm)
    assert torch.equal(unpermute_pixels(Yp, perm), Y)
    assert torch.equal(Yp.reshape(40, 25), Y.reshape(40, 25)[:, perm])
    # L' = P L P^T: the field of permuted pixel p is the permuted field of original pixel perm[p]
    Lp = wiener_fields(Yp, 0.8, list(range(25))).reshape(25, 25)
    L = wiener_fields(Y, 0.8, list(range(25))).reshape(25, 25)
    assert torch.allclose(Lp, L[perm][:, perm], atol=1e-10)
    with pytest.raises(ValueError, match="perm"):
        permute_pixels(Y, perm[:20])


@pytest.mark.parametrize("sparse_below", [0.0, 1.0])
def test_data_local_is_differentiable(sparse_below):
    """x -> D(x, sigma) keeps its autograd graph (the fast path's reused buffers are for plain tensors):
    gradcheck against finite differences in float64, sparse and dense mask products."""
    Y = _data(n=12)
    masks = torch.rand(25, 25, generator=torch.Generator().manual_seed(5)) < 0.3
    masks[2] = False
    D = DataLocalDenoiser(Y, masks, chunk_size=5, sparse_below=sparse_below)
    x = (Y[:2] + 0.5 * torch.randn(2, 1, 5, 5, generator=torch.Generator().manual_seed(6), dtype=D64)).requires_grad_()
    assert torch.autograd.gradcheck(lambda z: D(z, 0.7), (x,))
