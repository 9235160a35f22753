"""Denoisers ``D(x, sigma) -> x0_hat``: the interface and every analytic machine of the course.

Imports are lazy: ``course_lib.denoisers.IdealDenoiser`` loads only its own module.
"""
import importlib

from .base import (  # noqa: F401
    Denoiser, EpsPredictionDenoiser, FunctionDenoiser, check_images, check_query, eps_from_denoiser,
    score_from_denoiser, sigma_batch, sigma_view,
)

# public name -> submodule that defines it; each chapter's machines register here.
_LAZY = {
    "IdealDenoiser": "ideal",
    "KernelSmoothedDenoiser": "smoothing",
    "ClosedFormSmoothedDenoiser": "smoothing",
    "GaussianDenoiser": "gaussian",
    "GaussianMixtureDenoiser": "gaussian",
    "LocalDenoiser": "local",
    "EquivariantLocalDenoiser": "local",
    "EquivariantDenoiser": "local",
    "WaveletDenoiser": "wavelet",
    "DataLocalDenoiser": "datalocal",
    "PatchSetDenoiser": "patchset",
}


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'course_lib.denoisers' has no attribute {name!r}")
