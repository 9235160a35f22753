"""course_lib: the analytic score machines of the Analytic Diffusion course.

Every theory is a denoiser ``D(x, sigma) -> x0_hat`` in the EDM variance-exploding convention
(Chapter 0). Submodules are imported lazily so that ``import course_lib`` stays fast:

- ``course_lib.schedules``  sigma grids and VP <-> VE conversions
- ``course_lib.denoisers``  the denoiser interface and every analytic machine
- ``course_lib.sampling``   probability-flow and stochastic samplers with one signature
- ``course_lib.data``       datasets (offline data directory or checksummed download)
- ``course_lib.stats``      chunked, cached dataset statistics
- ``course_lib.softmax``    the exact streaming (online log-sum-exp) weighted average
- ``course_lib.metrics``    r^2, MSE, fraction of squared error, nearest neighbours, bootstrap CIs
- ``course_lib.config``     scales (ci / book / paper), device choice, seeding
- ``course_lib.plot``, ``course_lib.widgets``, ``course_lib.exercises``
"""
import importlib

__version__ = "0.1.0"

_SUBMODULES = {
    "config", "schedules", "denoisers", "sampling", "data", "stats", "softmax", "metrics",
    "plot", "widgets", "exercises", "rmt", "rmt_mc", "learning", "compare", "jacobian", "nets", "train",
    "tweedie", "linear", "diagnostics", "calibrate", "patches", "configs", "creativity", "validate",
}


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'course_lib' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_SUBMODULES))
