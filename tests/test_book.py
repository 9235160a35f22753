"""Book structure: every chapter in _toc.yml exists, has a `parameters` cell and no committed outputs."""
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
from build_book import toc_files  # noqa: E402

TOC = toc_files()
NOTEBOOKS = [f for f in TOC if f.startswith("chapters/")]


def test_toc_lists_existing_files():
    missing = [f for f in TOC if not any((ROOT / f"{f}{ext}").exists() for ext in (".ipynb", ".md"))]
    assert not missing, f"_toc.yml lists files that do not exist: {missing}"


def test_every_chapter_notebook_is_in_the_toc():
    on_disk = {f"chapters/{p.stem}" for p in (ROOT / "chapters").glob("*.ipynb")}
    assert on_disk <= set(NOTEBOOKS), f"chapters missing from _toc.yml: {sorted(on_disk - set(NOTEBOOKS))}"


@pytest.mark.parametrize("stem", NOTEBOOKS)
def test_chapter_has_parameters_cell(stem):
    cells = json.loads((ROOT / f"{stem}.ipynb").read_text())["cells"]
    params = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(params) == 1, f"{stem}: expected exactly one cell tagged 'parameters', found {len(params)}"
    src = "".join(params[0]["source"])
    for name in ("SCALE", "SEED", "DEVICE"):
        assert f"{name} =" in src, f"{stem}: parameters cell does not set {name}"
    ns = {}
    exec(src, ns)  # the defaults must be valid values
    assert ns["SCALE"] in ("ci", "book", "paper") and ns["DEVICE"] == "auto"


@pytest.mark.parametrize("stem", NOTEBOOKS)
def test_chapter_committed_without_outputs(stem):
    cells = json.loads((ROOT / f"{stem}.ipynb").read_text())["cells"]
    dirty = [i for i, c in enumerate(cells) if c["cell_type"] == "code" and (c.get("outputs") or c.get("execution_count"))]
    assert not dirty, f"{stem}: cells {dirty} have outputs; strip them (executed copies are build artefacts)"



@pytest.mark.parametrize("stem", NOTEBOOKS)
def test_widget_cells_use_the_headless_safe_interact(stem):
    """ipywidgets.interact can stall papermill (jupyter/nbclient#312): chapters use
    course_lib.widgets.interact, which tools/build_book.py turns into a note."""
    cells = json.loads((ROOT / f"{stem}.ipynb").read_text())["cells"]
    for c in cells:
        src = "".join(c["source"]) if c["cell_type"] == "code" else ""
        assert "widgets.interact(" not in src and "from ipywidgets import interact" not in src, (
            f"{stem}: use `from course_lib.widgets import interact` instead of ipywidgets' interact")
