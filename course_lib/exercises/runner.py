"""Run a chapter's exercises as tests: ``python -m course_lib.exercises NOTEBOOK [--solutions] [--scale ci]``.

The runner executes the notebook with papermill (``SCALE="ci"`` by default) and collects the result of
every ``check_*`` call: each check appends one JSON line to the file named by the environment
variable ``COURSE_EXERCISE_LOG`` (see :func:`course_lib.exercises.base.run_check`). It prints one
line per exercise (``correct`` / ``wrong: reason`` / ``not attempted``) and a summary, and exits with
status 0 only when every exercise is correct.

How cells are recognised (chapters follow this pattern; see README "Adding a chapter"):

- an *exercise* is a code cell that calls a ``check_<name>(...)`` function and is not a solution;
- its *solution* is a later code cell tagged ``hide-cell`` (or ``solution``) calling the same check.

Solution cells are always removed before execution, so a learner's own code is what gets checked.
With ``--solutions`` each exercise cell is replaced by its solution cell instead (this proves that
the checks accept the reference solutions).
"""
from __future__ import annotations

import argparse
import copy
import json
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..config import temporary_env
from .base import LOG_ENV

__all__ = ["Exercise", "find_exercises", "prepare", "final_results", "report", "run_notebook", "main"]

_CHECK_CALL = re.compile(r"\bcheck_(\w+)\s*\(")
SOLUTION_TAGS = ("hide-cell", "solution")


@dataclass
class Exercise:
    name: str             # the check's name, e.g. "vp_to_ve" for check_vp_to_ve
    cell: int             # index of the exercise (stub) cell
    solution: int | None  # index of its solution cell, if the notebook has one


def _source(cell) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def _checks(cell) -> list[str]:
    if cell.get("cell_type") != "code":
        return []
    code = "\n".join(line for line in _source(cell).splitlines() if not line.lstrip().startswith(("from ", "import ")))
    return _CHECK_CALL.findall(code)


def _is_solution(cell) -> bool:
    return any(t in cell.get("metadata", {}).get("tags", []) for t in SOLUTION_TAGS)


def find_exercises(cells: list[dict]) -> list[Exercise]:
    """The exercises of a notebook's cells, in order, each with its solution cell (or None)."""
    out: list[Exercise] = []
    for i, cell in enumerate(cells):
        names = _checks(cell)
        if not names:
            continue
        if _is_solution(cell):
            for ex in reversed(out):  # the nearest earlier exercise calling the same check
                if ex.name in names and ex.solution is None:
                    ex.solution = i
                    break
        else:
            out.extend(Exercise(n, i, None) for n in names if all(e.name != n for e in out))
    return out


def prepare(nb: dict, solutions: bool = False) -> dict:
    """A copy of ``nb`` without its solution cells; with ``solutions``, each exercise cell holds its
    solution's source instead of the learner's code."""
    nb = copy.deepcopy(nb)
    cells = nb["cells"]
    exercises = find_exercises(cells)
    if solutions:
        for ex in exercises:
            if ex.solution is None:
                raise ValueError(f"--solutions: exercise check_{ex.name} (cell {ex.cell}) has no solution cell "
                                 f"(a later code cell tagged {SOLUTION_TAGS[0]!r} calling check_{ex.name})")
            cells[ex.cell]["source"] = _source(cells[ex.solution])
    drop = {i for i, c in enumerate(cells) if _checks(c) and _is_solution(c)}
    nb["cells"] = [c for i, c in enumerate(cells) if i not in drop]
    return nb


def final_results(records: list[dict], names: list[str]) -> dict[str, dict]:
    """The last result of each expected check; a check that never ran is ``{"status": "not run"}``."""
    last = {r["name"]: r for r in records}
    return {n: last.get(n, {"name": n, "status": "not run", "message": "the check was not executed"}) for n in names}


def report(results: dict[str, dict], title: str = "") -> tuple[str, bool]:
    """One line per exercise and a summary; True when every exercise is correct."""
    lines = [title] if title else []
    for i, (name, r) in enumerate(results.items(), 1):
        reason = f": {r['message']}" if r["status"] in ("wrong", "checker error") and r.get("message") else ""
        lines.append(f"  {i:2d}. {name:28s} {r['status']}{reason}")
    n_ok = sum(r["status"] == "correct" for r in results.values())
    ok = n_ok == len(results) and len(results) > 0
    counts = {s: sum(r["status"] == s for r in results.values()) for s in ("wrong", "checker error", "not attempted", "not run")}
    extra = ", ".join(f"{v} {k}" for k, v in counts.items() if v)
    lines.append(f"{n_ok}/{len(results)} exercises correct" + (f" ({extra})" if extra else ""))
    return "\n".join(lines), ok


def run_notebook(path: Path, scale: str = "ci", solutions: bool = False, timeout: int = 600,
                 keep: Path | None = None) -> tuple[dict[str, dict], str | None]:
    """Execute the prepared notebook; returns (results per exercise, execution error or None)."""
    import nbformat
    import papermill as pm

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"notebook {str(path)!r} does not exist")
    if scale not in ("ci", "book", "paper"):
        raise ValueError(f"scale must be 'ci', 'book' or 'paper', got {scale!r}")
    nb = json.loads(path.read_text())
    names = [ex.name for ex in find_exercises(nb["cells"])]
    prepared = prepare(nb, solutions)
    error = None
    with tempfile.TemporaryDirectory(prefix="exercises-") as tmp:
        src, out, log = Path(tmp) / path.name, keep or Path(tmp) / f"out-{path.name}", Path(tmp) / "log.jsonl"
        nbformat.write(nbformat.from_dict(prepared), str(src))
        log.touch()
        env = {LOG_ENV: str(log), "COURSE_NO_WIDGETS": "1", "MPLBACKEND": "Agg", "TQDM_DISABLE": "1"}
        try:
            with temporary_env(env):
                pm.execute_notebook(str(src), str(out), parameters={"SCALE": scale}, kernel_name="python3",
                                    cwd=str(path.resolve().parent), execution_timeout=timeout, progress_bar=False)
        except pm.PapermillExecutionError as exc:
            error = f"cell {exc.exec_count}: {exc.ename}: {exc.evalue}"
        records = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    return final_results(records, names), error


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m course_lib.exercises", description=__doc__.split("\n\n")[0])
    ap.add_argument("notebook", type=Path, help="a chapter notebook (your working copy)")
    ap.add_argument("--solutions", action="store_true", help="fill each exercise with its hidden solution")
    ap.add_argument("--scale", default="ci", choices=["ci", "book", "paper"], help="SCALE parameter (default ci)")
    ap.add_argument("--timeout", type=int, default=600, help="per-cell timeout in seconds")
    args = ap.parse_args(argv)
    print(f"running the exercises of {args.notebook} at SCALE={args.scale!r}"
          + (" with the reference solutions" if args.solutions else ""), flush=True)
    try:
        results, error = run_notebook(args.notebook, args.scale, args.solutions, args.timeout)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not results:
        print("no exercises found (no cell calls a check_* function)")
        return 1
    text, ok = report(results)
    print(text)
    if error:
        print(f"the notebook stopped with an error in {error}")
    return 0 if ok and not error else 1
