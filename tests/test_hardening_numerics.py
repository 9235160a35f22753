"""Hardening (issue 17), numerics: half precision, wrong layouts, non-finite values, batch dependence,
silent wrong results and over-strict number types. Every test here failed on the code before the fix."""
import math

import numpy as np
import pytest
import torch

from course_lib.denoisers import (ClosedFormSmoothedDenoiser, EquivariantLocalDenoiser, FunctionDenoiser,
                                  GaussianDenoiser, GaussianMixtureDenoiser, IdealDenoiser, LocalDenoiser)
from course_lib.sampling import sample
from course_lib.schedules import karras_sigmas
from course_lib.validate import NonFiniteError

SHAPE = (1, 8, 8)


def _train(N=24, shape=SHAPE, seed=0):
    return torch.randn(N, *shape, generator=torch.Generator().manual_seed(seed)).clamp(-1, 1)


def _machines(Y):
    return {"ideal": IdealDenoiser(Y), "local": LocalDenoiser(Y, 3), "els": EquivariantLocalDenoiser(Y, 3),
            "gaussian": GaussianDenoiser.from_data(Y.double(), cache=False),
            "mixture": GaussianMixtureDenoiser.from_labels(Y, torch.arange(len(Y)) % 2)}


# ------------------------------------------------------------------ half precision
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("kind", ["ideal", "local", "els", "gaussian", "mixture"])
def test_half_precision_queries_match_float32(kind, dtype):
    """Computed in float32 internally, returned in the query's dtype: error = rounding of the output."""
    Y = _train()
    D = _machines(Y)[kind]
    near = Y[:2] + 0.01 * torch.randn(2, *SHAPE, generator=torch.Generator().manual_seed(1))
    x = torch.cat([near, 0.5 * (Y[2:4] + Y[4:6])]).to(dtype)  # midpoints: the posterior is ambiguous
    for sigma in (1e-4, 1e-2, 1.0, 80.0):
        out = D(x, sigma)
        ref = D(x.float(), sigma)
        assert out.dtype == dtype and torch.isfinite(out).all(), (kind, sigma)
        tol = 2 * torch.finfo(dtype).eps * (1 + ref.abs().max())
        assert (out.float() - ref).abs().max() <= tol, (kind, sigma, (out.float() - ref).abs().max())


def test_float16_sampling_from_sigma_80():
    Y = _train()
    x_T = 80 * torch.randn(3, *SHAPE, generator=torch.Generator().manual_seed(2))
    sig = karras_sigmas(6)
    ref = sample(IdealDenoiser(Y), x_T, sig)
    out = sample(IdealDenoiser(Y), x_T.half(), sig)
    assert out.dtype == torch.float16 and torch.isfinite(out).all()
    assert (out.float() - ref).abs().max() < 0.05


def test_check_images_message_matches_what_it_accepts():
    from course_lib.denoisers import check_images

    with pytest.raises(TypeError, match="float16 and bfloat16 are computed in float32"):
        check_images(torch.zeros(1, 1, 2, 2, dtype=torch.int64))


# ------------------------------------------------------------------ layouts
@pytest.mark.parametrize("kind", ["gaussian", "mixture"])
@pytest.mark.parametrize("bad", [(64, 1, 1), (1, 4, 16), (3, 8, 8)])
def test_gaussian_machines_reject_wrong_layouts(kind, bad):
    D = _machines(_train())[kind]
    with pytest.raises(ValueError, match=r"image shape \(1, 8, 8\)"):
        D(torch.zeros(2, *bad), 1.0)


def test_linear_trajectories_reject_wrong_layouts():
    from course_lib.linear import ve_denoiser_trajectory, ve_trajectory, vp_trajectory

    G = _machines(_train())["gaussian"]
    x = torch.zeros(2, 64, 1, 1, dtype=torch.float64)
    for call in (lambda: ve_trajectory(G, x, 80.0, [1.0, 0.0]), lambda: ve_denoiser_trajectory(G, x, 80.0, [1.0]),
                 lambda: vp_trajectory(G, x, 0.01, [0.5])):
        with pytest.raises(ValueError, match=r"image shape \(1, 8, 8\)"):
            call()


def _tiny_net(n_classes=0, size=28):
    from course_lib.nets.precond import NetworkDenoiser
    from course_lib.train import build_network

    cfg = dict(dataset="mnist", channels=1, arch="resnet", n_classes=n_classes,
               arch_kwargs=dict(channels=4, depth=3, padding="zeros"))
    return NetworkDenoiser(build_network(cfg), config=cfg)


def test_network_denoiser_rejects_other_image_size_and_unused_labels():
    D = _tiny_net()
    assert D(torch.zeros(2, 1, 28, 28), 1.0).shape == (2, 1, 28, 28)
    with pytest.raises(ValueError, match=r"\(1, 28, 28\).*pad"):
        D(torch.zeros(2, 1, 32, 32), 1.0)
    D.class_labels = torch.zeros(2, dtype=torch.long)
    with pytest.raises(ValueError, match="unconditional"):
        D(torch.zeros(2, 1, 28, 28), 1.0)


# ------------------------------------------------------------------ non-finite values
def test_sample_names_step_and_sigma_of_a_nan_denoiser():
    def bad(x, s):
        return torch.where(s.view(-1, 1, 1, 1) < 5, torch.full_like(x, float("nan")), x)

    with pytest.raises(NonFiniteError, match=r"step \d+ \(sigma="):
        sample(FunctionDenoiser(bad), 80 * torch.randn(2, *SHAPE), karras_sigmas(8))


def test_compare_names_the_nan_candidate():
    from course_lib.compare import compare

    Y = _train()

    def bad(x, s):
        return torch.full_like(x, float("nan"))

    with pytest.raises(NonFiniteError, match="'broken'"):
        compare({"ok": IdealDenoiser(Y), "broken": bad}, IdealDenoiser(Y), karras_sigmas(3), [0, 1], SHAPE,
                cache=False)


@pytest.mark.parametrize("kind", ["ideal", "local", "gaussian"])
def test_non_finite_queries_and_training_images_are_named(kind):
    Y = _train()
    D = _machines(Y)[kind]
    x = Y[:2].clone()
    x[1, 0, 2, 3] = float("nan")
    with pytest.raises(NonFiniteError, match=r"x contains NaN.*\(1, 0, 2, 3\)"):
        D(x, 1.0)
    Y[5, 0, 0, 0] = float("inf")
    with pytest.raises(NonFiniteError, match="train_images contains inf"):
        {"ideal": IdealDenoiser, "local": lambda t: LocalDenoiser(t, 3),
         "gaussian": lambda t: GaussianDenoiser.from_data(t, cache=False)}[kind](Y)


def test_sigma_whose_square_underflows_is_a_clear_error():
    D = IdealDenoiser(_train())
    with pytest.raises(ValueError, match="sigma.*underflow"):
        D(_train()[:2], 1e-30)


# ------------------------------------------------------------------ batch dependence
def test_closed_form_smoothed_is_a_function_of_each_query_alone():
    Y = _train(N=12, shape=(1, 4, 4))
    D = ClosedFormSmoothedDenoiser(Y, s=0.3, n_samples=8)
    x = torch.randn(5, 1, 4, 4, generator=torch.Generator().manual_seed(3))
    full = D(x, 0.2)
    for i in range(5):
        assert torch.allclose(D(x[i:i + 1], 0.2), full[i:i + 1], atol=1e-6)   # was off by 0.03-0.09
    assert torch.allclose(D(x.flip(0), 0.2), full.flip(0), atol=1e-6)


# ------------------------------------------------------------------ silent wrong results
def test_silent_results_are_errors():
    from course_lib.calibrate import PatchSizeSchedule
    from course_lib.metrics import r2
    from course_lib.schedules import vp_to_ve

    with pytest.raises(TypeError, match="floating-point"):
        IdealDenoiser(_train(), dtype=torch.int32)
    with pytest.raises(ValueError, match="pred has shape \\(64,\\)"):
        r2(torch.randn(64), torch.randn(64))
    with pytest.raises(ValueError, match="alpha_bar"):
        vp_to_ve(torch.ones(2, 1, 2, 2), 0.0)
    with pytest.raises(ValueError, match="sigma"):
        PatchSizeSchedule([0.1, 1.0], [3, 5])(float("nan"))


def test_over_strict_number_types_are_accepted():
    from course_lib.compare import initial_noise

    assert torch.equal(karras_sigmas(np.int64(18)), karras_sigmas(18))
    assert torch.equal(karras_sigmas(torch.tensor(5), sigma_min=np.float32(0.5)), karras_sigmas(5, sigma_min=0.5))
    assert initial_noise(np.arange(3), SHAPE, 80.0).shape == (3, *SHAPE)
    Y = _train()
    assert IdealDenoiser(Y, chunk_size=np.int64(7))(Y[:2], np.float32(0.5)).shape == (2, *SHAPE)
    from course_lib import metrics, rmt_mc

    assert rmt_mc.power_law_spectrum(np.int64(5)).shape == (5,)
    assert metrics.median_ci(torch.arange(5.0), n_boot=np.int64(10))[0] == 2.0
    for bad in (True, "18", 18.0, 2 + 0j):
        with pytest.raises(TypeError, match="n must be an int"):
            karras_sigmas(bad)


def test_cryptic_errors_name_the_argument():
    from course_lib.compare import compare
    from course_lib.rmt import two_point_variance
    from course_lib.stats import dataset_stats

    Y = _train()
    x = 80 * torch.randn(2, *SHAPE)
    with pytest.raises(TypeError, match="generator must be a torch.Generator"):
        sample(IdealDenoiser(Y), x, karras_sigmas(3), "stochastic", generator=0)
    with pytest.raises(TypeError, match="denoiser must be a callable"):
        sample(Y, x, karras_sigmas(3))
    with pytest.raises(TypeError, match="the class IdealDenoiser"):
        compare(IdealDenoiser, IdealDenoiser(Y), karras_sigmas(3), [0], SHAPE, cache=False)
    with pytest.raises(ValueError, match=r"v has 3 coordinates.*5"):
        two_point_variance(torch.ones(3), torch.ones(5), 0.5, torch.ones(5), 10)
    with pytest.raises(ValueError, match="empty"):
        dataset_stats(torch.zeros(0, 1, 2, 2), cache=False)
    with pytest.raises(TypeError, match="chunk_size.*must be an int"):
        dataset_stats(Y, chunk_size=2.5, cache=False)
    G = _machines(Y)["gaussian"]
    with pytest.raises(ValueError, match=r"image shape \(1, 8, 8\)"):
        G(torch.zeros(2, 3, 8, 8, dtype=torch.float64), 1.0)
    assert math.isfinite(float(G(Y[:1].double(), 1.0).sum()))
