"""The exercise framework as a learner meets it: hints, messages, the JSON log and the runner
``python -m course_lib.exercises NOTEBOOK [--solutions]`` (executed on a tiny notebook; the chapters'
own solutions are checked by tools/build_book.py during `make test`)."""
import importlib
import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from course_lib.exercises import base, ch00
from course_lib.exercises.runner import find_exercises, prepare, report, final_results

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "chapters").glob("*.ipynb"))


def _stub(*args):
    raise NotImplementedError


def test_hint_after_a_wrong_attempt_and_second_hint_after_two(monkeypatch):
    monkeypatch.setattr(base, "_WRONG_ATTEMPTS", {})
    wrong = lambda x, s, score: x - s**2 * score  # noqa: E731  (sign error)
    first = ch00.check_tweedie(wrong)
    assert first.status == "wrong" and first.hint and not first.hint2
    assert "Hint:" in str(first) and "Second hint" not in str(first)
    second = ch00.check_tweedie(wrong)
    assert second.hint2 and "Second hint:" in str(second)
    ok = ch00.check_tweedie(ch00.reference_tweedie)
    assert ok.correct and "Hint" not in str(ok)
    assert "Hint" not in str(ch00.check_tweedie(_stub))  # no hint before an attempt


def test_messages_render_code_without_literal_backticks():
    res = ch00.check_tweedie(_stub)
    assert "`" not in str(res) and "raise NotImplementedError" in str(res)
    assert ">raise NotImplementedError</code>" in res._repr_html_()
    res = base.CheckResult("wrong", "got <tensor> with `x < 0`", "demo", hint="use `abs`")
    assert "&lt;tensor&gt;" in res._repr_html_() and ">abs</code>" in res._repr_html_()


def test_every_check_logs_a_json_line(tmp_path, monkeypatch):
    log = tmp_path / "log.jsonl"
    monkeypatch.setenv(base.LOG_ENV, str(log))
    ch00.check_tweedie(_stub)
    ch00.check_tweedie(ch00.reference_tweedie)
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(r["name"], r["status"]) for r in rows] == [("tweedie", "not attempted"), ("tweedie", "correct")]


@pytest.mark.parametrize("nb_path", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_chapter_exercises_are_recognised(nb_path):
    """Every exercise cell has a hidden solution, its check exists under the same name, has hints,
    and logs under that name; learner mode drops the solutions, --solutions substitutes them."""
    cells = json.loads(nb_path.read_text())["cells"]
    exercises = find_exercises(cells)
    if not exercises:
        pytest.skip("chapter without exercises")
    module = importlib.import_module(f"course_lib.exercises.ch{nb_path.stem[:2]}")
    for ex in exercises:
        assert ex.solution is not None and ex.solution > ex.cell, ex
        res = getattr(module, f"check_{ex.name}")(_stub)
        assert res.name == ex.name and res.status == "not attempted"
    learner = prepare({"cells": cells})["cells"]
    assert len(learner) == len(cells) - len(exercises)
    assert not any("hide-cell" in c.get("metadata", {}).get("tags", []) and "check_" in "".join(c["source"])
                   for c in learner)
    solved = prepare({"cells": cells}, solutions=True)["cells"]
    assert len(solved) == len(learner)
    checked = ["".join(c["source"]) for c in solved if "check_" in "".join(c["source"]) and c["cell_type"] == "code"]
    assert not any("raise NotImplementedError" in src for src in checked)


CHECK_MODULES = ("ch00", "ch01", "ch02", "ch03", "ch04", "ch05", "ch06", "ch07")


def _deliberately_wrong(*args, **kwargs):
    raise ValueError("deliberately wrong")


@pytest.mark.parametrize("ch", CHECK_MODULES)
def test_every_check_has_hints(ch, monkeypatch):
    """Every check_* of every chapter (the kinds-based ones included) shows a first hint after one wrong
    attempt and a different, second hint after two. The reader's function raising is a wrong answer for
    every check, so each is exercised without knowing its signature."""
    monkeypatch.setattr(base, "_WRONG_ATTEMPTS", {})
    module = importlib.import_module(f"course_lib.exercises.{ch}")
    checks = [n for n in dir(module) if n.startswith("check_") and callable(getattr(module, n))
              and getattr(getattr(module, n), "__module__", "") == module.__name__]
    assert checks, ch
    for name in checks:
        first = getattr(module, name)(_deliberately_wrong)
        assert first.status == "wrong" and len(first.hint) > 20 and not first.hint2, (ch, name, first)
        second = getattr(module, name)(_deliberately_wrong)
        assert len(second.hint2) > 20 and second.hint2 != second.hint, (ch, name, second)


def test_kinds_forward_hints(monkeypatch):
    """check_number / check_choice pass hint and hint2 to run_check; check_number keeps its inline hint."""
    from course_lib.exercises.kinds import check_choice, check_number
    monkeypatch.setattr(base, "_WRONG_ATTEMPTS", {})
    r = check_number("n", lambda: 2.0, 1.0, hint="halve it", hint2="divide by two")
    assert r.status == "wrong" and r.message.endswith("(halve it)") and r.hint == "halve it" and not r.hint2
    r = check_number("n", lambda: 2.0, 1.0, hint="halve it", hint2="divide by two", inline_hint=False)
    assert "halve" not in r.message and r.hint2 == "divide by two"
    assert check_number("n", lambda: 1.0005, 1.0, hint="h", hint2="h2").correct
    r = check_choice("c", lambda: "b", {"a": "x", "b": "y"}, "a", hint="look", hint2="look closer")
    assert r.status == "wrong" and r.hint == "look" and not r.hint2
    r = check_choice("c", lambda: "b", {"a": "x", "b": "y"}, "a", hint="look", hint2="look closer")
    assert r.hint2 == "look closer"
    assert check_choice("c", lambda: "A", {"a": "x", "b": "y"}, "a", hint="look").correct


def test_report_lines_and_exit_status():
    res = final_results([{"name": "a", "status": "wrong", "message": "off by 2"}, {"name": "a", "status": "correct"},
                         {"name": "b", "status": "wrong", "message": "off by 3"}], ["a", "b", "c"])
    text, ok = report(res)
    assert not ok and "a" in text and "wrong: off by 3" in text and "not run" in text
    assert "1/3 exercises correct" in text
    assert report(final_results([{"name": "a", "status": "correct"}], ["a"]))[1]


def _tiny_notebook(path: Path, answer: str):
    code = lambda src, tags=(): nbformat.v4.new_code_cell(src, metadata={"tags": list(tags)})  # noqa: E731
    nb = nbformat.v4.new_notebook(cells=[
        code('SCALE = "book"', ["parameters"]),
        code("from course_lib.exercises.ch00 import check_tweedie, check_vp_to_ve\nassert SCALE == 'ci'"),
        nbformat.v4.new_markdown_cell("### Exercise 1"),
        code(f"def tweedie_denoiser(x, sigma, score):\n    {answer}\n\n\ncheck_tweedie(tweedie_denoiser)"),
        code("def tweedie_denoiser(x, sigma, score):\n    return x + sigma**2 * score\n\n\n"
             "check_tweedie(tweedie_denoiser)", ["hide-cell"]),
        code("def vp_to_ve(x_t, alpha_bar):\n    raise NotImplementedError\n\n\ncheck_vp_to_ve(vp_to_ve)"),
        code("import torch\ndef vp_to_ve(x_t, alpha_bar):\n    sigma = torch.sqrt((1 - alpha_bar) / alpha_bar)\n"
             "    return x_t / torch.sqrt(alpha_bar).view(-1, 1, 1, 1), sigma\n\n\ncheck_vp_to_ve(vp_to_ve)",
             ["hide-cell"]),
    ])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(path))


def _run(*args):
    return subprocess.run([sys.executable, "-m", "course_lib.exercises", *map(str, args)],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)


def test_runner_on_a_learners_notebook(tmp_path):
    """One kernel run (the --solutions path is the same run with prepare(solutions=True), tested on
    every chapter above; tools/build_book.py checks every chapter's solutions during `make test`)."""
    nb = tmp_path / "learner.ipynb"
    _tiny_notebook(nb, "return x - sigma**2 * score")  # a sign error
    out = _run(nb)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "tweedie" in out.stdout and "wrong: " in out.stdout and "not attempted" in out.stdout
    assert "0/2 exercises correct (1 wrong, 1 not attempted)" in out.stdout
    assert _run(tmp_path / "missing.ipynb").returncode == 2


def test_solutions_mode_fills_the_stubs():
    nb = {"cells": [{"cell_type": "code", "metadata": {}, "source": "def f():\n    raise NotImplementedError\ncheck_a(f)"},
                    {"cell_type": "code", "metadata": {"tags": ["hide-cell"]}, "source": "def f():\n    return 1\ncheck_a(f)"}]}
    assert [c["source"] for c in prepare(nb, solutions=True)["cells"]] == ["def f():\n    return 1\ncheck_a(f)"]
    assert [c["source"] for c in prepare(nb)["cells"]] == [nb["cells"][0]["source"]]
    with pytest.raises(ValueError, match="no solution cell"):
        prepare({"cells": nb["cells"][:1]}, solutions=True)
