"""Turn an executed chapter into the copy the book renders (used by tools/build_book.py).

Every rule works on the executed notebook only; the chapter sources in chapters/ are never changed,
so the rules hold for every chapter, including ones added later. The rules:

- papermill's injected-parameters cell and the Colab install cell (it contains ``google.colab``)
  are removed (``remove-cell``);
- the ``parameters`` cell shows the scale the page was executed at and is collapsed (``hide-cell``);
- setup cells are collapsed to their outputs (``hide-input``): the first code cell after the
  ``parameters`` cell, and any code cell that calls ``setup(SCALE, ...)``;
- exercise headings after the "## Exercises" heading are numbered with their chapter
  ("### 2. Title" or "### Exercise 2: Title" becomes "### Exercise 5.2: Title");
- solution cells (``hide-cell`` cells that call a ``check_*``) stay collapsed, or are removed with
  ``solutions=False`` (a course run);
- progress-bar widgets (tqdm in a notebook) and their stored widget state are dropped, as are
  empty stderr streams;
- image outputs keep their width and lose their height, so that a figure wider than the column is
  scaled down without being distorted.
"""
from __future__ import annotations

import re

from course_lib.exercises.runner import find_exercises

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
COLUMN_PX = 688  # width of the book's text column at 1280 px (sphinx-book-theme)
_EXERCISE_HEADING = re.compile(r"^(#{2,4})\s+(?:Exercise\s+)?(\d+)\s*[.:]\s*(.*)$", re.MULTILINE)


def _tags(cell) -> list[str]:
    return cell.setdefault("metadata", {}).setdefault("tags", [])


def _add_tag(cell, tag: str) -> None:
    if tag not in _tags(cell):
        _tags(cell).append(tag)


def _src(cell) -> str:
    s = cell.get("source", "")
    return "".join(s) if isinstance(s, list) else s


def chapter_number(stem: str) -> int | None:
    m = re.match(r"(\d+)_", stem)
    return int(m.group(1)) if m else None


def number_exercises(text: str, chapter: int) -> str:
    """'### 2. Title' / '### Exercise 2: Title' -> '### Exercise {chapter}.2: Title'."""
    return _EXERCISE_HEADING.sub(lambda m: f"{m.group(1)} Exercise {chapter}.{m.group(2)}: {m.group(3)}".rstrip(": "),
                                 text)


def _clean_outputs(cell) -> None:
    outs = []
    for out in cell.get("outputs", []):
        data = out.get("data", {})
        if WIDGET_MIME in data:  # a progress bar or another widget: no kernel in the book
            continue
        if out.get("output_type") == "stream" and not "".join(out.get("text", "")).strip():
            continue
        for mime, meta in list(out.get("metadata", {}).items()):
            if mime.startswith("image/") and isinstance(meta, dict):
                meta.pop("height", None)
        outs.append(out)
    cell["outputs"] = outs


def postprocess(nb: dict, stem: str, scale: str, solutions: bool = True) -> dict:
    """Apply the rules of this module's docstring to an executed notebook (in place); returns it."""
    cells = nb["cells"]
    chapter = chapter_number(stem)
    solution_cells = {ex.solution for ex in find_exercises(cells) if ex.solution is not None}
    after_params, in_exercises = False, False
    for i, cell in enumerate(cells):
        tags, src = _tags(cell), _src(cell)
        if cell["cell_type"] == "markdown":
            lines = src.split("\n")
            for j, line in enumerate(lines):
                if re.match(r"##\s", line):  # a level-2 heading opens or closes the exercises section
                    in_exercises = bool(re.match(r"##\s+Exercises\b", line))
                elif in_exercises and chapter is not None:
                    lines[j] = number_exercises(line, chapter)
            cell["source"] = "\n".join(lines)
            continue
        if cell["cell_type"] != "code":
            continue
        _clean_outputs(cell)
        if "injected-parameters" in tags or "google.colab" in src:
            _add_tag(cell, "remove-cell")
        elif "parameters" in tags:
            cell["source"] = re.sub(r'^SCALE\s*=\s*"[^"]*"', f'SCALE = "{scale}"', src, flags=re.MULTILINE)
            _add_tag(cell, "hide-cell")
            after_params = True
        elif i in solution_cells:
            if solutions:
                _add_tag(cell, "hide-cell")
            else:
                cell["metadata"]["tags"] = [t for t in tags if not t.startswith("hide-")] + ["remove-cell"]
        elif after_params or re.search(r"\bsetup\(\s*SCALE\b", src):
            if not any(t.startswith(("hide-", "remove-")) for t in tags):
                _add_tag(cell, "hide-input")
            after_params = False
    nb.get("metadata", {}).pop("widgets", None)
    return nb


def wide_figures(nb: dict, stem: str, column_px: int = COLUMN_PX) -> list[str]:
    """Figures displayed wider than the text column (they are scaled down, and so are their labels),
    with the index of their cell in the chapter's source notebook."""
    out, i = [], -1
    for cell in nb["cells"]:
        if "injected-parameters" in cell.get("metadata", {}).get("tags", []):
            continue  # papermill's cell: count cells as in the chapter's source
        i += 1
        for o in cell.get("outputs", []):
            for mime, meta in o.get("metadata", {}).items():
                w = meta.get("width") if isinstance(meta, dict) and mime.startswith("image/") else None
                if w and float(w) > column_px:
                    out.append(f"{stem} cell {i}: {float(w):.0f} px wide (x{column_px / float(w):.2f} on screen)")
    return out
