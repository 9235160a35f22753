"""Shared input validation: every public function of ``course_lib`` checks its arguments here, so that a
bad input gets one clear error naming the argument, what was expected, what was received and the fix.

- numbers: :func:`as_int`, :func:`as_float` accept anything that IS a number (Python ``int`` /
  ``float``, NumPy scalars such as ``np.int64(18)`` or ``np.float32(0.5)``, 0-d tensors) and reject
  what merely converts to one (``True``, ``"0.5"``, complex numbers);
- tensors: :func:`check_finite` names the argument and the first non-finite entry;
- dtypes: :func:`check_float_dtype`, and :data:`LOW_PRECISION` / :func:`compute_dtype`: half
  precision (float16, bfloat16) is computed in float32 inside the machines and returned in the input's
  dtype (see the README's dtype table);
- callables: :func:`check_denoiser` (a denoiser instance, not a tensor or a class);
- files: :func:`corrupt_file_error` wraps a low-level read error in one that names the file and the fix.
"""
from __future__ import annotations

import math
import numbers

import torch

__all__ = ["int_like", "as_int", "as_float", "check_finite", "check_float_dtype", "LOW_PRECISION", "compute_dtype",
           "check_denoiser", "check_generator", "NonFiniteError", "ArgumentTypeError", "CorruptFileError",
           "corrupt_file_error"]

LOW_PRECISION = (torch.float16, torch.bfloat16)


class NonFiniteError(FloatingPointError, ValueError):
    """A tensor (an input, or a denoiser's output) holds NaN or inf."""


class ArgumentTypeError(TypeError, ValueError):
    """An argument of the wrong type (a TypeError, and a ValueError for code that catches that)."""


class CorruptFileError(ValueError):
    """A data, checkpoint or cache file exists but cannot be read (truncated, corrupt, foreign)."""


def _describe(v) -> str:
    if isinstance(v, torch.Tensor):
        return f"a tensor of shape {tuple(v.shape)} and dtype {v.dtype}"
    return f"{v!r} ({type(v).__name__})"


def _scalar(v):
    """A Python number from a 0-d tensor / NumPy scalar, else ``v`` unchanged."""
    if isinstance(v, torch.Tensor) and v.ndim == 0:
        return v.item()
    if type(v).__module__ == "numpy" and getattr(v, "ndim", None) == 0:
        return v.item()
    return v


def int_like(v):
    """``v`` as a Python int when it is an integer number (NumPy integer, 0-d integer tensor), else ``v``
    unchanged, so that an existing ``isinstance(v, int)`` check accepts numbers that are numbers."""
    x = _scalar(v)
    return int(x) if isinstance(x, numbers.Integral) and not isinstance(x, bool) else v


def as_int(v, name: str, minimum: int | None = None, maximum: int | None = None) -> int:
    """``v`` as a Python int: ints, NumPy integers and 0-d integer tensors are accepted; bools,
    floats (even 3.0) and strings are not. ``minimum`` / ``maximum`` bound it (inclusive)."""
    x = _scalar(v)
    if isinstance(x, bool) or not isinstance(x, numbers.Integral):
        raise ArgumentTypeError(f"{name} must be an int, got {_describe(v)}")
    x = int(x)
    if (minimum is not None and x < minimum) or (maximum is not None and x > maximum):
        lo = "-inf" if minimum is None else minimum
        hi = "inf" if maximum is None else maximum
        raise ValueError(f"{name} must be an int in [{lo}, {hi}], got {x}")
    return x


def as_float(v, name: str, positive: bool = False, nonnegative: bool = False, finite: bool = True) -> float:
    """``v`` as a Python float: real numbers, NumPy scalars and 0-d real tensors are accepted; bools,
    strings and complex numbers are not. Optionally checks finiteness and sign."""
    x = _scalar(v)
    if isinstance(x, bool) or not isinstance(x, numbers.Real):
        raise ArgumentTypeError(f"{name} must be a real number, got {_describe(v)}")
    x = float(x)
    if math.isnan(x) or (finite and math.isinf(x)):
        raise ValueError(f"{name} must be a finite number, got {x!r}")
    if positive and not x > 0:
        raise ValueError(f"{name} must be > 0, got {x!r}")
    if nonnegative and not x >= 0:
        raise ValueError(f"{name} must be >= 0, got {x!r}")
    return x


def check_finite(t: torch.Tensor, name: str, where: str = "") -> torch.Tensor:
    """Raise :class:`NonFiniteError` naming ``name`` (and ``where``) if ``t`` has NaN or inf."""
    bad = ~torch.isfinite(t)
    if bool(bad.any()):
        n_bad = int(bad.sum())
        first = [int(i) for i in torch.nonzero(bad)[0].tolist()]
        kind = "NaN" if bool(torch.isnan(t).any()) else "inf"
        raise NonFiniteError(f"{name} contains {kind} ({n_bad} of {t.numel()} entries non-finite, the first at "
                             f"index {tuple(first)}){' ' + where if where else ''}; "
                             f"clean or drop those entries before calling")
    return t


def check_float_dtype(dtype, name: str = "dtype", allow_none: bool = True):
    """A floating-point ``torch.dtype`` (or None when ``allow_none``)."""
    if dtype is None and allow_none:
        return None
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"{name} must be a floating-point torch.dtype (torch.float32 or torch.float64), got "
                        f"{dtype!r}: an integer dtype would round the images")
    return dtype


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype a machine computes in for inputs of ``dtype``: float32 for float16 / bfloat16 (whose
    range and precision cannot hold the squared distances and logits), else ``dtype`` itself."""
    return torch.float32 if dtype in LOW_PRECISION else dtype


def check_denoiser(denoiser, name: str = "denoiser"):
    """A denoiser is a callable instance ``D(x, sigma)``: not a tensor, not a class."""
    if isinstance(denoiser, type):
        raise TypeError(f"{name} must be a denoiser instance D(x, sigma), got the class {denoiser.__name__}: "
                        f"construct it first, e.g. {denoiser.__name__}(train_images)")
    if isinstance(denoiser, torch.Tensor) or not callable(denoiser):
        raise TypeError(f"{name} must be a callable D(x, sigma) -> x0_hat, got {_describe(denoiser)}")
    return denoiser


def check_generator(generator, name: str = "generator"):
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"{name} must be a torch.Generator or None, got {_describe(generator)}; "
                        f"for a seed s pass torch.Generator().manual_seed(s)")
    return generator


def corrupt_file_error(path, exc: BaseException, fix: str) -> CorruptFileError:
    """The error for a file that exists but cannot be read: names it, the cause and ``fix``."""
    return CorruptFileError(f"cannot read {path}: {type(exc).__name__}: {exc}. The file is corrupt, "
                            f"truncated or not what was expected; {fix}")
