"""Execute every chapter with papermill at one scale, then build the HTML book from the executed copies.

Usage: python tools/build_book.py --scale {ci,book,paper} [--only 00_intro] [--no-html] [--reuse]
                                  [--no-solutions]

Source notebooks in chapters/ stay output-free. Executed notebooks go to _build/executed/, the copies
the book renders (tools/book_post.py: setup and injected cells hidden, exercises numbered, progress
widgets dropped) to _build/src/chapters/, and the HTML to _build/_build/html. The build runs Sphinx
with warnings as errors, so a broken cross-reference, citation or cell fails it. Each notebook's wall
time is printed. Every exercise's hidden solution must pass its check during execution (the log of
course_lib.exercises), otherwise the build fails. ``--reuse`` skips execution and re-renders the
executed copies (for work on HTML, CSS and JS); ``--no-solutions`` leaves the solutions out of the book
(a course run). Kernels run with tools/book_assets.kernel_environment (no progress bars, figures
sized for the column); MathJax is vendored into the build so the pages work offline.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from book_assets import kernel_environment, vendor_mathjax  # noqa: E402
from course_lib.config import temporary_env  # noqa: E402
from book_post import postprocess, wide_figures  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "_build"
SRC = BUILD / "src"
EXECUTED = BUILD / "executed"


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

    from course_lib.exercises.base import LOG_ENV

    out.parent.mkdir(parents=True, exist_ok=True)
    log = out.with_suffix(".exercises.jsonl")
    log.write_text("")
    env = kernel_environment(BUILD) | {LOG_ENV: str(log)}
    t0 = time.perf_counter()
    for attempt in (1, 2):
        try:
            with temporary_env(env):
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
    check_solutions(nb, log)
    return time.perf_counter() - t0


def check_solutions(nb: Path, log: Path) -> None:
    """Every exercise's last check result (its hidden solution runs after the stub) must be correct."""
    from course_lib.exercises.runner import final_results, find_exercises, report

    names = [ex.name for ex in find_exercises(json.loads(nb.read_text())["cells"]) if ex.solution is not None]
    if not names:
        return
    records = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    text, ok = report(final_results(records, names), f"{nb.name}: exercises with their solutions")
    print(text, flush=True)
    if not ok:
        raise RuntimeError(f"{nb.name}: a check rejects its own solution (see above)")


def render_copy(executed: Path, scale: str, solutions: bool) -> list[str]:
    """Write the book's copy of an executed chapter; returns the figures wider than the column."""
    nb = postprocess(json.loads(executed.read_text()), executed.stem, scale, solutions)
    dest = SRC / "chapters" / executed.name
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    return wide_figures(nb, executed.stem)


def executed_scale(executed: Path) -> str:
    params = json.loads(executed.read_text()).get("metadata", {}).get("papermill", {}).get("parameters", {})
    return params.get("SCALE", "?")


def count_figures(executed: Path) -> tuple[int, int]:
    """(cells that call plt.show(), image outputs) of an executed notebook."""
    cells = json.loads(executed.read_text())["cells"]
    code = [c for c in cells if c["cell_type"] == "code"]
    shows = sum("plt.show()" in "".join(c["source"]) for c in code)
    images = sum(any(k.startswith("image/") for k in o.get("data", {})) for c in code for o in c.get("outputs", []))
    return shows, images


def disambiguate_bib(path: Path) -> None:
    """Year suffixes (2026a, 2026b) for works whose author-year labels coincide (book/_ext/course_bib.py)."""
    import pybtex.database

    sys.path.insert(0, str(ROOT / "book" / "_ext"))
    from course_bib import disambiguate

    bib = pybtex.database.parse_file(str(path))
    if disambiguate(bib):
        bib.to_file(str(path), bib_format="bibtex")


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
    ap.add_argument("--reuse", action="store_true",
                    help="do not execute: re-render the executed copies in _build/executed (HTML/CSS/JS work)")
    ap.add_argument("--no-solutions", action="store_true", help="leave the exercise solutions out of the book")
    args = ap.parse_args(argv)
    timeout = args.timeout or {"ci": 300, "book": 3600, "paper": 24 * 3600}[args.scale]

    if SRC.exists() and not args.only:
        shutil.rmtree(SRC)
    SRC.mkdir(parents=True, exist_ok=True)
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy(ROOT / name, SRC / name)
    shutil.copytree(ROOT / "book", SRC / "book", dirs_exist_ok=True)
    disambiguate_bib(SRC / "book" / "references.bib")

    times = {}
    notebooks = chapter_notebooks()
    if args.only:  # chapters named explicitly may be missing from the toc while being written
        notebooks = [ROOT / "chapters" / f"{stem}.ipynb" for stem in args.only]
    wide = []
    for nb in notebooks:
        executed = EXECUTED / "chapters" / nb.name
        if args.reuse:
            if not executed.exists():
                raise SystemExit(f"--reuse: {executed.relative_to(ROOT)} does not exist; build without --reuse first")
            scale = executed_scale(executed)
            print(f"reusing {executed.relative_to(ROOT)} (executed at SCALE={scale!r})", flush=True)
        else:
            print(f"executing {nb.relative_to(ROOT)} at SCALE={args.scale!r} ...", flush=True)
            times[nb.name] = execute(nb, executed, args.scale, timeout)
            scale = args.scale
            print(f"  {nb.name}: {times[nb.name]:.1f} s", flush=True)
        wide += render_copy(executed, scale, solutions=not args.no_solutions)
    if times:
        print("notebook execution times:")
        for k, v in times.items():
            print(f"  {k:40s} {v:8.1f} s")
        print(f"  {'total':40s} {sum(times.values()):8.1f} s", flush=True)
    if wide:
        print("figures wider than the text column (their labels shrink; give them a smaller figsize):")
        print("\n".join(f"  {w}" for w in wide), flush=True)
    if args.no_html:
        return 0
    vendor_mathjax(ROOT, SRC / "book" / "_vendor" / "mathjax")
    cmd = [str(Path(sys.executable).parent / "jupyter-book"), "build", str(SRC), "--path-output", str(BUILD),
           "--warningiserror", "--keep-going", "--quiet"]
    print("building HTML:", " ".join(cmd[1:]), flush=True)
    rc = subprocess.call(cmd, cwd=ROOT)
    if rc == 0:
        print(f"book built: {BUILD / '_build' / 'html' / 'index.html'}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
