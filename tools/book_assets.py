"""Build-time environment and assets of the book (used by tools/build_book.py).

- :func:`kernel_environment`: the environment of the kernels that execute the chapters. Progress bars
  are off (``TQDM_DISABLE=1``; interactive users keep them), widgets are replaced by a note
  (``COURSE_NO_WIDGETS=1``), and matplotlib draws for the book's column: an IPython profile makes
  the inline backend emit "retina" PNGs at 96 dpi, so a figure is shown at its true size (1 inch =
  96 CSS px, a 10 pt label is 10 pt on screen), and figures wider than the column (688 px = 7.17 in)
  are narrowed to it (by at most 1.6x) with their aspect ratio kept, so their labels are not shrunk
  with them.
- :func:`vendor_mathjax`: MathJax 3 from its npm package, copied into the build so that pages
  typeset offline (``mathjax_path`` in _config.yml points at it).
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

MATHJAX_VERSION = "3.2.2"
COLUMN_INCHES = 688 / 96  # the text column of sphinx-book-theme at 1280 px, in inches at 96 px/in
# figures are narrowed to a bit less, leaving room for labels that bbox_inches="tight" adds outside,
# but by at most MAX_NARROWING: a row of many panels narrowed further would have its titles collide
# (such figures need a new layout in the notebook; the build lists them)
FIGURE_INCHES = 6.8
MAX_NARROWING = 1.6

_KERNEL_CONFIG = """\
# written by tools/build_book.py: figures for the book's column
c.InlineBackend.figure_formats = {"retina"}
c.InlineBackend.rc = {"figure.dpi": 96, "font.size": 10}
"""

_STARTUP = f"""\
# written by tools/build_book.py: narrow figures wider than the book's column (aspect ratio kept)
import matplotlib.figure as _mpl_figure

_COLUMN_INCHES, _MAX_NARROWING = {FIGURE_INCHES:.3f}, {MAX_NARROWING}
_figure_init = _mpl_figure.Figure.__init__


def _column_figure_init(self, figsize=None, *args, **kwargs):
    if figsize is not None and len(figsize) == 2 and figsize[0] > _COLUMN_INCHES:
        w = max(_COLUMN_INCHES, figsize[0] / _MAX_NARROWING)
        figsize = (w, figsize[1] * w / figsize[0])
    _figure_init(self, figsize, *args, **kwargs)


_mpl_figure.Figure.__init__ = _column_figure_init
"""


def kernel_environment(build: Path, fit_figures: bool = True) -> dict[str, str]:
    """Write the kernels' IPython profile under ``build`` and return the environment variables."""
    profile = build / "ipython" / "profile_default"
    (profile / "startup").mkdir(parents=True, exist_ok=True)
    (profile / "ipython_kernel_config.py").write_text(_KERNEL_CONFIG)
    startup = profile / "startup" / "00-book-figures.py"
    if fit_figures:
        startup.write_text(_STARTUP)
    elif startup.exists():
        startup.unlink()
    return {
        "IPYTHONDIR": str(build / "ipython"),
        "TQDM_DISABLE": "1",
        "COURSE_NO_WIDGETS": "1",  # see course_lib.widgets.interact (jupyter/nbclient#312)
        "COURSE_CHECK_WIDGETS": "1",  # ... which then calls each callback at its controls' far ends
        # figures must be embedded in the executed notebooks: a headless MPLBACKEND=Agg (as CI exports
        # for the tests) would make every plt.show() in the kernel a no-op and the book have no figures
        "MPLBACKEND": "module://matplotlib_inline.backend_inline",
    }


def mathjax_source(root: Path) -> Path:
    """The MathJax npm package's es5/ folder, installed by `make env` under .venv/share/npm (or here
    with npm when missing)."""
    prefix = root / ".venv" / "share" / "npm"
    es5 = prefix / "node_modules" / "mathjax" / "es5"
    if not (es5 / "tex-mml-chtml.js").exists():
        npm = shutil.which("npm")
        if npm is None:
            raise RuntimeError(f"MathJax is not installed in {prefix} and npm is not on PATH; install Node.js "
                               f"(npm) or run `npm install --prefix {prefix} mathjax@{MATHJAX_VERSION}`")
        subprocess.check_call([npm, "install", "--prefix", str(prefix), "--no-audit", "--no-fund", "--silent",
                               f"mathjax@{MATHJAX_VERSION}"])
    return es5


def vendor_mathjax(root: Path, dest: Path) -> Path:
    """Copy MathJax (without the speech-rule engine and the SVG output, unused here) to ``dest``."""
    src = mathjax_source(root)
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("sre", "svg", "*svg*.js", "*-full*.js", "node-main*"))
    return dest


def repository_url(config: dict) -> str:
    """The one place the repository's URL is configured: ``repository.url`` in _config.yml."""
    url = (config.get("repository") or {}).get("url", "")
    if not url.startswith("https://"):
        raise ValueError(f"_config.yml: repository.url must be an https URL, got {url!r}")
    return url.rstrip("/")
