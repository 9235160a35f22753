"""Sensitivity fields (course_lib.jacobian) against closed forms and brute-force autograd."""
import math

import pytest
import torch
import torch.nn.functional as F

from course_lib.denoisers import FunctionDenoiser, GaussianDenoiser
from course_lib.jacobian import (
    as_pixels, average_sensitivity, center_pixel, effective_area, mass_radius, pixel_gradient,
    receptive_field_vs_sigma, sensitivity_fields,
)

DT = torch.float64


def _random_cov(d, seed=0):
    g = torch.Generator().manual_seed(seed)
    M = torch.randn(d, d, generator=g, dtype=DT)
    return M @ M.T / d + 0.05 * torch.eye(d, dtype=DT)


def _wiener(shape, sigma, seed=0):
    d = math.prod(shape)
    Sigma = _random_cov(d, seed)
    mu = torch.randn(d, generator=torch.Generator().manual_seed(seed + 1), dtype=DT)
    # A = Sigma (Sigma + sigma^2 I)^-1, computed by a direct solve (independent of the eigenbasis code)
    A = torch.linalg.solve(Sigma + sigma**2 * torch.eye(d, dtype=DT), Sigma).T
    return Sigma, mu, A


def _linear_denoiser(mu, A, shape):
    def fn(x, s):
        y = x.reshape(x.shape[0], -1) - mu
        return (mu + y @ A.T).reshape(x.shape)
    return FunctionDenoiser(fn, "linear")


@pytest.mark.parametrize("shape,kind", [((1, 4, 4), "wiener"), ((2, 3, 3), "wiener"), ((2, 3, 3), "random")])
def test_linear_denoiser_fields_are_rows_of_A(shape, kind):
    sigma = 0.7
    Sigma, mu, A = _wiener(shape, sigma)
    if kind == "random":  # not symmetric: rows and columns differ
        A = torch.randn(A.shape, generator=torch.Generator().manual_seed(11), dtype=DT)
    D = _linear_denoiser(mu, A, shape)
    d = math.prod(shape)
    x = torch.randn(3, *shape, generator=torch.Generator().manual_seed(5), dtype=DT)
    J = sensitivity_fields(D, x, sigma, list(range(d)), chunk_size=5)  # (Q, B, C, H, W)
    assert J.shape == (d, 3, *shape)
    for b in range(3):
        assert torch.allclose(J[:, b].reshape(d, d), A, atol=1e-12)


def test_gaussian_denoiser_jacobian_matches_wiener_solve():
    shape, sigma = (1, 3, 4), 0.4
    Sigma, mu, A = _wiener(shape, sigma, seed=3)
    D = GaussianDenoiser.from_covariance(mu, Sigma, shape)
    x = torch.randn(2, *shape, generator=torch.Generator().manual_seed(1), dtype=DT)
    pix = [(0, 1, 2), (0, 2, 0), 5]
    J = sensitivity_fields(D, x, sigma, pix)
    rows = [1 * 4 + 2, 2 * 4 + 0, 5]
    for b in range(2):
        assert torch.allclose(J[:, b].reshape(3, -1), A[rows], atol=1e-10)
    # pixel_gradient is one row, and the loop path equals the vmap path
    g = pixel_gradient(D, x, sigma, (1, 2))
    assert torch.allclose(g.reshape(2, -1), A[6].expand(2, -1), atol=1e-10)
    J_loop = sensitivity_fields(D, x, sigma, pix, vectorize=False)
    assert torch.allclose(J, J_loop, atol=1e-12)


def _conv_tanh(x, w1, w2):
    h = torch.tanh(F.conv2d(F.pad(x, (1, 1, 1, 1), mode="circular"), w1))
    return F.conv2d(F.pad(h, (1, 1, 1, 1), mode="circular"), w2)


def test_nonlinear_fields_match_bruteforce_autograd_per_image():
    g = torch.Generator().manual_seed(2)
    w1 = torch.randn(3, 2, 3, 3, generator=g, dtype=DT)
    w2 = torch.randn(2, 3, 3, 3, generator=g, dtype=DT)
    D = FunctionDenoiser(lambda x, s: _conv_tanh(x / (1 + s.view(-1, 1, 1, 1)), w1, w2), "convtanh")
    x = torch.randn(3, 2, 5, 5, generator=g, dtype=DT)
    sigma = torch.tensor([0.3, 1.0, 2.0], dtype=DT)
    pix = [(1, 2, 2), (0, 0, 4)]
    J = sensitivity_fields(D, x, sigma, pix)
    for b in range(3):
        full = torch.autograd.functional.jacobian(lambda v: D(v.unsqueeze(0), sigma[b:b + 1])[0], x[b])
        for k, (c, i, j) in enumerate(pix):
            assert torch.allclose(J[k, b], full[c, i, j], atol=1e-12)


def test_average_sensitivity_is_the_average_over_the_same_noise():
    g = torch.Generator().manual_seed(4)
    w1 = torch.randn(2, 1, 3, 3, generator=g, dtype=DT)
    w2 = torch.randn(1, 2, 3, 3, generator=g, dtype=DT)
    D = FunctionDenoiser(lambda x, s: _conv_tanh(x, w1, w2), "convtanh")
    x0 = torch.randn(5, 1, 6, 6, generator=g, dtype=DT)
    sigma, pix = 0.8, [(0, 3, 3), (0, 0, 0)]
    f = average_sensitivity(D, x0, sigma, pix, n_noise=2, generator=torch.Generator().manual_seed(9),
                            batch_size=2)
    # manual: the same noise draws (noise k, chunks of 2 images), one image at a time
    gen = torch.Generator().manual_seed(9)
    s1 = torch.zeros(2, 1, 6, 6, dtype=DT)
    sa = torch.zeros_like(s1)
    for _ in range(2):
        for start in range(0, 5, 2):
            xb = x0[start:start + 2]
            xb = xb + sigma * torch.randn(xb.shape, generator=gen, dtype=DT)
            for v in xb:
                full = torch.autograd.functional.jacobian(lambda u: D(u.unsqueeze(0), sigma)[0], v)
                for k, (c, i, j) in enumerate(pix):
                    s1[k] += full[c, i, j]
                    sa[k] += full[c, i, j].abs()
    assert f.n_inputs == 10
    assert torch.allclose(f.mean, s1 / 10, atol=1e-12)
    assert torch.allclose(f.mean_abs, sa / 10, atol=1e-12)
    # the field of a two-layer 3x3 network is supported on the 5x5 square (circular distances)
    assert f.circular is False
    assert mass_radius(f.mean_abs, pix, mass=1.0, circular=True).tolist() == [2, 2]


def _box_conv(k, layers=1):
    w = k.view(1, 1, *k.shape)

    def fn(x, s):
        for _ in range(layers):
            x = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="circular"), w)
        return x
    return FunctionDenoiser(fn, f"box{layers}")


def test_local_3x3_denoiser_receptive_field():
    box = torch.full((3, 3), 1 / 9, dtype=DT)
    x0 = torch.randn(4, 1, 9, 9, generator=torch.Generator().manual_seed(0), dtype=DT)
    pix = [(0, 4, 4), (0, 2, 6)]
    f = average_sensitivity(_box_conv(box), x0, 0.5, pix)
    assert torch.allclose(f.effective_area(), torch.full((2,), 9.0, dtype=DT))
    assert f.radius(1.0).tolist() == [1, 1] and f.radius(0.9).tolist() == [1, 1]
    assert f.radius(0.1).tolist() == [0, 0]  # the centre holds 1/9 > 0.1
    # two 3x3 box layers: the field is the 5x5 tent [1,2,3,2,1] x [1,2,3,2,1] / 81
    f2 = average_sensitivity(_box_conv(box, 2), x0, 0.5, pix)
    assert torch.allclose(f2.effective_area(), torch.full((2,), 81.0**2 / 19.0**2, dtype=DT))
    assert f2.radius(1.0).tolist() == [2, 2]
    assert f2.radius(9 / 81).tolist() == [0, 0] and f2.radius(0.12).tolist() == [1, 1]
    # a corner pixel of a circular 3x3 conv: radius 1 only with wrapped distances
    fc = average_sensitivity(_box_conv(box), x0, 0.5, (0, 0, 0), circular=True)
    assert fc.radius(1.0).tolist() == [1]
    assert mass_radius(fc.mean_abs, (0, 0, 0), 1.0, circular=False).tolist() == [8]


def test_receptive_field_vs_sigma_limits_of_wiener_filter():
    shape = (1, 6, 6)
    Sigma, mu, _ = _wiener(shape, 1.0, seed=7)
    D = GaussianDenoiser.from_covariance(mu, Sigma, shape)
    x0 = torch.randn(2, *shape, generator=torch.Generator().manual_seed(1), dtype=DT)
    curve = receptive_field_vs_sigma(D, x0, [1e-4, 1e4], pixels=[(0, 2, 3), 0], mass=0.9)
    assert curve.area.shape == (2, 2) and curve.radius.shape == (2, 2)
    # sigma -> 0: A -> I, a single pixel; sigma -> inf: A -> Sigma / sigma^2, the covariance row
    assert torch.allclose(curve.area[0], torch.ones(2, dtype=DT), atol=1e-3)
    rows = Sigma[[2 * 6 + 3, 0]]
    expected = rows.abs().sum(1) ** 2 / rows.square().sum(1)
    assert torch.allclose(curve.area[1], expected, rtol=1e-3)
    assert curve.radius[0].tolist() == [0, 0]
    assert len(curve.fields) == 2 and "A_eff" in curve.table()


def test_network_style_grad_flag_is_switched_on_and_restored():
    class NoGrad(FunctionDenoiser):
        grad = False

        def denoise(self, x, sigma):
            with torch.set_grad_enabled(self.grad and torch.is_grad_enabled()):
                return 2.0 * x

    D = NoGrad(lambda x, s: x)
    x = torch.randn(2, 1, 3, 3, dtype=DT)
    g = pixel_gradient(D, x, 1.0, (0, 1, 1))
    expected = torch.zeros_like(x)
    expected[:, 0, 1, 1] = 2.0
    assert torch.equal(g, expected) and D.grad is False


def test_pixel_parsing_and_errors():
    shape = (2, 3, 4)
    assert as_pixels(13, shape).tolist() == [[1, 0, 1]]
    assert as_pixels((2, 3), shape).tolist() == [[0, 2, 3]]
    assert as_pixels([(1, 2, 3), (0, 1), 5], shape).tolist() == [[1, 2, 3], [0, 0, 1], [0, 1, 1]]
    with pytest.raises(ValueError, match="pixels"):
        as_pixels([(1, 2, 3), (0, 0, 1, 2)], shape)
    assert as_pixels(torch.tensor([[1, 2, 3]]), shape).tolist() == [[1, 2, 3]]
    assert center_pixel(shape) == (0, 1, 2)
    with pytest.raises(ValueError, match="inside the image"):
        as_pixels((0, 3, 0), shape)
    with pytest.raises(ValueError, match="flat pixel"):
        as_pixels(24, shape)
    D = FunctionDenoiser(lambda x, s: x)
    x = torch.randn(1, *shape)
    with pytest.raises(ValueError, match="sigma"):
        sensitivity_fields(D, x, -1.0, 0)
    with pytest.raises(ValueError, match="chunk_size"):
        sensitivity_fields(D, x, 1.0, 0, chunk_size=0)
    with pytest.raises(ValueError, match="mass"):
        mass_radius(torch.ones(1, 2, 3, 4), 0, mass=0.0)
    zero = torch.zeros(2, 2, 3, 4, dtype=DT)
    zero[1, 0, 1, 1] = 3.0
    assert effective_area(zero).tolist() == [0.0, 1.0]
    assert mass_radius(zero, [0, 5], mass=1.0).tolist() == [-1, 0]
    with pytest.raises(ValueError, match="sigma must be > 0"):
        average_sensitivity(D, x, 0.0, 0)


def test_curve_plots():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    box = torch.full((3, 3), 1 / 9, dtype=DT)
    x0 = torch.randn(2, 1, 7, 7, generator=torch.Generator().manual_seed(0), dtype=DT)
    curve = receptive_field_vs_sigma(_box_conv(box), x0, [0.1, 1.0])
    ax = curve.plot()
    assert ax.lines[0].get_ydata().tolist() == pytest.approx([9.0, 9.0])
    fig = curve.plot_fields()
    img = fig.axes[0].images[0].get_array()
    assert img.shape == (7, 7) and float(img[2, 3]) == pytest.approx(1 / 9) and float(img[0, 0]) == 0.0
    plt.close("all")
    assert "-" not in curve.table().splitlines()[1]
