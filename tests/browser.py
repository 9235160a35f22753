"""Headless Chromium with the network disabled, and the checks tests/test_browser.py runs on every
page of the built book. Uses Debian's ``chromium`` and ``chromedriver`` (never a downloaded browser).

Also a small command line for looking at pages:
``python tests/browser.py _build/_build/html OUTDIR [--dark]`` saves a screenshot of every page at
1280 px and 390 px.
"""
from __future__ import annotations

import os
import shutil
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

WIDE, NARROW = 1280, 390
SKIP_DIRS = {"_static", "_sources", "_images", "_sphinx_design_static"}


def find_chromium() -> tuple[str, str] | None:
    """(chromium, chromedriver) paths, or None when either is missing."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver") or ("/usr/bin/chromedriver" if Path("/usr/bin/chromedriver").exists() else None)
    return (browser, driver) if browser and driver else None


def is_redirect(page: Path) -> bool:
    """A page that only redirects (jupyter-book's root index.html) has no content to audit."""
    head = page.read_text(errors="replace")[:2000].lower()
    return 'http-equiv="refresh"' in head and "<body" not in head


def pages(html_root: Path, redirects: bool = True) -> list[Path]:
    return sorted(p for p in html_root.rglob("*.html") if not SKIP_DIRS & set(p.relative_to(html_root).parts)
                  and (redirects or not is_redirect(p)))


def start_driver(width: int = WIDE, height: int = 900):
    """A headless Chromium session that cannot reach the network (file:// pages only)."""
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must never download a driver or a browser
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    found = find_chromium()
    if found is None:
        raise RuntimeError("chromium and chromedriver are needed (Debian: apt-get install chromium chromium-driver)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = found[0]
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--proxy-server=127.0.0.1:9", "--host-resolver-rules=MAP * ~NOTFOUND",
                "--allow-file-access-from-files", "--hide-scrollbars=false", f"--window-size={width},{height}"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=found[1]), options=opts)
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd("Network.emulateNetworkConditions",
                           {"offline": True, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1})
    driver.set_page_load_timeout(60)
    driver.set_script_timeout(60)
    return driver


def set_viewport(driver, width: int, height: int = 900) -> None:
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})


def load(driver, page: Path, dark: bool = False) -> None:
    driver.get(page.resolve().as_uri())
    if dark:
        driver.execute_script("localStorage.setItem('theme', 'dark'); localStorage.setItem('mode', 'dark');"
                              "document.documentElement.dataset.theme = 'dark'; document.documentElement.dataset.mode = 'dark';")
    # wait for MathJax (when the page loads it) to finish typesetting
    driver.execute_async_script("""
        const done = arguments[arguments.length - 1];
        const t0 = Date.now();
        (function wait() {
          const mj = window.MathJax;
          if (mj && mj.startup && mj.startup.promise) { mj.startup.promise.then(() => done(true), () => done(false)); }
          else if (!document.querySelector('.math') || Date.now() - t0 > 20000) { done(false); }
          else { setTimeout(wait, 100); }
        })();""")


_MATH_JS = """
const math = Array.from(document.querySelectorAll('span.math, div.math'));
const untypeset = math.filter(m => !m.querySelector('mjx-container')).map(m => m.textContent.slice(0, 60));
const clone = document.querySelector('main') ? document.querySelector('main').cloneNode(true) : document.body.cloneNode(true);
clone.querySelectorAll('pre, code, script, style, textarea, mjx-container, .highlight').forEach(e => e.remove());
const text = clone.textContent;
const raw = ['\\\\(', '\\\\[', '$$'].filter(s => text.includes(s));
return [math.length, untypeset, raw];
"""

_IMAGES_JS = """
const done = arguments[arguments.length - 1];
const srcs = Array.from(document.images).map(i => i.currentSrc || i.src).filter(s => s);
Promise.all(srcs.map(src => new Promise(res => {
  const im = new Image(); im.onload = () => res(im.naturalWidth > 0 ? null : src); im.onerror = () => res(src); im.src = src;
}))).then(r => done([srcs.length, r.filter(x => x)]));
"""

_WIDE_JS = """
const vw = document.documentElement.clientWidth;
function clipped(el) {
  for (let a = el.parentElement; a && a !== document.body; a = a.parentElement) {
    const s = getComputedStyle(a);
    if (['auto', 'scroll', 'hidden', 'clip'].includes(s.overflowX)) return true;
    if (s.display === 'none' || s.visibility === 'hidden') return true;
  }
  return false;
}
const wide = [];
for (const el of document.querySelectorAll('body *')) {
  const r = el.getBoundingClientRect();
  if (r.width === 0 || r.height === 0) continue;
  if ((r.right > vw + 1 || r.left < -1) && !clipped(el)) {
    const s = getComputedStyle(el);
    if (s.position === 'fixed' && (r.left >= vw || r.right <= 0)) continue;  // off-canvas drawers
    wide.push(el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') + (el.className && el.className.baseVal === undefined ? '.' + String(el.className).split(' ').join('.') : '') + ' ' + Math.round(r.left) + '..' + Math.round(r.right));
  }
}
return [document.documentElement.scrollWidth, vw, wide.slice(0, 8)];
"""

_TOGGLE_JS = """
const done = arguments[arguments.length - 1];
const visible = Array.from(document.querySelectorAll('.primary-toggle')).filter(b => b.offsetParent !== null);
if (!visible.length) { done('no visible menu button'); return; }
visible[0].click();
setTimeout(() => {
  const dlg = document.querySelector('#pst-primary-sidebar-modal');
  const open = dlg && dlg.open;
  const links = open ? Array.from(dlg.querySelectorAll('a')).filter(a => a.offsetParent !== null).length : 0;
  if (open) dlg.close();
  done(open && links > 0 ? null : `menu did not open (dialog open: ${open}, visible links: ${links})`);
}, 400);
"""


def audit(driver, page: Path) -> list[str]:
    """Problems with one page: math, images, console errors, the menu and widths at 390 px."""
    problems = []
    set_viewport(driver, WIDE)
    driver.get_log("browser")  # drop earlier pages' messages
    load(driver, page)
    n_math, untypeset, raw = driver.execute_script(_MATH_JS)
    if untypeset:
        problems.append(f"{len(untypeset)} of {n_math} math elements not typeset, e.g. {untypeset[0]!r}")
    if raw:
        problems.append(f"raw TeX delimiters left in the text: {raw}")
    n_img, broken = driver.execute_async_script(_IMAGES_JS)
    if broken:
        problems.append(f"{len(broken)} of {n_img} images did not load: {broken[:3]}")
    set_viewport(driver, NARROW, 844)
    load(driver, page)  # a fresh load: the theme's sidebars settle off-canvas without a transition
    scroll_w, vw, wide = driver.execute_script(_WIDE_JS)
    if scroll_w > vw + 1 or wide:
        problems.append(f"at {NARROW} px the page is {scroll_w} px wide; elements past the viewport: {wide}")
    why = driver.execute_async_script(_TOGGLE_JS)
    if why:
        problems.append(f"at {NARROW} px: {why}")
    errors = [m["message"] for m in driver.get_log("browser") if m.get("level") == "SEVERE"]
    if errors:
        problems.append(f"console errors: {errors[:3]}")
    return problems


class _Anchors(HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids, self.hrefs = set(), []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if a.get("id"):
            self.ids.add(a["id"])
        if tag == "a" and a.get("name"):
            self.ids.add(a["name"])
        if tag == "meta" and (a.get("http-equiv") or "").lower() == "refresh" and "url=" in (a.get("content") or ""):
            self.hrefs.append(a["content"].split("url=", 1)[1].strip())
        for key in ("href", "src"):
            if a.get(key) and (tag in ("a", "img", "script") or (tag == "link" and key == "href")):
                self.hrefs.append(a[key])


def broken_local_links(html_root: Path) -> dict[str, list[str]]:
    """{page: [broken references]}: local files that do not exist and #fragments with no target."""
    parsed = {}
    for p in html_root.rglob("*.html"):
        parser = _Anchors()
        parser.feed(p.read_text(errors="replace"))
        parsed[p.resolve()] = parser
    out = {}
    for page in pages(html_root):
        bad = []
        for href in parsed[page.resolve()].hrefs:
            u = urlsplit(href)
            if u.scheme or href.startswith("//") or href.startswith("mailto:"):
                continue
            target = (page.parent / unquote(u.path)).resolve() if u.path else page.resolve()
            if not target.exists():
                bad.append(href)
            elif u.fragment and target.suffix == ".html" and unquote(u.fragment) not in parsed[target].ids:
                bad.append(href)
        if bad:
            out[str(page.relative_to(html_root))] = sorted(set(bad))[:10]
    return out


def screenshots(html_root: Path, out: Path, dark: bool = False) -> None:
    out.mkdir(parents=True, exist_ok=True)
    driver = start_driver()
    try:
        for page in pages(html_root):
            for width in (WIDE, NARROW):
                set_viewport(driver, width, 900)
                load(driver, page, dark=dark)
                if dark:
                    load(driver, page)  # the theme reads localStorage on load
                name = str(page.relative_to(html_root)).replace("/", "_").removesuffix(".html")
                driver.save_screenshot(str(out / f"{name}-{width}{'-dark' if dark else ''}.png"))
    finally:
        driver.quit()


if __name__ == "__main__":
    screenshots(Path(sys.argv[1]), Path(sys.argv[2]), dark="--dark" in sys.argv)
