"""Samplers against closed forms: the probability-flow ODE of a Gaussian, DDIM == Euler, and the
law of the stochastic samplers on a 1-D Gaussian (exact recursion + Monte Carlo)."""
import math

import pytest
import torch

from course_lib.denoisers import FunctionDenoiser
from course_lib.sampling import SOLVERS, Trajectory, denoiser_evaluations, sample
from course_lib.schedules import ddim_sigmas, karras_sigmas, linear_beta_alpha_bar

F64 = torch.float64


def gaussian_denoiser(mu, Sigma):
    """Exact denoiser of N(mu, diag Sigma): D = mu + Sigma / (Sigma + sigma^2) (x - mu)."""
    return FunctionDenoiser(lambda x, s: mu + Sigma / (Sigma + s.view(-1, 1, 1, 1) ** 2) * (x - mu),
                            name="gaussian")


def pf_ode_exact(x_T, mu, Sigma, sigma_T, sigma):
    """Closed-form PF-ODE solution x(sigma) = mu + sqrt((Sigma + sigma^2)/(Sigma + sigma_T^2)) (x_T - mu)."""
    return mu + torch.sqrt((Sigma + sigma**2) / (Sigma + sigma_T**2)) * (x_T - mu)


@pytest.fixture
def gauss3():
    mu = torch.tensor([0.3, -0.2, 0.1], dtype=F64).view(1, 3, 1, 1)
    Sigma = torch.tensor([0.05, 0.5, 2.0], dtype=F64).view(1, 3, 1, 1)
    g = torch.Generator().manual_seed(0)
    sigma_T = 80.0
    x_T = mu + torch.randn(16, 3, 1, 1, generator=g, dtype=F64) * torch.sqrt(Sigma + sigma_T**2)
    return mu, Sigma, sigma_T, x_T


@pytest.mark.parametrize("solver,order", [("euler", 1.0), ("heun", 2.0)])
def test_pf_ode_convergence_order(gauss3, solver, order):
    mu, Sigma, sigma_T, x_T = gauss3
    D = gaussian_denoiser(mu, Sigma)
    sigma_min = 0.002
    exact = pf_ode_exact(x_T, mu, Sigma, sigma_T, sigma_min)
    errs = []
    for n in (16, 32, 64, 128):
        x = sample(D, x_T, karras_sigmas(n, sigma_min, sigma_T, append_zero=False), solver)
        errs.append((x - exact).abs().max().item())
    orders = [math.log2(errs[i] / errs[i + 1]) for i in range(len(errs) - 1)]
    assert all(abs(o - order) < 0.3 for o in orders[1:]), (errs, orders)


def test_heun_trajectory_follows_closed_form(gauss3):
    mu, Sigma, sigma_T, x_T = gauss3
    D = gaussian_denoiser(mu, Sigma)
    sig = karras_sigmas(256, 0.002, sigma_T)
    traj = sample(D, x_T, sig, "heun", return_trajectory=True)
    assert isinstance(traj, Trajectory)
    exact = torch.stack([pf_ode_exact(x_T, mu, Sigma, sigma_T, s) for s in sig])
    scale = torch.sqrt(Sigma + sig.view(-1, 1, 1, 1, 1) ** 2)  # typical size of x at each sigma
    assert ((traj.x - exact).abs() / scale).max() < 1e-3
    # the final step to sigma = 0 lands on D(x, sigma_min): exact up to O(sigma_min^2 / Sigma)
    assert torch.allclose(traj.x[-1], pf_ode_exact(x_T, mu, Sigma, sigma_T, 0.0), atol=1e-3)
    # denoised[i] is D at the trajectory point
    assert torch.allclose(traj.denoised[5], D(traj.x[5], float(sig[5])))
    assert torch.equal(traj.x[-1], traj.sample)


def test_ddim_equals_euler_on_ve_sigmas():
    """DDIM (VP arithmetic, eta = 0) and Euler on the same VE sigmas are the same map; checked with
    a non-linear denoiser (the ideal denoiser of 5 random points) on DDPM's linear-beta grid."""
    g = torch.Generator().manual_seed(1)
    train = torch.randn(5, 1, 3, 3, generator=g, dtype=F64)

    def ideal(x, s):
        d2 = ((x[:, None] - train[None]) ** 2).flatten(2).sum(-1)
        w = torch.softmax(-d2 / (2 * s.view(-1, 1) ** 2), dim=1)
        return torch.einsum("bn,nchw->bchw", w, train)

    D = FunctionDenoiser(ideal)
    sig = ddim_sigmas(50, linear_beta_alpha_bar(1000))
    x_T = torch.randn(8, 1, 3, 3, generator=g, dtype=F64) * sig[0]
    a = sample(D, x_T, sig, "ddim", return_trajectory=True)
    b = sample(D, x_T, sig, "euler", return_trajectory=True)
    assert torch.allclose(a.x, b.x, rtol=1e-9, atol=1e-9)
    assert torch.allclose(a.denoised, b.denoised, rtol=1e-9, atol=1e-9)
    # and differs from Heun mid-way (the comparison can fail; both end on the same training image)
    c = sample(D, x_T, sig, "heun", return_trajectory=True)
    assert (c.x[25] - a.x[25]).abs().max() > 1e-3


M1, V1, N_MC = 0.5, 0.25, 20000


def _k(s):
    return V1 / (V1 + s * s)


def exact_variance(solver, sig, S_churn=40.0):
    """Variance of the sampler's output on N(M1, V1) from the exact marginal at sigma_T, by the
    scalar recursion that the linear Gaussian denoiser allows (independent of the sampler code)."""
    sig = sig.tolist()
    n = len(sig) - 1
    var = V1 + sig[0] ** 2
    gamma = min(S_churn / n, math.sqrt(2) - 1)
    for s, s1 in zip(sig[:-1], sig[1:]):
        if solver == "stochastic":
            sh = s * (1 + gamma)
            var, s = var + sh * sh - s * s, sh
            h, a = s1 - s, (1 - _k(s)) / s
            c = 1 + h * a if s1 == 0 else 1 + h / 2 * (a + (1 - _k(s1)) / s1 * (1 + h * a))
            var = c * c * var
        else:  # ancestral
            up, dn = s1 * math.sqrt(1 - (s1 / s) ** 2), s1 * s1 / s
            c = 1 + (dn - s) * (1 - _k(s)) / s
            var = c * c * var + up * up
    return var


def _mc(solver, n, seed):
    D = gaussian_denoiser(torch.tensor(M1, dtype=F64), torch.tensor(V1, dtype=F64))
    sigma_T = 20.0
    g = torch.Generator().manual_seed(seed)
    x_T = M1 + torch.randn(N_MC, 1, 1, 1, generator=g, dtype=F64) * math.sqrt(V1 + sigma_T**2)
    sig = karras_sigmas(n, 0.002, sigma_T)
    x = sample(D, x_T, sig, solver, generator=g)
    return x.flatten(), sig


@pytest.mark.parametrize("solver", ["stochastic", "ancestral"])
def test_stochastic_law_matches_exact_recursion_on_coarse_grid(solver):
    x, sig = _mc(solver, 16, seed=2)
    var_pred = exact_variance(solver, sig)
    se_mean, se_var = math.sqrt(V1 / N_MC), var_pred * math.sqrt(2 / (N_MC - 1))
    assert abs(x.mean().item() - M1) < 4 * se_mean
    assert abs(x.var().item() - var_pred) < 4 * se_var
    assert abs(var_pred - V1) > 10 * se_var  # the coarse grid is visibly biased: the check can fail


@pytest.mark.parametrize("solver,n", [("stochastic", 256), ("ancestral", 1024)])
def test_stochastic_samples_data_distribution_on_fine_grid(solver, n):
    x, sig = _mc(solver, n, seed=3)
    se_mean, se_var = math.sqrt(V1 / N_MC), V1 * math.sqrt(2 / (N_MC - 1))
    assert abs(exact_variance(solver, sig) - V1) < se_var  # discretisation bias below one SE
    assert abs(x.mean().item() - M1) < 4 * se_mean
    assert abs(x.var().item() - V1) < 4 * se_var


def test_generator_reproducible_and_noise_used():
    D = gaussian_denoiser(torch.tensor(0.0), torch.tensor(1.0))
    x_T = torch.randn(4, 1, 4, 4, generator=torch.Generator().manual_seed(0)) * 10
    sig = karras_sigmas(8, 0.01, 10.0)
    for solver in ("stochastic", "ancestral"):
        a = sample(D, x_T, sig, solver, generator=torch.Generator().manual_seed(5))
        b = sample(D, x_T, sig, solver, generator=torch.Generator().manual_seed(5))
        c = sample(D, x_T, sig, solver, generator=torch.Generator().manual_seed(6))
        assert torch.equal(a, b) and not torch.allclose(a, c)
    # S_churn = 0 makes EDM Algorithm 2 deterministic Heun
    h = sample(D, x_T, sig, "heun")
    s0 = sample(D, x_T, sig, "stochastic", S_churn=0.0, generator=torch.Generator().manual_seed(5))
    assert torch.allclose(h, s0)


@pytest.mark.parametrize("solver", SOLVERS)
def test_trajectory_shapes_dtype_and_nfe(solver):
    calls = []

    def f(x, s):
        calls.append(1)
        assert s.shape == (x.shape[0],) and s.dtype == x.dtype
        return 0.5 * x

    D = FunctionDenoiser(f)
    x_T = torch.randn(3, 2, 5, 4, generator=torch.Generator().manual_seed(0)) * 5
    sig = karras_sigmas(7, 0.01, 5.0)
    traj = sample(D, x_T, sig, solver, return_trajectory=True, progress=True,
                  generator=torch.Generator().manual_seed(0))
    assert traj.x.shape == (8, 3, 2, 5, 4) and traj.denoised.shape == (7, 3, 2, 5, 4)
    assert traj.x.dtype == torch.float32 and traj.sigmas.shape == (8,)
    assert torch.equal(traj.x[0], x_T)
    assert len(calls) == denoiser_evaluations(solver, 7)
    out = sample(D, x_T, sig, solver, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(out, traj.x[-1])


def test_nfe_counts():
    assert denoiser_evaluations("heun", 18) == 35
    assert denoiser_evaluations("heun", 18, final_zero=False) == 36
    assert denoiser_evaluations("euler", 18) == 18
    with pytest.raises(ValueError, match="solver"):
        denoiser_evaluations("rk4", 3)


@pytest.mark.parametrize("sigmas,match", [
    ([1.0, 2.0, 0.0], "descending"),
    ([2.0, 1.0, 1.0], "descending"),
    ([1.0, -0.5], ">= 0"),
    ([1.0, float("nan")], "finite"),
    ([1.0], "at least 2"),
    ([[2.0, 1.0]], "1-D"),
])
def test_bad_sigmas(sigmas, match):
    D = gaussian_denoiser(torch.tensor(0.0), torch.tensor(1.0))
    with pytest.raises(ValueError, match=match):
        sample(D, torch.zeros(1, 1, 2, 2), sigmas)


def test_bad_inputs():
    D = gaussian_denoiser(torch.tensor(0.0), torch.tensor(1.0))
    sig = karras_sigmas(3)
    with pytest.raises(ValueError, match="x_T"):
        sample(D, torch.zeros(1, 2, 2), sig)
    with pytest.raises(TypeError, match="x_T"):
        sample(D, torch.zeros(1, 1, 2, 2, dtype=torch.long), sig)
    with pytest.raises(ValueError, match="solver"):
        sample(D, torch.zeros(1, 1, 2, 2), sig, solver="rk45")
    with pytest.raises(ValueError, match="denoiser returned shape"):
        sample(FunctionDenoiser(lambda x, s: x[:, :1, :1]), torch.zeros(1, 1, 2, 2), sig)
    with pytest.raises(ValueError, match="S_churn"):
        sample(D, torch.zeros(1, 1, 2, 2), sig, "stochastic", S_churn=-1.0)


def test_import_is_fast():
    """`import course_lib` plus the core submodules stays under 2 s. torch alone takes ~1 s on an
    idle laptop but several seconds on a loaded 2-core CI runner, so the test times course_lib's own
    share (after torch and numpy are imported) and checks that no heavy optional dependency
    (matplotlib, scipy, sklearn, ipywidgets) is imported eagerly."""
    import subprocess
    import sys

    code = ("import time, sys; import torch, numpy; t = time.perf_counter(); "
            "import course_lib, course_lib.denoisers, course_lib.sampling, course_lib.schedules, "
            "course_lib.metrics, course_lib.plot, course_lib.widgets; "
            "print(time.perf_counter() - t, *[m in sys.modules for m in "
            "('matplotlib', 'scipy', 'sklearn', 'ipywidgets')])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    t, *heavy = out.stdout.split()
    best = float(t)
    assert heavy == ["False"] * 4, f"eagerly imported (matplotlib, scipy, sklearn, ipywidgets): {heavy}"
    assert best < 0.5, f"course_lib's own imports took {best:.2f} s on top of torch"


def test_denoiser_inputs_record_where_D_was_evaluated():
    D = gaussian_denoiser(torch.tensor(0.2, dtype=F64), torch.tensor(0.7, dtype=F64))
    x_T = torch.randn(3, 1, 2, 2, generator=torch.Generator().manual_seed(0), dtype=F64) * 10
    sig = karras_sigmas(6, 0.01, 10.0)
    tr = sample(D, x_T, sig, "stochastic", return_trajectory=True, S_churn=3.0, S_tmin=0.05, S_tmax=5.0,
                generator=torch.Generator().manual_seed(1))
    xs, ss = tr.denoiser_inputs()
    gamma = min(3.0 / 6, math.sqrt(2) - 1)
    expected = torch.where((sig[:-1] >= 0.05) & (sig[:-1] <= 5.0), sig[:-1] * (1 + gamma), sig[:-1])
    assert torch.allclose(ss, expected)
    assert not torch.allclose(ss, sig[:-1])  # some steps churned, some did not
    for i in range(6):
        assert torch.allclose(tr.denoised[i], D(xs[i], float(ss[i])))
    churned = (ss > sig[:-1]).nonzero().flatten()
    assert not torch.allclose(xs[churned[0]], tr.x[churned[0]])  # fresh noise was added there
    tr = sample(D, x_T, sig, "heun", return_trajectory=True)
    xs, ss = tr.denoiser_inputs()
    assert torch.equal(xs, tr.x[:-1]) and torch.equal(ss, tr.sigmas[:-1]) and tr.x_hat is None


def test_autograd_off_by_default_on_with_grad():
    a = torch.tensor(0.5, dtype=F64, requires_grad=True)
    D = FunctionDenoiser(lambda x, s: a * x)
    x_T = torch.randn(2, 1, 2, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    assert not sample(D, x_T, [2.0, 0.0], "euler").requires_grad
    out = sample(D, x_T, [2.0, 0.0], "euler", grad=True)  # one Euler step to 0 lands on D(x_T) = a x_T
    out.sum().backward()
    assert torch.allclose(a.grad, x_T.sum())
