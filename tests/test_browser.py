"""The built book in a real browser: headless Chromium, network disabled, every page.

Run by `make test` after tools/build_book.py (``COURSE_BROWSER_TEST=1 pytest -m browser``); skipped
in the plain unit-test run. On every page: math typeset by the vendored MathJax (no raw TeX left),
every image loaded, no console errors, the menu button opens the chapter list at 390 px and nothing
is wider than a 390 px viewport; over the whole site, no broken local links or anchors.
"""
import os
from pathlib import Path

import pytest

from browser import audit, broken_local_links, find_chromium, pages, start_driver

HTML = Path(__file__).resolve().parents[1] / "_build" / "_build" / "html"
ENABLED = bool(os.environ.get("COURSE_BROWSER_TEST"))
PAGES = pages(HTML, redirects=False) if ENABLED and HTML.is_dir() else []  # index.html only redirects

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not ENABLED, reason="set COURSE_BROWSER_TEST=1 after building the book (make test)")]


def test_the_book_was_built():
    assert (HTML / "index.html").exists(), f"no book at {HTML}: run tools/build_book.py first"
    names = {p.name for p in PAGES}
    assert "bibliography.html" in names and any(p.parent.name == "chapters" for p in PAGES)


def test_mathjax_is_vendored():
    assert (HTML / "_static" / "mathjax" / "tex-mml-chtml.js").exists()
    index = (HTML / "book" / "intro.html").read_text()
    assert "cdn.jsdelivr.net/npm/mathjax" not in index and "_static/mathjax/tex-mml-chtml.js" in index
    assert index.count("thebe_selector =") <= 1, "thebe configuration emitted twice"


def test_no_broken_local_links():
    broken = broken_local_links(HTML)
    assert not broken, f"broken local links: {broken}"


@pytest.fixture(scope="module")
def driver():
    if find_chromium() is None:
        pytest.fail("chromium and chromedriver are missing (.ci/run installs them with apt-get)")
    d = start_driver()
    yield d
    d.quit()


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(HTML)) for p in PAGES])
def test_page_in_chromium(driver, page):
    problems = audit(driver, page)
    assert not problems, f"{page.relative_to(HTML)}:\n  " + "\n  ".join(problems)
