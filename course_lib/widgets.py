"""Widget helpers for chapters (cheap, headless-safe).

A chapter's widget cell redraws a precomputed result; the static figure at the widget's default
values is drawn first (in the cell before, or by :func:`interact_with_static`), so the rendered
book shows it even without a kernel. ipywidgets and matplotlib are imported lazily.

Set the environment variable ``COURSE_NO_WIDGETS=1`` to skip the interactive part (only the static
figure is drawn); useful when executing notebooks headless (see jupyter/nbclient#312). With
``COURSE_CHECK_WIDGETS=1`` as well (tools/build_book.py sets both), :func:`interact` still calls the
callback once per control at the far end of its range, output discarded, so that every chapter's
widget callbacks are exercised by `make test` (:func:`check_callback`).
"""
from __future__ import annotations

import math
import os
from typing import Callable

__all__ = ["sigma_slider", "widget_defaults", "draw_static", "interact_with_static", "widgets_enabled",
           "check_callback"]


def widgets_enabled() -> bool:
    """False when ``COURSE_NO_WIDGETS`` is set to 1/true/yes or ipywidgets is not installed."""
    if os.environ.get("COURSE_NO_WIDGETS", "").strip().lower() in ("1", "true", "yes"):
        return False
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True


def sigma_slider(value: float = 1.0, min: float = 1e-3, max: float = 80.0, description: str = "σ",
                 step: float = 0.05, continuous_update: bool = False):
    """A log-scale slider for the noise level sigma in [min, max] (``ipywidgets.FloatLogSlider``)."""
    if not (0 < min <= value <= max):
        raise ValueError(f"need 0 < min <= value <= max, got min={min}, value={value}, max={max}")
    import ipywidgets as w

    return w.FloatLogSlider(value=value, base=10, min=math.log10(min), max=math.log10(max), step=step,
                            description=description, continuous_update=continuous_update,
                            readout_format=".3g")


def _to_widget(name, abbrev):
    import ipywidgets as w

    if isinstance(abbrev, w.ValueWidget) or isinstance(abbrev, w.fixed):
        return abbrev
    widget = w.interactive.widget_from_abbrev(abbrev)
    if widget is None:
        raise ValueError(f"cannot make a widget for argument {name!r} from {abbrev!r}")
    return widget


def widget_defaults(**widgets) -> dict:
    """The value each argument takes before the reader moves anything: a widget's ``.value``,
    ``fixed(v).value``, or the default ipywidgets gives an abbreviation such as ``(0, 10)`` or a list.
    Without ipywidgets, plain values are returned as they are (lists: their first entry)."""
    out = {}
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        for k, v in widgets.items():
            out[k] = v[0] if isinstance(v, (list, tuple)) and v else getattr(v, "value", v)
        return out
    for k, v in widgets.items():
        out[k] = _to_widget(k, v).value
    return out


def draw_static(fn: Callable, **widgets):
    """Call ``fn`` at the widgets' default values and show the figure (the book's static view)."""
    import matplotlib.pyplot as plt

    result = fn(**widget_defaults(**widgets))
    if plt.get_fignums():
        plt.show()
    return result


def interact_with_static(fn: Callable, static: bool = True, **widgets):
    """Draw ``fn`` at the default values (a static figure), then attach the interactive widget.

    ``widgets`` maps ``fn``'s argument names to ipywidgets (e.g. :func:`sigma_slider`) or
    ``interact`` abbreviations. Returns the ``interactive`` object, or None when widgets are
    disabled (``COURSE_NO_WIDGETS=1``) or unavailable, in which case only the static figure shows.
    """
    if static:
        draw_static(fn, **widgets)
    if not widgets_enabled():
        return None
    import ipywidgets as w
    from IPython.display import display

    controls = {k: _to_widget(k, v) for k, v in widgets.items()}
    ui = w.interactive(fn, **controls)
    display(ui)
    return ui


def _far_value(widget):
    """The value at the other end of a control's range from its current value (None: skip)."""
    import ipywidgets as w

    if isinstance(widget, w.fixed):
        return None
    if isinstance(widget, w.FloatLogSlider):
        lo, hi = widget.base ** widget.min, widget.base ** widget.max
        return hi if widget.value != hi else lo
    if hasattr(widget, "min") and hasattr(widget, "max"):
        return widget.max if widget.value != widget.max else widget.min
    options = getattr(widget, "options", None)
    if options:
        values = [o[1] if isinstance(o, tuple) and len(o) == 2 else o for o in options]
        return values[-1] if widget.value != values[-1] else values[0]
    if isinstance(widget.value, bool):
        return not widget.value
    return None


def check_callback(fn: Callable, **widgets) -> int:
    """Call ``fn`` once per control, with that control at the far end of its range and the others at
    their defaults, discarding output and closing figures; an exception propagates. Returns the number
    of calls. This is the headless test of a widget's callback."""
    import matplotlib.pyplot as plt
    from IPython.utils.capture import capture_output

    defaults, calls = widget_defaults(**widgets), 0
    for name, abbrev in widgets.items():
        value = _far_value(_to_widget(name, abbrev))
        if value is None:
            continue
        with capture_output():
            fn(**{**defaults, name: value})
        plt.close("all")
        calls += 1
    return calls


def interact(fn: Callable, **widgets):
    """``ipywidgets.interact`` that is safe to execute headless.

    Chapters draw the static figure at the default values in the cell before, then call this. When
    widgets are disabled (``COURSE_NO_WIDGETS=1``, which ``tools/build_book.py`` sets because
    widget comms can stall a headless kernel client, jupyter/nbclient#312) it only prints a note,
    so the rendered book shows the static figure and a pointer to the interactive notebook.
    """
    if not widgets_enabled():
        if os.environ.get("COURSE_CHECK_WIDGETS", "").strip().lower() in ("1", "true", "yes"):
            check_callback(fn, **widgets)
        print("Interactive figure: run this notebook in Jupyter to move the controls "
              "(the figure above shows the default values).")
        return None
    import ipywidgets as w

    return w.interact(fn, **widgets)
