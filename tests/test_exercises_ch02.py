"""Chapter 2 exercise checks: accept the reference, say "not attempted" for a stub, reject plausible mistakes."""
import math

import torch

from course_lib import learning, linear
from course_lib.denoisers import GaussianDenoiser
from course_lib.exercises import ch02


def _stub(*args):
    raise NotImplementedError


def test_wiener_denoiser():
    assert ch02.check_wiener_denoiser(ch02.reference_wiener_denoiser).correct

    def via_library(x, mu, Sigma, sigma):  # independent: the course_lib eigenbasis implementation
        G = GaussianDenoiser.from_covariance(mu, Sigma, (1, 1, len(mu)))
        return G(x.reshape(len(x), 1, 1, -1), sigma).reshape(len(x), -1)

    assert ch02.check_wiener_denoiser(via_library).correct
    assert ch02.check_wiener_denoiser(_stub).status == "not attempted"

    def sigma_not_squared(x, mu, Sigma, sigma):
        return mu + (Sigma @ torch.linalg.inv(Sigma + sigma * torch.eye(len(mu), dtype=x.dtype)) @ (x - mu).T).T

    def forgot_mean(x, mu, Sigma, sigma):
        return (Sigma @ torch.linalg.inv(Sigma + sigma**2 * torch.eye(len(mu), dtype=x.dtype)) @ x.T).T

    for wrong in (sigma_not_squared, forgot_mean):
        assert ch02.check_wiener_denoiser(wrong).status == "wrong", wrong.__name__


def test_closed_form_path():
    assert ch02.check_closed_form_path(ch02.reference_closed_form_path).correct

    def via_library(x_T, mu, lam, U, sigma_T, sigma):
        G = GaussianDenoiser.from_stats(mu, lam, U, (1, 1, len(mu)))
        return linear.ve_trajectory(G, x_T.reshape(len(x_T), 1, 1, -1), sigma_T, [sigma])[0].reshape(len(x_T), -1)

    assert ch02.check_closed_form_path(via_library).correct
    assert ch02.check_closed_form_path(_stub).status == "not attempted"

    def no_sqrt(x_T, mu, lam, U, sigma_T, sigma):
        return mu + ((x_T - mu) @ U) * ((sigma**2 + lam) / (sigma_T**2 + lam)) @ U.T

    def pure_noise_scaling(x_T, mu, lam, U, sigma_T, sigma):
        return mu + (sigma / sigma_T) * (x_T - mu)

    for wrong in (no_sqrt, pure_noise_scaling):
        assert ch02.check_closed_form_path(wrong).status == "wrong", wrong.__name__


def test_power_law_rf():
    assert ch02.check_power_law_rf(ch02.reference_power_law_rf).correct
    assert ch02.check_power_law_rf(lambda N, A, l0, s: linear.power_law_rf(N, A, l0, s)).correct
    assert ch02.check_power_law_rf(_stub).status == "not attempted"

    def c_without_sqrt(N, A, lam0, sigma):
        c = A / sigma
        k = torch.arange(N, dtype=torch.float64)
        k = torch.minimum(k, N - k)
        return (-sigma**2 / (sigma**2 + lam0) + math.pi * c * torch.cosh(math.pi * c * (1 - k / (N / 2)))
                / math.sinh(math.pi * c)) / N

    def exact_finite_sum(N, A, lam0, sigma):  # the finite-N RF is close but not the closed form
        return linear.circulant_rf(linear.power_law_eigenvalues(N, A, lam0), sigma)

    for wrong in (c_without_sqrt, exact_finite_sum):
        assert ch02.check_power_law_rf(wrong).status == "wrong", wrong.__name__


def test_mode_learning_curve():
    assert ch02.check_mode_learning_curve(ch02.reference_mode_learning_curve).correct
    lib = lambda lam, s, eta, tau: learning.mode_learning_curves(lam, s, eta, [tau])[0]  # noqa: E731
    assert ch02.check_mode_learning_curve(lib).correct
    assert ch02.check_mode_learning_curve(_stub).status == "not attempted"

    def rate_without_noise(lam, sigma, eta, tau):
        return lam / (lam + sigma**2) * (1 - torch.exp(-2 * eta * tau * lam))

    assert ch02.check_mode_learning_curve(rate_without_noise).status == "wrong"
