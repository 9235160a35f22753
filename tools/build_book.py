"""Execute every chapter with papermill at one scale, then build the HTML book from the executed copies.

Usage: python tools/build_book.py --scale {ci,book,paper} [--only 00_intro] [--no-html]

Source notebooks in chapters/ stay output-free; executed copies go to _build/src/chapters/ and the
HTML to _build/html. The build runs Sphinx with warnings as errors, so a broken cross-reference,
citation or cell fails it. Each notebook's wall time is printed.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "_build"
SRC = BUILD / "src"


def toc_files(toc_path: Path = ROOT / "_toc.yml") -> list[str]:
    """All `file:` entries of the jb-book table of contents, in order."""
    toc = yaml.safe_load(toc_path.read_text())
    out = [toc["root"]]

    def walk(node):
        if isinstance(node, dict):
            if "file" in node:
                out.append(node["file"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(toc.get("parts", toc.get("chapters", [])))
    return out


def chapter_notebooks() -> list[Path]:
    return [ROOT / f"{f}.ipynb" for f in toc_files() if (ROOT / f"{f}.ipynb").exists()]


def execute(nb: Path, out: Path, scale: str, timeout: int) -> float:
    import papermill as pm

    os.environ["COURSE_NO_WIDGETS"] = "1"  # see course_lib.widgets.interact (jupyter/nbclient#312)
    # figures must be embedded in the executed notebooks: a headless MPLBACKEND=Agg (as CI exports for
    # the tests) would make every plt.show() in the kernel a no-op and the book would have no figures
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    for attempt in (1, 2):
        try:
            pm.execute_notebook(
                str(nb), str(out), parameters={"SCALE": scale}, kernel_name="python3",
                cwd=str(nb.parent), execution_timeout=timeout, progress_bar=False,
            )
            break
        except pm.PapermillExecutionError:
            raise
        except Exception as exc:  # kernel stall (jupyter/nbclient#312): retry once
            if attempt == 2 or "Timeout" not in type(exc).__name__ + str(exc):
                raise
            print(f"  {nb.name}: timed out ({exc}); retrying once", flush=True)
    check_figures(nb, out)
    return time.perf_counter() - t0


def count_figures(executed: Path) -> tuple[int, int]:
    """(cells that call plt.show(), image outputs) of an executed notebook."""
    cells = json.loads(executed.read_text())["cells"]
    code = [c for c in cells if c["cell_type"] == "code"]
    shows = sum("plt.show()" in "".join(c["source"]) for c in code)
    images = sum(any(k.startswith("image/") for k in o.get("data", {})) for c in code for o in c.get("outputs", []))
    return shows, images


def check_figures(nb: Path, out: Path) -> None:
    """Fail when a chapter that draws figures produced none (e.g. a headless backend in the kernel)."""
    shows, images = count_figures(out)
    if shows and not images:
        raise RuntimeError(f"{nb.name}: {shows} cells call plt.show() but the executed notebook has no "
                           f"figures; is MPLBACKEND set to a non-inline backend in the kernel?")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--scale", default="book", choices=["ci", "book", "paper"])
    ap.add_argument("--only", nargs="*", help="chapter stems to execute (default: all)")
    ap.add_argument("--no-html", action="store_true")
    ap.add_argument("--timeout", type=int, default=None, help="per-cell timeout in seconds")
    args = ap.parse_args(argv)
    timeout = args.timeout or {"ci": 300, "book": 3600, "paper": 24 * 3600}[args.scale]

    if SRC.exists() and not args.only:
        shutil.rmtree(SRC)
    SRC.mkdir(parents=True, exist_ok=True)
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy(ROOT / name, SRC / name)
    shutil.copytree(ROOT / "book", SRC / "book", dirs_exist_ok=True)

    times = {}
    notebooks = chapter_notebooks()
    if args.only:  # chapters named explicitly may be missing from the toc while being written
        notebooks = [ROOT / "chapters" / f"{stem}.ipynb" for stem in args.only]
    for nb in notebooks:
        print(f"executing {nb.relative_to(ROOT)} at SCALE={args.scale!r} ...", flush=True)
        times[nb.name] = execute(nb, SRC / "chapters" / nb.name, args.scale, timeout)
        print(f"  {nb.name}: {times[nb.name]:.1f} s", flush=True)
    print("notebook execution times:")
    for k, v in times.items():
        print(f"  {k:40s} {v:8.1f} s")
    print(f"  {'total':40s} {sum(times.values()):8.1f} s", flush=True)
    if args.no_html:
        return 0
    cmd = [str(Path(sys.executable).parent / "jupyter-book"), "build", str(SRC), "--path-output", str(BUILD),
           "--warningiserror", "--keep-going", "--quiet"]
    print("building HTML:", " ".join(cmd[1:]), flush=True)
    rc = subprocess.call(cmd, cwd=ROOT)
    if rc == 0:
        print(f"book built: {BUILD / '_build' / 'html' / 'index.html'}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
