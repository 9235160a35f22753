"""Sphinx extension of the book: page-level fixes of the theme stack (jupyter-book 1.0.4,
sphinx-book-theme 1.3.0, pydata-sphinx-theme 0.17.1), checked by tests/test_browser.py.

- Inline scripts registered twice by the extensions (sphinx-thebe's configuration, which then throws
  "Identifier 'THEBE_JS_URL' has already been declared" on every page, and sphinx-togglebutton's
  selector) are emitted once.
- A first-time visitor's colour mode is "auto" instead of "" (pydata-sphinx-theme logs "Got invalid
  theme mode" as a console error otherwise).
"""
from __future__ import annotations


def _key(asset):
    attrs = getattr(asset, "attributes", {}) or {}
    return (getattr(asset, "filename", str(asset)) or "", tuple(sorted((k, str(v)) for k, v in attrs.items())))


def _dedupe(assets):
    seen, out = set(), []
    for a in assets:
        k = _key(a)
        if k not in seen:
            seen.add(k)
            out.append(a)
    return out


def page_context(app, pagename, templatename, context, doctree):
    for name in ("script_files", "css_files"):
        if isinstance(context.get(name), list):
            context[name][:] = _dedupe(context[name])
    if not context.get("default_mode"):
        context["default_mode"] = "auto"


def setup(app):
    app.connect("html-page-context", page_context, priority=999)  # after the themes, which add page scripts
    return {"parallel_read_safe": True, "parallel_write_safe": True}
