"""Exercise checks, one module per chapter (``ch00``, ``ch01``, ...).

Every exercise in a chapter is a stub the reader fills in; ``check_<name>(fn)`` calls it on test
inputs and returns a :class:`CheckResult` whose ``status`` is ``"not attempted"``, ``"wrong"`` or
``"correct"``, with the reason in ``message``. In a notebook the result prints itself.
"""
import importlib

from .base import CheckResult, run_check  # noqa: F401


def __getattr__(name):
    if name.startswith("ch") and name[2:].isdigit():
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'course_lib.exercises' has no attribute {name!r}")
