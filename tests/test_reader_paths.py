"""The reader's paths outside the browser: JupyterLab and widgets with a live kernel, the repository
URL in one place, the Colab cell, and the build's rules for the rendered copies (tools/book_post.py,
tools/book_assets.py, book/_ext/course_bib.py)."""
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(ROOT / "book" / "_ext"))
import book_assets  # noqa: E402
import colab_cell  # noqa: E402
from book_post import number_exercises, postprocess  # noqa: E402

BIN = Path(sys.executable).parent
URL = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]


def test_jupyter_lab_runs_from_the_environment():
    out = subprocess.run([str(BIN / "jupyter"), "lab", "--version"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.strip().split(".")[0]) >= 4


def test_widget_callbacks_with_a_live_kernel():
    """course_lib.widgets.interact renders ipywidgets controls in a real kernel, and moving a control
    calls the callback with the new value."""
    from jupyter_client.manager import start_new_kernel

    km, kc = start_new_kernel(kernel_name="python3", env={k: v for k, v in __import__("os").environ.items()
                                                         if k != "COURSE_NO_WIDGETS"})
    try:
        msgs = []
        code = ("from course_lib.widgets import interact, sigma_slider\n"
                "from ipywidgets import IntSlider\n"
                "calls = []\n"
                "def show(sigma=1.0, k=2):\n    calls.append((round(sigma, 6), k))\n    print('drawn', sigma, k)\n"
                "f = interact(show, sigma=sigma_slider(1.0), k=IntSlider(value=2, min=0, max=5))\n"
                "sig, k = f.widget.children[:2]\n"
                "sig.value = 5.0\nk.value = 4\n"
                "print('CALLS', calls)\n")
        reply = kc.execute_interactive(code, timeout=90, output_hook=msgs.append)
        assert reply["content"]["status"] == "ok", reply["content"]
        views = [m for m in msgs if m["msg_type"] == "display_data"
                 and "application/vnd.jupyter.widget-view+json" in m["content"]["data"]]
        assert views, "interact displayed no widget"
        text = "".join(m["content"].get("text", "") for m in msgs if m["msg_type"] == "stream")
        assert "CALLS [(1.0, 2), (5.0, 2), (5.0, 4)]" in text, text
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def test_repository_url_is_configured_once_and_used_everywhere():
    assert URL.startswith("https://github.com/")
    assert book_assets.repository_url({"repository": {"url": URL}}) == URL
    assert URL in (ROOT / "README.md").read_text(), "README must show the repository URL of _config.yml"
    assert colab_cell.repository_url() == URL
    for nb_path in sorted((ROOT / "chapters").glob("*.ipynb")):  # chapters that carry the Colab cell
        nb = json.loads(nb_path.read_text())
        for i in colab_cell.colab_cells(nb):
            assert "".join(nb["cells"][i]["source"]) == colab_cell.cell_source(URL), f"{nb_path.name}: run tools/colab_cell.py"


@pytest.mark.parametrize("nb_path", sorted((ROOT / "chapters").glob("*.ipynb")), ids=lambda p: p.stem)
def test_chapter_has_the_colab_cell_and_labels_of_at_least_10pt(nb_path):
    """Every chapter carries one current Colab cell (tools/colab_cell.py), and no code cell asks for a
    font below 10 pt (the book shows figures at their true size; smaller labels are unreadable)."""
    nb = json.loads(nb_path.read_text())
    assert len(colab_cell.colab_cells(nb)) == 1 and not colab_cell.apply(nb, URL), "run tools/colab_cell.py"
    code = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    small = [float(v) for v in re.findall(r"fontsize\s*=\s*([0-9.]+)", code) if float(v) < 10]
    assert not small, f"fontsize {small} in {nb_path.name}: use >= 10"


def test_colab_cell_is_idempotent_and_inert_outside_colab(tmp_path):
    nb = json.loads((ROOT / "chapters" / "00_intro.ipynb").read_text())
    committed = colab_cell.colab_cells(nb)
    if committed:  # the committed cell is current: running the tool again changes nothing
        assert len(committed) == 1 and not colab_cell.apply(json.loads(json.dumps(nb)), URL)
    nb["cells"] = [c for j, c in enumerate(nb["cells"]) if j not in committed]  # the chapter as it was before
    n = len(nb["cells"])
    assert colab_cell.apply(nb, URL) and not colab_cell.apply(nb, URL)
    assert len(nb["cells"]) == n + 1
    i = colab_cell.colab_cells(nb)[0]
    assert all(c["cell_type"] == "markdown" for c in nb["cells"][:i])
    assert "parameters" in nb["cells"][i + 1]["metadata"]["tags"]
    src = "".join(nb["cells"][i]["source"])
    assert URL in src and "remove-cell" in nb["cells"][i]["metadata"]["tags"]
    ns = {}
    exec(compile(src, "colab", "exec"), ns)  # not on Colab: nothing is cloned or installed
    assert "REPO" not in ns


def _cell(kind, src, tags=(), outputs=()):
    c = {"cell_type": kind, "metadata": {"tags": list(tags)}, "source": src}
    if kind == "code":
        c["outputs"] = list(outputs)
    return c


def test_book_copy_rules():
    widget = {"output_type": "display_data", "metadata": {},
              "data": {"text/plain": "HBox()", "application/vnd.jupyter.widget-view+json": {"model_id": "x"}}}
    image = {"output_type": "display_data", "data": {"image/png": "AAAA"},
             "metadata": {"image/png": {"width": 500, "height": 300}}}
    nb = {"metadata": {"widgets": {"state": {}}}, "cells": [
        _cell("markdown", "# Chapter 5"),
        _cell("code", 'SCALE = "book"\nSEED = 0', ["parameters"]),
        _cell("code", 'SCALE = "ci"', ["injected-parameters"]),
        _cell("code", "import torch\ndevice, gen = setup(SCALE, SEED, DEVICE)"),
        _cell("code", "x = sample(D, progress=True)", outputs=[widget, image]),
        _cell("markdown", "## Exercises\n\n### 1. The majority rule\n\ntext"),
        _cell("code", "def f(img):\n    raise NotImplementedError\n\ncheck_locally_consistent(f)"),
        _cell("code", "def f(img):\n    return img\n\ncheck_locally_consistent(f)", ["hide-cell"]),
        _cell("markdown", "### Exercise 2: ELS\n\n## What the theory misses\n\n### 3. Not an exercise"),
    ]}
    out = postprocess(json.loads(json.dumps(nb)), "05_creativity", "ci")
    c = out["cells"]
    assert c[1]["metadata"]["tags"] == ["parameters", "hide-cell"] and c[1]["source"].startswith('SCALE = "ci"')
    assert "remove-cell" in c[2]["metadata"]["tags"] and "hide-input" in c[3]["metadata"]["tags"]
    assert "hide-input" not in c[4]["metadata"]["tags"]
    assert len(c[4]["outputs"]) == 1 and c[4]["outputs"][0]["metadata"]["image/png"] == {"width": 500}
    assert "### Exercise 5.1: The majority rule" in c[5]["source"]
    assert "### Exercise 5.2: ELS" in c[8]["source"] and "### 3. Not an exercise" in c[8]["source"]
    assert c[7]["metadata"]["tags"] == ["hide-cell"] and "widgets" not in out["metadata"]
    course_run = postprocess(json.loads(json.dumps(nb)), "05_creativity", "ci", solutions=False)
    assert "remove-cell" in course_run["cells"][7]["metadata"]["tags"]
    assert number_exercises("### Exercise 3: x", 0) == "### Exercise 0.3: x"


def test_kernel_environment_fits_figures_to_the_column(tmp_path):
    env = book_assets.kernel_environment(tmp_path)
    assert env["TQDM_DISABLE"] == "1" and env["COURSE_NO_WIDGETS"] == "1" and env["COURSE_CHECK_WIDGETS"] == "1"
    startup = Path(env["IPYTHONDIR"]) / "profile_default" / "startup" / "00-book-figures.py"
    code = ("import json, matplotlib\nmatplotlib.use('Agg')\n" + startup.read_text() +
            "\nimport matplotlib.pyplot as plt\n"
            "print(json.dumps([plt.figure(figsize=s).get_size_inches().tolist() for s in ((15, 5), (9, 3), (4, 3))]))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    (w1, h1), (w2, h2), (w3, h3) = json.loads(out.stdout)
    assert book_assets.FIGURE_INCHES <= 688 / 96
    assert w1 == pytest.approx(15 / book_assets.MAX_NARROWING) and h1 / w1 == pytest.approx(5 / 15)  # at most 1.6x
    assert w2 == pytest.approx(book_assets.FIGURE_INCHES) and h2 / w2 == pytest.approx(3 / 9)  # to the column
    assert (w3, h3) == (4, 3)  # narrow figures untouched
    assert '"retina"' in (Path(env["IPYTHONDIR"]) / "profile_default" / "ipython_kernel_config.py").read_text()


def test_citation_labels_are_author_year_and_disambiguated():
    import pybtex.database
    from course_bib import author_label, disambiguate

    bib = pybtex.database.parse_file(str(ROOT / "book" / "references.bib"))
    changed = disambiguate(bib)
    assert changed["song2021ddim"] == "2021a" and changed["song2021sde"] == "2021b"
    assert {changed["wang2026linearlens"], changed["wang2026consistency"]} == {"2026a", "2026b"}
    labels = [f"{author_label(e)}, {e.fields['year']}" for e in bib.entries.values()]
    assert len(labels) == len(set(labels)), "two works share a label"
    assert all(" and others" not in s for s in labels)
    assert "Kamb and Ganguli, 2025" in labels and "Lukoianov et al., 2025" in labels
    toc = (ROOT / "_toc.yml").read_text()
    assert "book/bibliography" in toc and "{bibliography}" in (ROOT / "book" / "bibliography.md").read_text()


def test_check_callback_calls_each_control_at_its_far_end():
    import ipywidgets as w

    from course_lib.widgets import check_callback, sigma_slider

    calls = []
    n = check_callback(lambda sigma, k, opt: calls.append((round(sigma, 9), k, opt)),
                       sigma=sigma_slider(1.0, 0.01, 10.0), k=w.IntSlider(value=2, min=0, max=5),
                       opt=w.Dropdown(options=[3, 5, 7], value=5))
    assert n == 3 and calls == [(10.0, 2, 5), (1.0, 5, 5), (1.0, 2, 7)]

    def fails_at_the_end(k):
        return 1 / (5 - k)

    with pytest.raises(ZeroDivisionError):
        check_callback(fails_at_the_end, k=w.IntSlider(value=2, min=0, max=5))
